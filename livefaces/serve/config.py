"""``livefaces serve`` configuration: a YAML file validated into frozen dataclasses.

The file (see ``docs/serve.md`` for the full reference)::

    defaults:              # applied to every camera unless the camera says otherwise
      detect_fps: 5
      min_face_size: 40
    cameras:               # name -> settings; names become MQTT topic levels and URL parts
      front_door:
        url: rtsp://viewer:${FRONT_PASSWORD}@192.168.1.20:554/stream2
      garage:
        url: rtsp://192.168.1.21/live
        detect_fps: 2
        enabled: false
    web: {host: 127.0.0.1, port: 8780, token: "${LIVEFACES_TOKEN}", stream_fps: 5}
    mqtt: {host: 127.0.0.1, port: 1883}
    detector: {threads: 2}
    people: {folder: /var/lib/livefaces/people}   # known people, recognised live

Every mistake is reported as ``FILE:LINE: dotted.field: what is wrong`` (all of them at once,
not just the first) by :class:`ConfigError`. Unknown keys are errors (a typo must not be
silently ignored). ``${VAR}`` in strings is replaced by the environment variable ``VAR`` so
passwords and tokens can stay out of the file.

Only PyYAML is used: its composed node tree carries the line of every key and value.
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..detect.options import ENGINES, MIN_FACE_SIZE, DetectorOptions
from ..errors import ConfigError as ConfigError  # its home is errors.py; kept importable here
from ..redact import redact_url
from ..specs import source_problem, topic_prefix_problem

#: a config file bigger than this is refused before it is parsed (real ones are a few KiB)
MAX_FILE_BYTES = 1 << 20

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class CameraConfig:
    """One camera. ``url`` may hold credentials: show :attr:`safe_url`, never ``url``.

    Attributes:
        name: ``[A-Za-z0-9_-]{1,64}``; used in MQTT topics, URLs and metric labels.
        url: RTSP/RTSPS/HTTP(S)/RTMP URL, a video file (played in real time, looping), an
            image folder or a webcam number; ``${VAR}`` keeps passwords out of the file.
        detect_fps: frames per second whose faces the networks check (a full detection, or
            a refinement of the tracked faces in their regions); frames in between are tracked.
        min_face_size: smallest face to find, in pixels of the camera frame (>= 12; larger is
            faster). Default: ``detector.min_face_size``.
        enabled: disabled cameras are listed but not opened.
        motion: motion gating: a still scene with no face runs the full detector only every
            ``idle_interval`` seconds (an empty camera costs almost nothing).
        refine: check tracked faces with the networks in their regions between full
            detections (false: carry them with the tracker alone).
        idle_interval: seconds between full detections of a still scene.
    """

    name: str
    url: str
    detect_fps: float = 5.0
    min_face_size: float = MIN_FACE_SIZE
    enabled: bool = True
    motion: bool = True
    refine: bool = True
    idle_interval: float = 5.0

    def __repr__(self) -> str:  # the dataclass repr would print the password
        return (f"CameraConfig(name={self.name!r}, url={self.safe_url!r}, detect_fps={self.detect_fps}, "
                f"min_face_size={self.min_face_size}, enabled={self.enabled})")

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class WebConfig:
    """The HTTP server (web page, JSON API, /health, /metrics).

    Attributes:
        host: address to bind; anything but loopback (127.0.0.1, ::1, localhost) needs a token.
        port: TCP port (0: any free port).
        token: access token (``Authorization: Bearer TOKEN`` or ``?token=`` once); required
            when ``host`` is not loopback. Better given as ``${LIVEFACES_TOKEN}``.
        stream_fps: MJPEG frame-rate cap per browser.
        jpeg_quality: JPEG quality of the live view and snapshots.
        enabled: false: no HTTP server (MQTT only).
        allowed_hosts: without a token, the host names (the ``Host:`` header, any port) the
            server answers besides localhost, 127.0.0.1, [::1] and ``host``; any other name is
            refused with 403 (a web page on another site cannot reach this server through DNS
            rebinding). With a token every name is answered (the token is the check).
        idle_timeout: seconds a connection may stay open without sending a complete request
            (also between keep-alive requests); slow or silent clients are closed.
        max_connections: open connections at most (also at most half the process's open-file
            limit, less one accept burst); beyond, the oldest connection without a request in
            progress is closed.
    """

    host: str = "127.0.0.1"
    port: int = 8780
    token: str | None = None
    stream_fps: float = 5.0
    jpeg_quality: int = 80
    enabled: bool = True
    allowed_hosts: tuple[str, ...] = ()
    idle_timeout: float = 10.0
    max_connections: int = 256

    def __repr__(self) -> str:
        return (f"WebConfig(host={self.host!r}, port={self.port}, token={'***' if self.token else None}, "
                f"stream_fps={self.stream_fps}, jpeg_quality={self.jpeg_quality}, enabled={self.enabled}, "
                f"allowed_hosts={self.allowed_hosts!r}, idle_timeout={self.idle_timeout}, "
                f"max_connections={self.max_connections})")


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker events go to (``None`` in :class:`ServeConfig` = no MQTT).

    Attributes:
        host: broker host name or address.
        port: broker port.
        username: user name at the broker.
        password: password at the broker; better given as ``${MQTT_PASSWORD}``.
        topic_prefix: first topic level(s) (``PREFIX/CAMERA/events``); no ``#``, ``+`` or
            spaces, not starting with ``$`` (the broker's own topics, ``$SYS``: it drops
            what clients publish there).
        client_id: MQTT client id.
        keepalive: seconds between keep-alive pings.
        buffer: events kept while the broker is away (oldest dropped beyond, counted).
    """

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "livefaces"
    client_id: str = "livefaces"
    keepalive: int = 30
    buffer: int = 1000

    def __repr__(self) -> str:
        return (f"MqttConfig(host={self.host!r}, port={self.port}, username={self.username!r}, "
                f"password={'***' if self.password else None}, topic_prefix={self.topic_prefix!r}, "
                f"client_id={self.client_id!r}, keepalive={self.keepalive}, buffer={self.buffer})")


