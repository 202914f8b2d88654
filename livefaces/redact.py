"""Removing secrets from source names before they reach logs, events, errors or metrics.

The one URL redaction of livefaces (ground floor, no livefaces imports): sources, avio, serve
and the CLI all call :func:`redact_url` / :func:`redact_text` from here, and serve's log
filter :func:`redact_params`; :data:`SECRET_PARAMS` is the one list of secret parameter names.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: query parameters whose values are replaced by ``***`` (case-insensitive substrings)
SECRET_PARAMS = ("pass", "pwd", "token", "key", "secret", "auth", "sig", "credential", "session")

_PLAIN_USER = re.compile(r"[A-Za-z0-9._~%+-]{1,64}")
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")
_SECRET_PARAM_RE = re.compile(
    r"(?i)([?&;](?:[^=&;#]*(?:" + "|".join(SECRET_PARAMS) + r"))[^=&;#]*=)[^&;#]*")
#: ``NAME=VALUE`` (or ``NAME%3DVALUE``, encoded once) anywhere in free text, NAME holding one
#: of :data:`SECRET_PARAMS`
_SECRET_IN_TEXT = re.compile(
    r"(?i)([A-Za-z0-9_.-]*(?:" + "|".join(SECRET_PARAMS) + r")[A-Za-z0-9_.-]*)(=|%3D)([^&\s;#]*)")


def redact_url(url: str) -> str:
    """``url`` with any password and secret-looking query values replaced by ``***``.

    >>> redact_url("rtsp://admin:hunter2@cam.local:554/stream1?token=abc&ch=1")
    'rtsp://admin:***@cam.local:554/stream1?token=***&ch=1'

    The user name is kept when it is a plain name followed by ``:`` (it tells which account
    a camera uses); user info without a ``:`` may be a token (``https://TOKEN@host``) and is
    masked whole.

    Robust on purpose: everything between ``://`` and the *last* ``@`` is masked before the
    URL is parsed at all, so a password survives neither a URL that cannot be parsed
    (``rtsp://u:pw@[::1/x``) nor one whose password holds a raw ``/``, ``?`` or ``#``
    (which a URL parser would read as the start of the path). The price: a URL with an ``@``
    in its path shows less than it could, never more.

    >>> redact_url("rtsp://u:pw@[::1/x")
    'rtsp://u:***@[::1/x'

    Strings that are not URLs (file paths, webcam numbers) come back unchanged, unless they
    look like credentials with the scheme forgotten (``user:pw@host/...``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        at = url.rfind("@")
        if at > 0 and ":" in url[:at]:  # "user:pw@host/..." with the scheme forgotten
            return "***" + url[at:]
        return url
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _secret = rest[:at].partition(":")
        keep = f"{user}:" if colon and _PLAIN_USER.fullmatch(user) else ""
        rest = f"{keep}***@{rest[at + 1:]}"
    masked = f"{scheme}://{rest}"
    try:
        parts = urlsplit(masked)
    except ValueError:  # cannot be parsed: mask secret-looking query values textually
        return _SECRET_PARAM_RE.sub(r"\1***", masked)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if any(s in k.lower() for s in SECRET_PARAMS) else v)
                           for k, v in pairs], safe="*/:")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secret_url: str | None = None) -> str:
    """``text`` with every URL in it redacted (for third-party error messages)."""
    if secret_url:
        text = text.replace(secret_url, redact_url(secret_url))
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_params(text: str) -> str:
    """``text`` (a log line, a request path) with the value of every secret-looking
    ``NAME=VALUE`` or ``NAME%3DVALUE`` in it replaced by ``***``, URL or not.

    >>> redact_params("GET /api/snapshot?cam=a&access_token=abc 200")
    'GET /api/snapshot?cam=a&access_token=*** 200'
    """
    return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
