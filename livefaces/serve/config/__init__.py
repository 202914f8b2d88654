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

Only PyYAML is used (in ``loader.py`` only): its composed node tree carries the line of every
key and value.

One file each: ``model.py`` (the dataclasses and their defaults), ``checks.py`` (the rule of a
single value, with its JSON Schema), ``fields.py`` (the settings of each section),
``loader.py`` (YAML to the model), ``overrides.py`` (sources and flags from the command line),
``schema.py`` (the JSON Schema).
"""

from __future__ import annotations

from ...errors import ConfigError as ConfigError  # its home is errors.py; kept importable here
from ...redact import redact_url as redact_url
from .checks import DEVICE_RE, HOSTNAME_RE, Check
from .fields import (
    CAMERA_FIELDS,
    DEFAULT_FIELDS,
    DETECTOR_FIELDS,
    MQTT_FIELDS,
    NAME_RE,
    PEOPLE_FIELDS,
    TOP_FIELDS,
    WEB_FIELDS,
)
from .loader import MAX_FILE_BYTES, load_config, parse_config
from .model import (
    DETECT_FPS,
    CameraConfig,
    EngineCheck,
    MqttConfig,
    PeopleConfig,
    ServeConfig,
    WebConfig,
    is_loopback,
    needs_token,
    smallest_face,
)
from .overrides import build_config, config_from_sources, parse_host_port
from .schema import config_schema

__all__ = [
    "CAMERA_FIELDS", "DEFAULT_FIELDS", "DETECTOR_FIELDS", "DETECT_FPS", "DEVICE_RE", "HOSTNAME_RE",
    "MAX_FILE_BYTES", "MQTT_FIELDS", "NAME_RE", "PEOPLE_FIELDS", "TOP_FIELDS", "WEB_FIELDS",
    "CameraConfig", "Check", "ConfigError", "EngineCheck", "MqttConfig", "PeopleConfig",
    "ServeConfig", "WebConfig", "build_config", "config_from_sources", "config_schema",
    "is_loopback", "load_config", "needs_token", "parse_config", "parse_host_port",
    "redact_url", "smallest_face",
]