@dataclass(frozen=True)
class PeopleConfig:
    """Known people, recognised live (``None`` in :class:`ServeConfig` = no identification;
    needs the ``identify`` extra).

    Attributes:
        folder: the people folder, made by ``livefaces people add NAME PHOTO... --people
            DIR`` (docs/identify.md); relative paths against the current directory.
        blur_unknown: blur the faces that are not recognised (not yet, or not at all) in the
            web page's live view and snapshots.
        unknown_crops: how many recent unknown faces are kept in memory (one crop each, never
            written to disk) so that someone can name them on the web page (0: none).
        absent_after: seconds a person stays ``present`` on a camera after their last track
            there ended (a new track of them within it changes nothing: no absent/present
            flapping at every track change); 0: absent at once.
    """

    folder: str
    blur_unknown: bool = False
    unknown_crops: int = 8
    absent_after: float = 10.0


@dataclass(frozen=True)
class ServeConfig:
    """A whole ``serve`` configuration.

    ``detector`` is the :class:`~livefaces.detect.options.DetectorOptions` of the one shared
    engine (``make_engine(config.detector)``); its ``min_face_size`` is the smallest
    ``min_face_size`` of the enabled cameras (frames of cameras asking for bigger faces are
    shrunk before detection). ``source``: the file it came from, for messages.
    """

    cameras: tuple[CameraConfig, ...]
    web: WebConfig = field(default_factory=WebConfig)
    mqtt: MqttConfig | None = None
    detector: DetectorOptions = field(default_factory=DetectorOptions)
    source: str = "<command line>"
    people: PeopleConfig | None = None

    def __post_init__(self) -> None:
        # one engine for all cameras: it runs at the smallest face any enabled camera wants
        sizes = [c.min_face_size for c in self.cameras if c.enabled]
        if sizes and self.detector.min_face_size != min(sizes):
            object.__setattr__(self, "detector", dataclasses.replace(self.detector,
                                                                      min_face_size=min(sizes)))

    @property
    def enabled_cameras(self) -> tuple[CameraConfig, ...]:
        return tuple(c for c in self.cameras if c.enabled)

    def camera(self, name: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.name == name), None)


# --------------------------------------------------------------------------- secrets


