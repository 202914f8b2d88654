"""Removing secrets from source names before they reach logs, events, errors or metrics."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: query parameters whose values are replaced by ``***`` (case-insensitive substrings)
SECRET_PARAMS = ("pass", "pwd", "token", "key", "secret", "auth", "sig", "credential", "session")

_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")


def redact_url(url: str) -> str:
    """``url`` with any user name/password and secret-looking query values replaced by ``***``.

    >>> redact_url("rtsp://admin:hunter2@cam.local:554/stream1?token=abc&ch=1")
    'rtsp://***@cam.local:554/stream1?token=***&ch=1'

    Strings that are not URLs (file paths, webcam numbers) come back unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if any(s in k.lower() for s in SECRET_PARAMS) else v)
                           for k, v in pairs], safe="*/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secret_url: str | None = None) -> str:
    """``text`` with every URL in it redacted (for third-party error messages)."""
    if secret_url:
        text = text.replace(secret_url, redact_url(secret_url))
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
