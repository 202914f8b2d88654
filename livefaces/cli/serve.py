"""``livefaces serve``: watch several cameras in one process, with a web UI, an API and MQTT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from ..detect.options import ENGINES, MIN_FACE_SIZE
from ..errors import LiveFacesError
from ._common import (
    COUNT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SETUP,
    EXIT_USAGE,
    MIN_FACE,
    POSITIVE,
    SECONDS,
    Number,
    error,
    printable,
    say,
)
from ._live import Signals

NAME = "serve"
HELP = "watch cameras: live web view, JSON API, Prometheus metrics, MQTT events"
DESCRIPTION = """\
Run several cameras in one process with ONE shared detector (detection batched across
cameras). Opens a web page with a live annotated view of every camera, an event feed and
per-camera status; a JSON API (/api/cameras, /api/events?since=, snapshots); /health;
/metrics for Prometheus; and, with an 'mqtt:' section, publishes events to MQTT
(livefaces/<camera>/events, livefaces/<camera>/status, retained livefaces/available).

Cameras come from a YAML file (--config; see docs/serve.md) or from the command line as
[NAME=]URL items. Binds 127.0.0.1 unless told otherwise; any other address needs a token
(--token, $LIVEFACES_TOKEN or web.token), sent as 'Authorization: Bearer TOKEN' or by
opening the page once as http://HOST:PORT/?token=TOKEN (it is then kept in a cookie);
10 wrong tokens a minute from one address are answered 429. Without a token only the
server's own host names are answered (localhost, 127.0.0.1, [::1], the bound host, and
web.allowed_hosts), so other web sites cannot reach it through DNS rebinding.
Camera passwords are never shown: not on the page, in the API, logs or metrics."""
EPILOG = """\
examples:
  livefaces serve --config cameras.yaml
  livefaces serve --config cameras.yaml --check-config      # validate only
  livefaces serve front=rtsp://viewer:PASS@192.168.1.20/stream2 back=rtsp://192.168.1.21/live
  LIVEFACES_TOKEN=$(openssl rand -hex 16) livefaces serve --config cameras.yaml --host 0.0.0.0
  livefaces serve clip.mp4 --port 8780 --duration 60         # a file plays like a camera

