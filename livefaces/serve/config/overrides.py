"""A ``serve`` configuration from the command line: cameras from ``[NAME=]URL`` items, and the
flags that override a file (``--host``, ``--token``, ``--mqtt``, ``--engine``...), checked by
the rules of the file. :func:`build_config` is the one validation path of ``livefaces serve``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...detect.options import MIN_FACE_SIZE
from ...errors import ConfigError
from ...redact import redact_url
from ...specs import source_problem
from .fields import CAMERA_FIELDS, DETECTOR_FIELDS, MQTT_FIELDS, NAME_RE, PEOPLE_FIELDS, WEB_FIELDS
from .loader import load_config
from .model import (
    DETECT_FPS,
    CameraConfig,
    EngineCheck,
    MqttConfig,
    PeopleConfig,
    ServeConfig,
    WebConfig,
    needs_token,
)


def config_from_sources(sources: list[str], *, detect_fps: float = DETECT_FPS,
                        min_face_size: float = MIN_FACE_SIZE, check_machine: bool = False
                        ) -> ServeConfig:
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
                 detect_fps: float = DETECT_FPS, min_face_size: float = MIN_FACE_SIZE,
                 host: str | None = None,
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
    if needs_token(web) and not token_bad:
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