#: ``(detector options) -> why they cannot run here, or None``; given by the caller (the serve
#: command passes :func:`livefaces.detect.engine.engine_problem`), so the config module needs no
#: engine of its own
EngineCheck = Callable[[DetectorOptions], "str | None"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- validation

_Conv = Callable[[Any], tuple[Any, str | None]]


class _Check:
    """One field's rule: called with the YAML value, it returns ``(value, None)`` or ``(None,
    problem)``; :attr:`schema` is the same rule in JSON Schema, for editors (``docs/
    config.schema.json``). Keeping both in one object is what keeps them from drifting."""

    def __init__(self, fn: _Conv, schema: dict[str, Any]):
        self.fn = fn
        self.schema = schema

    def __call__(self, v: Any) -> tuple[Any, str | None]:
        return self.fn(v)


def _num(lo: float | None = None, hi: float | None = None, *, integer: bool = False,
         lo_open: bool = False) -> _Check:
    def conv(v: Any) -> tuple[Any, str | None]:
        kind = "an integer" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return None, f"must be {kind}"
        if not math.isfinite(v):  # .nan passes every comparison below; .inf is no setting either
            return None, "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return None, f"must be {'>' if lo_open else '>='} {lo:g}"
        if hi is not None and v > hi:
            return None, f"must be <= {hi:g}"
        return (int(v) if integer else float(v)), None
    schema: dict[str, Any] = {"type": "integer" if integer else "number"}
    if lo is not None:
        schema["exclusiveMinimum" if lo_open else "minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return _Check(conv, schema)


def _str(*, allow_empty: bool = False, pattern: re.Pattern[str] | None = None, hint: str = "",
         no_space: bool = False) -> _Check:
    def conv(v: Any) -> tuple[Any, str | None]:
        if not isinstance(v, str):
            return None, "must be a string" + (f" ({hint})" if hint else "")
        if no_space and v.strip() and any(c.isspace() for c in v):
            return None, "must not contain spaces" + (f" ({hint})" if hint else "")
        if not allow_empty and not v.strip():
            return None, "must not be empty or only spaces"
        if pattern is not None and not pattern.match(v):
            return None, f"must match {pattern.pattern}" + (f" ({hint})" if hint else "")
        return v, None
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern.pattern
    elif no_space:
        schema["pattern"] = r"^\S+$"
    elif not allow_empty:
        schema["pattern"] = r"\S"  # not empty, not only spaces
    return _Check(conv, schema)


def _bool_conv(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, bool):
        return None, "must be true or false"
    return v, None


_bool = _Check(_bool_conv, {"type": "boolean"})


def _choice(*options: str) -> _Check:
    def conv(v: Any) -> tuple[Any, str | None]:
        if v not in options:
            return None, "must be one of " + ", ".join(options)
        return v, None
    return _Check(conv, {"enum": list(options)})


def _thresholds_conv(v: Any) -> tuple[Any, str | None]:
    if (not isinstance(v, list) or len(v) != 3
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                       and 0 < x < 1 for x in v)):
        return None, "must be a list of 3 numbers between 0 and 1 (P-Net, R-Net, O-Net)"
    return tuple(float(x) for x in v), None


_thresholds = _Check(_thresholds_conv, {
    "type": "array", "minItems": 3, "maxItems": 3,
    "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}})

#: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:data:`livefaces.detect.options.DEVICES`)
DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


#: a host name or address as a ``Host:`` header carries it (no port, no brackets)
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9._:-]{1,253}$")


def _hosts_conv(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, list) or not all(isinstance(x, str) and HOSTNAME_RE.match(x.strip("[]"))
                                          for x in v):
        return None, ("must be a list of host names or addresses (letters, digits, '.', '-', "
                      "':'; no port), e.g. [cameras.home, 192.168.1.5]")
    return tuple(x.strip("[]").lower().rstrip(".") for x in v), None


_hosts = _Check(_hosts_conv, {"type": "array", "items": {"type": "string",
                                                          "pattern": HOSTNAME_RE.pattern}})


def _optional(conv: _Check) -> _Check:
    def c(v: Any) -> tuple[Any, str | None]:
        return (None, None) if v is None else conv(v)
    return _Check(c, {"anyOf": [conv.schema, {"type": "null"}]})


CAMERA_FIELDS = {
    "url": _str(hint="rtsp://..., a video file, an image folder or a webcam number"),
    "detect_fps": _num(0, 60, lo_open=True),
    "min_face_size": _num(12, 4096),
    "enabled": _bool,
    "motion": _bool,
    "refine": _bool,
    "idle_interval": _num(0.1, 3600),
}
DEFAULT_FIELDS = {k: v for k, v in CAMERA_FIELDS.items() if k != "url"}
WEB_FIELDS = {
    "host": _str(no_space=True),
    "port": _num(0, 65535, integer=True),
    "token": _optional(_str(no_space=True, hint="it is sent in an HTTP header")),
    "stream_fps": _num(0, 30, lo_open=True),
    "jpeg_quality": _num(10, 100, integer=True),
    "enabled": _bool,
    "allowed_hosts": _hosts,
    "idle_timeout": _num(0.5, 3600),
    "max_connections": _num(8, 100_000, integer=True),
}
def _topic_prefix_conv(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, str):
        return None, "must be a string"
    bad = topic_prefix_problem(v)
    return (None, bad) if bad else (v, None)


MQTT_FIELDS = {
    "host": _str(no_space=True),
    "port": _num(1, 65535, integer=True),
    "username": _optional(_str()),
    "password": _optional(_str()),
    "topic_prefix": _Check(_topic_prefix_conv, {"type": "string", "pattern": r"^(?!\$)[^#+\s\x00]+$"}),
    "client_id": _str(),
    "keepalive": _num(5, 3600, integer=True),
    "buffer": _num(1, 1_000_000, integer=True),
}
#: the ``detector:`` section: the fields of :class:`~livefaces.detect.options.DetectorOptions`
#: (defaults come from there), plus ``providers``, the old name of ``device``
DETECTOR_FIELDS = {
    "engine": _choice(*ENGINES),
    "device": _Check(lambda v: (v, None) if isinstance(v, str) and DEVICE_RE.match(v)
                     else (None, "must be auto, cpu, cuda or cuda:N"),
                     {"type": "string", "pattern": DEVICE_RE.pattern}),
    "min_face_size": CAMERA_FIELDS["min_face_size"],
    "thresholds": _thresholds,
    "factor": _num(0.1, 0.95),
    "threads": _optional(_num(1, 256, integer=True)),
    "providers": _optional(_choice("cpu", "cuda")),
}
PEOPLE_FIELDS = {
    "folder": _str(hint="a people folder made by 'livefaces people add'"),
    "blur_unknown": _bool,
    "unknown_crops": _num(0, 100, integer=True),
    "absent_after": _num(0, 3600),
}
TOP_FIELDS = ("defaults", "cameras", "web", "mqtt", "detector", "people")


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (``*name``).

    Aliases let a few lines stand for an exponentially large value ("billion laughs"); nothing
    in this file format needs them (``defaults:`` shares camera settings), so the composer
    refuses the first one with its line instead of expanding anything.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):  # type: ignore[no-untyped-call]
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not supported; write the value "
                "out (settings shared by all cameras go under 'defaults:')", event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[no-untyped-call,no-any-return]


class _Validator:
    def __init__(self, filename: str, env: dict[str, str]):
        self.filename = filename
        self.env = env
        self.problems: list[str] = []
        self.nodes: dict[str, yaml.Node] = {}  # dotted field -> its value node (for lines)

    def problem(self, node: yaml.Node | None, path: str, msg: str) -> None:
        line = f"{node.start_mark.line + 1}" if node is not None else "?"
        self.problems.append(f"{self.filename}:{line}: {path}: {msg}" if path else
                             f"{self.filename}:{line}: {msg}")

    def mapping(self, node: yaml.Node, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """``{key: (key_node, value_node)}``; reports non-mappings and duplicate keys."""
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, "must be a mapping of 'key: value' lines")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(k, path, "keys must be plain names")
                continue
            if key in out:
                self.problem(k, _join(path, key),
                             f"given twice (first on line {out[key][0].start_mark.line + 1})")
                continue
            out[key] = (k, v)
        return out

    def value(self, node: yaml.Node) -> Any:
        """The Python value of a node, with ``${VAR}`` expanded in strings."""
        v = yaml.SafeLoader(b"").construct_object(node, deep=True)  # type: ignore[no-untyped-call]
        return self._expand(v)

    def _expand(self, v: Any) -> Any:
        if isinstance(v, str):
            return _ENV_RE.sub(lambda m: self.env.get(m.group(1), "\0" + m.group(1)), v)
        if isinstance(v, list):
            return [self._expand(x) for x in v]
        return v

    def fields(self, node: yaml.Node, path: str, spec: dict[str, _Check],
               required: tuple[str, ...] = (), at: yaml.Node | None = None) -> dict[str, Any]:
        m = self.mapping(node, path)
        if m is None:
            return {}
        out: dict[str, Any] = {}
        for key, (knode, vnode) in m.items():
            fpath = _join(path, key)
            if key not in spec:
                self.problem(knode, fpath, "unknown setting (allowed: " + ", ".join(spec) + ")")
                continue
            self.nodes[fpath] = vnode
            try:
                raw = self.value(vnode)
            except yaml.YAMLError as e:
                self.problem(vnode, fpath, f"cannot read value ({e})")
                continue
            if isinstance(raw, str) and "\0" in raw:
                missing = re.findall(r"\0([A-Za-z0-9_]+)", raw)
                self.problem(vnode, fpath, f"environment variable {missing[0]} is not set")
                continue
            val, err = spec[key](raw)
            if err:
                shown = "<hidden>" if key in ("password", "token") else repr(raw)
                if key == "url" and isinstance(raw, str):
                    shown = repr(redact_url(raw))
                self.problem(vnode, fpath, f"{err} (got {shown})")
                continue
            out[key] = val
        for r in required:
            if r not in m:
                self.problem(at or node, path, f"'{r}' is required")
        return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None, *,
                check_machine: bool = False, engine_check: EngineCheck | None = None) -> ServeConfig:
    """Read and validate a serve config file; raises :class:`ConfigError` listing every mistake.

    Files bigger than :data:`MAX_FILE_BYTES` are refused unread. ``check_machine``: see
    :func:`parse_config`.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded: also safe for /dev/zero or a pipe
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError([f"{p}: the file is bigger than {MAX_FILE_BYTES >> 20} MiB; "
                               "is it really a livefaces configuration?"])
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{p}: cannot read the file ({e.__class__.__name__}: {e})"]) from e
    return parse_config(text, filename=str(p), env=env, check_machine=check_machine,
                        engine_check=engine_check)


def parse_config(text: str, *, filename: str = "<config>", env: dict[str, str] | None = None,
                 check_machine: bool = False, engine_check: EngineCheck | None = None) -> ServeConfig:
    """Validate YAML ``text``; ``filename`` is used in the messages.

    Camera URLs are checked with :func:`livefaces.sources.source_problem`, the check
    :func:`~livefaces.sources.open_source` makes: the scheme, that the URL parses, and with
    ``check_machine`` that the files and folders of enabled cameras exist (relative paths
    against the current directory, as ``serve`` opens them). With ``check_machine``,
    ``engine_check(detector_options)`` (the caller's: ``livefaces.detect.engine.engine_problem``)
    says why the engine or device asked for cannot run here, reported at its line.
    """
    v = _Validator(filename, dict(os.environ) if env is None else env)
    try:
        root = yaml.compose(text, Loader=_NoAliasLoader)
    except RecursionError as e:
        raise ConfigError([f"{filename}: not valid YAML: nested too deeply"]) from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark is not None else "?"
        raise ConfigError([f"{filename}:{line}: not valid YAML: {e.problem}"]) from e
    except yaml.YAMLError as e:
        raise ConfigError([f"{filename}: not valid YAML: {e}"]) from e
    if root is None:
        raise ConfigError([f"{filename}:1: the file is empty; it needs at least a 'cameras:' section"])
    top = v.mapping(root, "")
    if top is None:
        raise ConfigError(v.problems)
    for key, (knode, _) in top.items():
        if key not in TOP_FIELDS:
            v.problem(knode, key, "unknown section (allowed: " + ", ".join(TOP_FIELDS) + ")")

    dvals = v.fields(top["detector"][1], "detector", DETECTOR_FIELDS) if "detector" in top else {}
    defaults = {k: dvals[k] for k in ("min_face_size",) if k in dvals}
    if "defaults" in top:
        defaults.update(v.fields(top["defaults"][1], "defaults", DEFAULT_FIELDS))
    cameras: list[CameraConfig] = []
    if "cameras" not in top:
        v.problem(root, "cameras", "section is required (a mapping of camera name -> settings)")
    else:
        cnode = top["cameras"][1]
        cams = v.mapping(cnode, "cameras")
        if cams is not None and not cams:
            v.problem(cnode, "cameras", "needs at least one camera")
        for name, (knode, vnode) in (cams or {}).items():
            cpath = f"cameras.{name}"
            if not NAME_RE.match(name):
                v.problem(knode, cpath, "camera names may only use letters, digits, '_' and '-' "
                          "(they become MQTT topic levels and URL parts)")
            if isinstance(vnode, yaml.ScalarNode) and vnode.tag == "tag:yaml.org,2002:str":
                vals = v.fields(yaml.MappingNode("tag:yaml.org,2002:map", [
                    (yaml.ScalarNode("tag:yaml.org,2002:str", "url", knode.start_mark, knode.end_mark), vnode)
                ], vnode.start_mark, vnode.end_mark), cpath, CAMERA_FIELDS)  # "name: url" shorthand
            else:
                vals = v.fields(vnode, cpath, CAMERA_FIELDS, required=("url",), at=knode)
            if "url" in vals:
                cam = CameraConfig(name=name, **{**defaults, **vals})
                bad = source_problem(cam.url, must_exist=check_machine and cam.enabled)
                if bad:
                    v.problem(v.nodes.get(f"{cpath}.url"), f"{cpath}.url",
                              f"{bad} (got {redact_url(cam.url)!r})")
                cameras.append(cam)
        if cameras and not any(c.enabled for c in cameras):
            v.problem(cnode, "cameras", "every camera is disabled (enabled: false); enable one")
    web = WebConfig(**v.fields(top["web"][1], "web", WEB_FIELDS)) if "web" in top else WebConfig()

    def section(key: str, fields: dict[str, _Check], required: str) -> dict[str, Any] | None:
        """An optional top-level section's checked values; None when absent or its required
        field is missing (reported)."""
        if key not in top:
            return None
        vals = v.fields(top[key][1], key, fields, required=(required,), at=top[key][0])
        return vals if required in vals else None

    mvals = section("mqtt", MQTT_FIELDS, "host")
    mqtt = MqttConfig(**mvals) if mvals is not None else None
    pvals = section("people", PEOPLE_FIELDS, "folder")
    people = PeopleConfig(**pvals) if pvals is not None else None
    if people is not None and check_machine and not Path(people.folder).is_dir():
        v.problem(v.nodes.get("people.folder"), "people.folder",
                  f"no such folder (got {people.folder!r}); make it with 'livefaces "
                  "people add NAME PHOTO... --people DIR'")
    det = _detector_options(v, dvals, [c for c in cameras if c.enabled],
                            engine_check if check_machine else None)
    if ("web" in top and web.enabled and not is_loopback(web.host) and not web.token
            and "web.token" not in v.nodes):  # a token given but invalid is reported already
        v.problem(top["web"][1], "web.token", f"is required when web.host is {web.host!r} (not "
                  "loopback): set web.token (e.g. token: \"${LIVEFACES_TOKEN}\") or bind 127.0.0.1")
    if v.problems:
        raise ConfigError(v.problems)
    return ServeConfig(cameras=tuple(cameras), web=web, mqtt=mqtt, detector=det, source=filename,
                       people=people)


def _detector_options(v: _Validator, vals: dict[str, Any], cameras: list[CameraConfig],
                      engine_check: EngineCheck | None) -> DetectorOptions:
    """The shared engine's options from the ``detector:`` values; ``providers`` (the old key,
    ONNX Runtime's provider) stands for ``device`` with the ``onnx`` engine, as it always
    meant. ``engine_check``: why an engine or device asked for cannot run here (the check the
    engine makes at start, without loading a model), or None."""
    vals = dict(vals)
    key = "detector.device"
    providers = vals.pop("providers", None)
    if providers is not None:
        if "device" in vals:
            v.problem(v.nodes.get("detector.providers"), "detector.providers",
                      "is the old name of detector.device: give one of them")
        else:
            vals["device"] = providers
            vals.setdefault("engine", "onnx")
            key = "detector.providers"
    if cameras:  # ServeConfig does this too; here so that the check below sees the real value
        vals["min_face_size"] = min(c.min_face_size for c in cameras)
    try:
        det = DetectorOptions(**vals)
    except ValueError as e:  # InputError: the ranges above are narrower, so not expected
        v.problem(v.nodes.get("detector"), "detector", str(e))
        return DetectorOptions()
    problem = engine_check(det) if engine_check is not None else None
    if problem:
        bad = key if key in v.nodes else "detector.engine"
        v.problem(v.nodes.get(bad), bad, problem)
    return det


def config_from_sources(sources: list[str], *, detect_fps: float = 5.0, min_face_size: float = MIN_FACE_SIZE,
                        check_machine: bool = False) -> ServeConfig:
    """A config from command-line ``[NAME=]URL`` items (names default to ``cam1``, ``cam2``...).

    Sources are checked like camera URLs in :func:`parse_config`; messages name the camera.
    """
    problems: list[str] = []
    for flag, value, conv in (("--detect-fps", detect_fps, CAMERA_FIELDS["detect_fps"]),
                              ("--min-face", min_face_size, CAMERA_FIELDS["min_face_size"])):
        _, err = conv(value)
        if err:
            problems.append(f"{flag}: {err} (got {value!r})")
    cams: list[CameraConfig] = []
    for i, item in enumerate(sources, 1):
        name, url = f"cam{i}", item
        head, sep, rest = item.partition("=")
        if sep and NAME_RE.match(head) and "://" not in head:
            name, url = head, rest
        if any(c.name == name for c in cams):
            problems.append(f"source {i}: camera name {name!r} given twice")
        bad = source_problem(url, must_exist=check_machine)
        if bad:
            problems.append(f"source {i} (camera {name}): {bad} (got {redact_url(url)!r})")
        cams.append(CameraConfig(name=name, url=url, detect_fps=detect_fps, min_face_size=min_face_size))
    if not cams:
        problems.append("no cameras: give --config FILE or one or more [NAME=]URL sources")
    if problems:
        raise ConfigError(problems)
    return ServeConfig(cameras=tuple(cams))


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]``, ``[IPv6]:PORT`` or a bare IPv6 address -> (host, port).

    Raises ``ValueError`` (one line) for a malformed item or a port that is not a number.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("expected HOST, HOST:PORT or [IPv6]:PORT")
        port = rest[1:] if rest else str(default_port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a plain host name, or an IPv6 address without a port
        host, port = text, str(default_port)
    if not port.isdigit():  # int() would also take ' 1_0 ' and '+5'
        raise ValueError(f"the port must be a number (got {port!r})")
    return host, int(port)


def build_config(config_file: str | os.PathLike[str] | None = None, sources: list[str] | None = None, *,
                 detect_fps: float = 5.0, min_face_size: float = MIN_FACE_SIZE, host: str | None = None,
                 port: int | None = None, token: str | None = None, mqtt: str | None = None,
                 engine: str | None = None, device: str | None = None, threads: int | None = None,
                 env: dict[str, str] | None = None, engine_check: EngineCheck | None = None,
                 people: str | None = None) -> ServeConfig:
    """The one validation path of ``livefaces serve``: ``--check-config`` and starting the server
    both call this, so a configuration that checks out is one ``serve`` accepts.

    Reads ``config_file`` (or builds a config from ``sources``), applies the command-line
    overrides (``host``, ``port``, ``token``, ``mqtt`` as ``HOST[:PORT]``, the detector's
    ``engine``, ``device`` and ``threads``, ``people``: the people folder), checks them with the
    same rules as the file, checks that the files of enabled cameras exist, and that a
    non-loopback bind has a token (``token``, ``web.token``, or ``$LIVEFACES_TOKEN`` in ``env``).
    Raises :class:`ConfigError` listing every problem.
    """
    env = dict(os.environ) if env is None else env
    if config_file is not None and sources:
        raise ConfigError(["give either --config FILE or [NAME=]URL sources, not both"])
    problems: list[str] = []
    cfg: ServeConfig | None = None
    try:  # go on after problems here: the overrides below are checked too, all reported at once
        if config_file is not None:
            cfg = load_config(config_file, env, check_machine=True, engine_check=engine_check)
        else:
            cfg = config_from_sources(list(sources or []), detect_fps=detect_fps,
                                      min_face_size=min_face_size, check_machine=True)
    except ConfigError as e:
        problems += e.problems

    def check(flag: str, conv: Callable[[Any], tuple[Any, str | None]], value: Any, secret: bool = False
              ) -> Any:
        val, err = conv(value)
        if err:
            problems.append(f"{flag}: {err} (got {'<hidden>' if secret else repr(value)})")
        return val

    # web settings of a file with mistakes are unknown: then no token check on them
    web = cfg.web if cfg is not None else WebConfig(enabled=config_file is None)
    if host is not None:
        web = dataclasses.replace(web, host=check("--host", WEB_FIELDS["host"], host))
    if port is not None:
        web = dataclasses.replace(web, port=check("--port", WEB_FIELDS["port"], port))
    if token is not None:
        web = dataclasses.replace(web, token=check("--token", WEB_FIELDS["token"], token, True))
    elif not web.token and env.get("LIVEFACES_TOKEN"):
        web = dataclasses.replace(web, token=check("$LIVEFACES_TOKEN", WEB_FIELDS["token"],
                                                   env["LIVEFACES_TOKEN"], True))
    token_bad = any(m.startswith(("--token", "$LIVEFACES_TOKEN")) for m in problems)
    if web.enabled and web.host and not is_loopback(web.host) and not web.token and not token_bad:
        problems.append(f"binding {web.host} (not loopback) needs an access token: set "
                        "LIVEFACES_TOKEN, --token or web.token, or bind 127.0.0.1")
    mq = cfg.mqtt if cfg is not None else None
    if mqtt is not None:
        try:
            mhost, mport = parse_host_port(mqtt, 1883)
        except ValueError as e:
            problems.append(f"--mqtt: {e}; expected HOST or HOST:PORT (got {mqtt!r})")
        else:
            h, e1 = MQTT_FIELDS["host"](mhost)
            p, e2 = MQTT_FIELDS["port"](mport)
            for err in (e1, e2):
                if err:
                    problems.append(f"--mqtt: {'host' if err is e1 else 'port'} {err} (got {mqtt!r})")
            if not (e1 or e2):
                mq = MqttConfig(host=h, port=p)
    det_over = {key: check(f"--{key}", DETECTOR_FIELDS[key], value)
                for key, value in (("engine", engine), ("device", device), ("threads", threads))
                if value is not None}
    pc = cfg.people if cfg is not None else None
    if people is not None:
        folder = check("--people", PEOPLE_FIELDS["folder"], people)
        if folder and not Path(folder).is_dir():
            problems.append(f"--people: no such folder (got {people!r})")
        pc = dataclasses.replace(pc, folder=folder) if pc else PeopleConfig(folder=folder)
    if problems or cfg is None:
        raise ConfigError(problems)
    det = cfg.detector
    if det_over:
        det = dataclasses.replace(det, **det_over)
        if ("engine" in det_over or "device" in det_over) and engine_check is not None:
            bad = engine_check(det)
            if bad:
                flags = " ".join(f"--{k} {det_over[k]}" for k in ("engine", "device") if k in det_over)
                raise ConfigError([f"{flags}: {bad}"])
    return dataclasses.replace(cfg, web=web, mqtt=mq, detector=det, people=pc)


# --------------------------------------------------------------------------- JSON Schema


def _attribute_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a class docstring, RST removed."""
    out: dict[str, str] = {}
    cur: str | None = None
    inside = False
    for line in (inspect.getdoc(cls) or "").splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            cur = m.group(1)
            out[cur] = m.group(2).strip()
        elif cur and line.startswith("        "):
            out[cur] += " " + line.strip()
        elif line.strip() or not line.startswith(" "):
            inside = line.startswith(" ")
            cur = None
    return {k: re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"\1", v).replace("``", "`")
            for k, v in out.items()}