then open http://127.0.0.1:8780/ ; 'curl -s localhost:8780/api/events?since=0' for events."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="*", metavar="[NAME=]URL",
                   help="cameras (RTSP/HTTP URL, video file, webcam number); instead of --config")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (docs/serve.md)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration, print a summary, and exit (0 = valid, 3 = not)")
    g = p.add_argument_group("overrides (win over the file)")
    g.add_argument("--host", help="address to bind (default 127.0.0.1; others need a token)")
    g.add_argument("--port", type=Number(int, 0, 65535), help="port (default 8780; 0 = any free port)")
    g.add_argument("--token", help="access token (better: $LIVEFACES_TOKEN, not visible in ps)")
    g.add_argument("--mqtt", metavar="HOST[:PORT]", help="MQTT broker for events")
    g.add_argument("--people", metavar="DIR",
                   help="recognise the people of this folder (people.folder; the identify extra)")
    g.add_argument("--detect-fps", type=POSITIVE, metavar="F",  # default: serve.config.DETECT_FPS
                   help="detections per second per camera, for command-line sources (default 5)")
    g.add_argument("--min-face", type=MIN_FACE, default=MIN_FACE_SIZE, metavar="PX",
                   help=f"smallest face in pixels, for command-line sources (default {MIN_FACE_SIZE:g})")
    # the same names as the other commands' detector flags; unset = the file's 'detector:'
    # section (its defaults: livefaces.detect.options.DetectorOptions)
    g.add_argument("--engine", choices=ENGINES, default=None,
                   help="onnx (ONNX Runtime) or torch (PyTorch); auto: a CUDA engine when one "
                        "works, else onnx on CPU (default: detector.engine, auto)")
    g.add_argument("--device", default=None, metavar="{auto,cpu,cuda[:N]}",
                   help="where the shared detector runs (default: detector.device, auto); asking "
                        "for cuda where no engine reaches one is an error")
    g.add_argument("--threads", type=COUNT, default=None, metavar="N",
                   help="CPU threads of the detector (default: detector.threads, all cores)")
    p.add_argument("--duration", type=SECONDS, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")


def _build_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The validated config: the same call for --check-config and for starting (no drift)."""
    from ..detect.engine import engine_problem
    from ..serve.config import DETECT_FPS, build_config

    fps = DETECT_FPS if args.detect_fps is None else args.detect_fps
    return build_config(args.config, args.sources, detect_fps=fps,
                        min_face_size=args.min_face, host=args.host, port=args.port,
                        token=args.token, mqtt=args.mqtt, engine=args.engine,
                        device=args.device, threads=args.threads, engine_check=engine_problem,
                        people=args.people)


def run(args: argparse.Namespace) -> int:
    try:
        import aiohttp  # noqa: F401
        import paho.mqtt  # noqa: F401
        import prometheus_client  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        error(f"livefaces serve needs extra packages ({e.name} is missing): install livefaces "
              "with its 'serve' extra (pip install '.[cpu,serve]' in the livefaces folder)")
        return EXIT_SETUP
    from ..serve.config import ConfigError

    if not args.config and not args.sources:
        error("no cameras: give --config FILE or one or more [NAME=]URL sources (see --help)")
        return EXIT_USAGE
    try:
        cfg = _build_config(args)
    except ConfigError as e:
        error(str(e))
        return EXIT_SETUP
    if args.check_config:
        from ..redact import redact_url

        print(printable(f"{cfg.source}: OK, {len(cfg.cameras)} camera(s)"))
        for c in cfg.cameras:
            state = "enabled " if c.enabled else "disabled"
            print(printable(f"  {c.name:<16} {state} detect {c.detect_fps:g}/s  min face "
                            f"{c.min_face_size:g} px  {redact_url(c.url)}"))
        d = cfg.detector
        print(f"  detector: engine {d.engine}, device {d.device}, threads {d.threads or 'all'}, "
              f"min face {d.min_face_size:g} px")
        w = cfg.web
        whost = f"[{w.host}]" if ":" in w.host else w.host
        every = "  (all interfaces)" if w.host in ("0.0.0.0", "::") else ""
        print(f"  web: http://{whost}:{w.port}/{every}  token: {'set' if w.token else 'none'}")
        if cfg.mqtt:
            mhost = f"[{cfg.mqtt.host}]" if ":" in cfg.mqtt.host else cfg.mqtt.host  # IPv6
            print(printable(f"  mqtt: {mhost}:{cfg.mqtt.port}  prefix {cfg.mqtt.topic_prefix}/"))
        if cfg.people:
            print(printable(f"  people: {cfg.people.folder}"
                            + ("  (unknown faces blurred)" if cfg.people.blur_unknown else "")))
        return EXIT_OK

    from ..serve.app import CameraServer
    from ..serve.web import RedactingFilter

    # tokens and passwords never reach a log line, whichever library logs it (aiohttp's own
    # loggers included), and URLs from requests cannot forge lines: filter at the handlers
    secrets = [s for s in (cfg.web.token, cfg.mqtt.password if cfg.mqtt else None) if s]
    redacting = RedactingFilter(secrets)
    handlers = list(logging.getLogger().handlers)
    for h in handlers:
        h.addFilter(redacting)
    log = logging.getLogger("livefaces.serve")
    try:
        server = CameraServer(cfg)
    except (ValueError, LiveFacesError) as e:
        error(str(e))
        return EXIT_SETUP
    stop = threading.Event()
    # explicit handlers for SIGINT, SIGTERM and SIGHUP (as uvicorn does for the first two): a
    # shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; a hang-up would otherwise kill it without MQTT's clean 'offline'

    signals = Signals(stop.set)  # the server owns its signals; a second one forces exit
    try:
        with signals:
            try:
                server.start()
            except LiveFacesError as e:  # the people folder or the identify extra
                error(str(e))
                server.stop()
                return EXIT_SETUP
            except OSError as e:
                reason = (os.strerror(e.errno) if e.errno else (e.strerror or str(e))).lower()
                error(f"cannot listen on {cfg.web.host}:{cfg.web.port}: {reason} "
                      "(choose another --port, or stop the program using it)")
                server.stop()
                return EXIT_SETUP
            if server.web is not None:
                say(f"livefaces: serving {len(cfg.enabled_cameras)} camera(s) on {server.web.where()}")
            log.info("detector shared by %s", ", ".join(c.name for c in cfg.enabled_cameras))
            if args.duration:
                stop.wait(args.duration)
            else:
                while not stop.wait(1.0):  # timed waits: signal handlers run between them
                    pass
            server.stop()
        return EXIT_INTERRUPTED if signals.signum == signal.SIGINT else EXIT_OK
    finally:
        for h in handlers:
            h.removeFilter(redacting)

