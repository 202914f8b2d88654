"""Which settings each section of the file takes, and the rule of each (:mod:`.checks`)."""

from __future__ import annotations

import re

from ...detect.options import ENGINES
from .checks import (
    DEVICE_RE,
    Check,
    boolean,
    choice,
    host_list,
    number,
    optional,
    string,
    thresholds,
    topic_prefix,
)

#: a camera's name: it becomes an MQTT topic level, a URL part and a metric label
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

CAMERA_FIELDS = {
    "url": string(hint="rtsp://..., a video file, an image folder or a webcam number"),
    "detect_fps": number(0, 60, lo_open=True),
    "min_face_size": number(12, 4096),
    "enabled": boolean,
    "motion": boolean,
    "refine": boolean,
    "idle_interval": number(0.1, 3600),
}
DEFAULT_FIELDS = {k: v for k, v in CAMERA_FIELDS.items() if k != "url"}
WEB_FIELDS = {
    "host": string(no_space=True),
    "port": number(0, 65535, integer=True),
    "token": optional(string(no_space=True, hint="it is sent in an HTTP header")),
    "stream_fps": number(0, 30, lo_open=True),
    "jpeg_quality": number(10, 100, integer=True),
    "enabled": boolean,
    "allowed_hosts": host_list,
    "idle_timeout": number(0.5, 3600),
    "max_connections": number(8, 100_000, integer=True),
}
MQTT_FIELDS = {
    "host": string(no_space=True),
    "port": number(1, 65535, integer=True),
    "username": optional(string()),
    "password": optional(string()),
    "topic_prefix": topic_prefix,
    "client_id": string(),
    "keepalive": number(5, 3600, integer=True),
    "buffer": number(1, 1_000_000, integer=True),
    "discovery": boolean,
    "discovery_prefix": topic_prefix,
    "home_within": number(1, 30 * 86400),
}
#: the ``detector:`` section: the fields of :class:`~livefaces.detect.options.DetectorOptions`
#: (defaults come from there), plus ``providers``, the old name of ``device``
DETECTOR_FIELDS = {
    "engine": choice(*ENGINES),
    "device": Check(lambda v: (v, None) if isinstance(v, str) and DEVICE_RE.match(v)
                     else (None, "must be auto, cpu, cuda or cuda:N"),
                     {"type": "string", "pattern": DEVICE_RE.pattern}),
    "min_face_size": CAMERA_FIELDS["min_face_size"],
    "thresholds": thresholds,
    "factor": number(0.1, 0.95),
    "threads": optional(number(1, 256, integer=True)),
    "providers": optional(choice("cpu", "cuda")),
}
PEOPLE_FIELDS = {
    "folder": string(hint="a people folder made by 'livefaces people add'"),
    "blur_unknown": boolean,
    "unknown_crops": number(0, 100, integer=True),
    "absent_after": number(0, 3600),
    "strangers": boolean,
    "stranger_retention_days": number(0.01, 3650),
    "max_strangers": number(1, 100000, integer=True),
}
TOP_FIELDS = ("defaults", "cameras", "web", "mqtt", "detector", "people")