def _json_default(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _section(cls: type, spec: dict[str, _Check], *, required: tuple[str, ...] = (),
             notes: dict[str, str] | None = None, description: str = "") -> dict[str, Any]:
    """The JSON Schema of one section: field rules from ``spec`` (the validator's own),
    defaults from the dataclass ``cls``, descriptions from its docstring."""
    docs = _attribute_docs(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if f.default is not dataclasses.MISSING}
    props: dict[str, Any] = {}
    for name, check in spec.items():
        sch: dict[str, Any] = {}
        text = " ".join(t for t in (docs.get(name, ""), (notes or {}).get(name, "")) if t)
        if text:
            sch["description"] = text
        sch.update(check.schema)
        if name in defaults:
            sch["default"] = _json_default(defaults[name])
        props[name] = sch
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out.update(additionalProperties=False, properties=props)
    if required:
        out["required"] = list(required)
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An empty section (``web:`` with nothing under it) means all defaults."""
    return {"anyOf": [schema, {"type": "null"}]}


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the serve configuration file, for editors.

    Generated from the same model the loader uses (the field rules of :data:`CAMERA_FIELDS`
    and friends, the dataclasses' defaults and docstrings); ``scripts/make_config_schema.py``
    writes it to ``docs/config.schema.json``. It checks shapes, types and ranges; what only
    the machine can tell (files exist, ``${VAR}`` set, a token for a non-loopback bind, at
    least one camera enabled, providers present) is left to ``livefaces serve --check-config``.
    """
    camera = _section(CameraConfig, CAMERA_FIELDS, required=("url",),
                      description="One camera: its URL and settings (over 'defaults').")
    url = {"description": "Shorthand: just the URL (other settings from 'defaults').",
           **CAMERA_FIELDS["url"].schema}
    detector = _section(
        DetectorOptions, DETECTOR_FIELDS,
        description="The one detector all cameras share (detection batched across cameras).",
        notes={"min_face_size": "In serve: the default of every camera's min_face_size; the "
                                "detector runs with the smallest value of the enabled cameras.",
               "providers": "Old name of `device` (an ONNX Runtime provider); implies engine "
                            "onnx. Give `device` instead."})
    detector["properties"]["providers"]["deprecated"] = True
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "livefaces serve configuration",
        "description": "The YAML file of `livefaces serve --config FILE` (docs/serve.md). "
                       "Generated by scripts/make_config_schema.py; `livefaces serve "
                       "--check-config` checks this and what only the machine can tell.",
        "type": "object",
        "additionalProperties": False,
        "required": ["cameras"],
        "properties": {
            "defaults": _nullable(_section(
                CameraConfig, DEFAULT_FIELDS,
                description="Settings applied to every camera unless the camera says otherwise.")),
            "cameras": {
                "description": "Camera name -> settings (or just its URL). Names become MQTT "
                               "topic levels, URL parts and metric labels.",
                "type": "object", "minProperties": 1,
                "propertyNames": {"pattern": NAME_RE.pattern},
                "additionalProperties": {"anyOf": [{"$ref": "#/$defs/url"},
                                                   {"$ref": "#/$defs/camera"}]},
            },
            "web": _nullable({"$ref": "#/$defs/web"}),
            "mqtt": {"$ref": "#/$defs/mqtt"},
            "detector": _nullable({"$ref": "#/$defs/detector"}),
            "people": {"$ref": "#/$defs/people"},
        },
        "$defs": {
            "url": url,
            "camera": camera,
            "web": _section(WebConfig, WEB_FIELDS, description="The HTTP server: web page, JSON API, "
                            "/health, /metrics."),
            "mqtt": _section(MqttConfig, MQTT_FIELDS, required=("host",),
                             description="Publish events to an MQTT broker (leave out: no MQTT)."),
            "detector": detector,
            "people": _section(PeopleConfig, PEOPLE_FIELDS, required=("folder",),
                               description="Known people, recognised live (leave out: no "
                               "identification; needs the identify extra)."),
        },
    }
