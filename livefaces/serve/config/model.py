"""The model of a ``serve`` configuration: frozen dataclasses, their defaults (each camera
default has its home here), and the rules that are facts about the model rather than about
the file: which bind needs a token, which face size the one shared engine runs at."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...detect.options import MIN_FACE_SIZE, DetectorOptions
from ...redact import redact_url

#: frames per second a camera's faces are checked by the networks (``detect_fps``), unless the
#: file (``defaults:``, the camera) or ``--detect-fps`` says otherwise
DETECT_FPS = 5.0


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
    detect_fps: float = DETECT_FPS
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
        discovery: publish Home Assistant MQTT discovery configs (retained), so that HA makes a
            device per camera with its entities by itself (docs/serve.md); false: none.
        discovery_prefix: the discovery prefix HA listens on (HA's default ``homeassistant``).
        home_within: seconds a known person's HA device tracker stays ``home`` after they
            were last identified on any camera (with ``people:``).
    """

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "livefaces"
    client_id: str = "livefaces"
    keepalive: int = 30
    buffer: int = 1000
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    home_within: float = 600.0

    def __repr__(self) -> str:
        return (f"MqttConfig(host={self.host!r}, port={self.port}, username={self.username!r}, "
                f"password={'***' if self.password else None}, topic_prefix={self.topic_prefix!r}, "
                f"client_id={self.client_id!r}, keepalive={self.keepalive}, buffer={self.buffer}, "
                f"discovery={self.discovery}, discovery_prefix={self.discovery_prefix!r}, "
                f"home_within={self.home_within})")


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
        strangers: cluster unknown faces into strangers with stable ids (``stranger-7``,
            ``identity.stranger`` in events, ``strangers`` in ``/api/people``), kept in the
            people folder's ``.strangers/`` (docs/identify.md "Strangers"). Off by default.
        stranger_retention_days: a stranger not seen for this long is deleted (privacy).
        max_strangers: strangers kept (the least recently seen are deleted first).
    """

    folder: str
    blur_unknown: bool = False
    unknown_crops: int = 8
    absent_after: float = 10.0
    strangers: bool = False
    stranger_retention_days: float = 30.0
    max_strangers: int = 200


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
        smallest = smallest_face(self.cameras)
        if smallest is not None and self.detector.min_face_size != smallest:
            object.__setattr__(self, "detector", dataclasses.replace(self.detector,
                                                                      min_face_size=smallest))

    @property
    def enabled_cameras(self) -> tuple[CameraConfig, ...]:
        return tuple(c for c in self.cameras if c.enabled)

    def camera(self, name: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.name == name), None)


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


def needs_token(web: WebConfig) -> bool:
    """The one rule of access tokens: an enabled web server bound to anything but loopback
    must have a token (the file, ``--token`` or ``$LIVEFACES_TOKEN`` give it)."""
    return web.enabled and bool(web.host) and not is_loopback(web.host) and not web.token


def smallest_face(cameras: Iterable[CameraConfig]) -> float | None:
    """The ``min_face_size`` the one shared engine runs at: the smallest of the enabled
    cameras (None: no camera enabled). Cameras asking for bigger faces are shrunk before
    detection by ``smallest / their own``."""
    sizes = [c.min_face_size for c in cameras if c.enabled]
    return min(sizes) if sizes else None
