"""One camera, one engine: serve's typed config model and its JSON Schema, the ``detector:``
section, one error tree (ConfigError, OutputError), one URL redaction, one Signals."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from livefaces.errors import ConfigError, LiveFacesError, OutputError

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- errors


def test_config_error_lives_in_the_error_tree_and_stays_importable_from_serve():
    from livefaces.serve import config

    assert config.ConfigError is ConfigError
    assert issubclass(ConfigError, LiveFacesError) and issubclass(ConfigError, ValueError)
    e = ConfigError(["f.yaml:9: b: late", "f.yaml:2: a: early"])
    assert e.problems == ["f.yaml:2: a: early", "f.yaml:9: b: late"]  # file order
    assert str(e).startswith("2 problems in the configuration:\n  f.yaml:2: a: early")
    assert str(ConfigError(["f.yaml:2: a: bad"])) == "f.yaml:2: a: bad"


def test_writer_on_a_full_disk_raises_one_line_output_error(tmp_path):
    from livefaces.avio import AVWriter

    assert issubclass(OutputError, LiveFacesError) and issubclass(OutputError, OSError)
    out = tmp_path / "rec.mp4"
    (tmp_path / "rec.part.mp4").symlink_to("/dev/full")  # every write: ENOSPC
    w = AVWriter(out, fps=25)
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(OutputError) as ei:
        for i in range(200):
            w.write(rgb, i / 25)
        w.close()
    msg = str(ei.value)
    assert msg.startswith(f"{out}: cannot write (No space left on device)")
    assert "\n" not in msg
    assert not out.exists()  # never a file under the final name that is not complete


def test_writer_after_a_failed_write_closes_without_crashing(tmp_path):
    # flushing into the failed muxer used to kill the process (SIGSEGV inside FFmpeg), so this
    # runs in a child process: a crash is a failed test, not a dead test run
    import subprocess
    import sys
    import textwrap

    (tmp_path / "rec.part.mp4").symlink_to("/dev/full")
    code = textwrap.dedent(f"""
        import numpy as np
        from livefaces.avio import AVWriter
        from livefaces.errors import OutputError
        w = AVWriter({str(tmp_path / "rec.mp4")!r}, fps=25)
        try:
            for i in range(200):
                w.write(np.zeros((64, 64, 3), np.uint8), i / 25)
        except OutputError as e:
            first = str(e)
        try:
            w.write(np.zeros((64, 64, 3), np.uint8), 9.0)
        except OutputError as e:
            assert str(e) == first, (str(e), first)
        else:
            raise SystemExit("a write after the failure was accepted")
        w.close()
        w.close()
        print("closed")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0 and r.stdout.strip() == "closed", (r.returncode, r.stderr[-2000:])
    assert not (tmp_path / "rec.mp4").exists()


def test_writer_into_a_missing_folder_raises_output_error_naming_the_file(tmp_path):
    from livefaces.avio import AVWriter

    out = tmp_path / "no" / "such" / "rec.mp4"
    w = AVWriter(out, fps=25)
    with pytest.raises(OutputError, match=rf"^{out}: cannot write \(No such file or directory\)"):
        for i in range(50):
            w.write(np.zeros((64, 64, 3), np.uint8), i / 25)
        w.close()
    with pytest.raises(OSError):  # still an OSError for callers that catch those
        raise OutputError("x")


def test_a_camera_default_has_one_home(tmp_path):
    """detect_fps, idle_interval and the shared engine's face size: written once, read by the
    file, the command line and the live pipeline alike."""
    from livefaces.schedule import GateOptions
    from livefaces.serve.config import (
        DETECT_FPS,
        CameraConfig,
        ServeConfig,
        build_config,
        parse_config,
        smallest_face,
    )

    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"")
    cam = CameraConfig("a", "rtsp://h/x")
    assert cam.detect_fps == DETECT_FPS
    assert cam.idle_interval == GateOptions().idle_interval  # serve's camera = watch's default
    assert build_config(sources=[str(clip)]).cameras[0].detect_fps == DETECT_FPS
    assert parse_config("cameras: {a: rtsp://h/x}").cameras[0].detect_fps == DETECT_FPS
    cams = (CameraConfig("a", "rtsp://h/x", min_face_size=60),
            CameraConfig("b", "rtsp://h/y", min_face_size=30, enabled=False),
            CameraConfig("c", "rtsp://h/z", min_face_size=45))
    assert smallest_face(cams) == 45 == ServeConfig(cameras=cams).detector.min_face_size


# --------------------------------------------------------------------------- redaction


def test_one_url_redaction_on_the_ground_floor():
    import ast
    import inspect

    import livefaces.avio
    import livefaces.redact
    import livefaces.serve.config
    import livefaces.serve.web
    import livefaces.sources

    assert livefaces.sources.redact_url is livefaces.redact.redact_url
    # one list of secret parameter names: serve's log filter uses it too
    assert livefaces.serve.web.redact_params is livefaces.redact.redact_params
    line = "GET /a?session=s1&sig=s2&api_key=s3&passwd=s4&auth_token%3Ds5 200"
    assert not any(f"s{i}" in livefaces.serve.web.redact(line) for i in range(1, 6))
    assert livefaces.serve.config.redact_url is livefaces.redact.redact_url
    # avio (PyAV) is below the feature modules: it must not reach into sources for this
    imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(livefaces.avio)))
                if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.startswith("sources") for m in imported), imported
    ground = {n.module for n in ast.walk(ast.parse(inspect.getsource(livefaces.redact)))
              if isinstance(n, ast.ImportFrom) and n.level}
    assert not ground  # no livefaces imports at all
    pw = "hunter2"
    cam = livefaces.serve.config.CameraConfig(name="a", url=f"rtsp://u:{pw}@h/x")
    assert cam.safe_url == "rtsp://u:***@h/x" and pw not in repr(cam)


# --------------------------------------------------------------------------- signals


def test_one_signals_class_remembers_the_first_signal_and_restores_handlers():
    import signal
    import threading

    from livefaces.cli import serve as serve_cli
    from livefaces.cli._live import Signals

    assert serve_cli.Signals is Signals and not hasattr(serve_cli, "_Signals")
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with Signals(stop.set) as s:
        assert s.signum is None and not s.interrupted
        signal.raise_signal(signal.SIGTERM)  # handled on the main thread right here
        assert stop.is_set() and s.signum == signal.SIGTERM and s.count == 1
    assert signal.getsignal(signal.SIGTERM) is before


# --------------------------------------------------------------------------- JSON Schema

SCHEMA = ROOT / "docs" / "config.schema.json"


def _validator():
    import json

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_what_the_script_generates():
    import json
    import subprocess
    import sys

    from livefaces.serve.config import config_schema

    assert json.loads(SCHEMA.read_text(encoding="utf-8")) == config_schema()
    r = subprocess.run([sys.executable, "scripts/make_config_schema.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_schema_has_every_field_of_the_model_with_its_default():
    import dataclasses

    from livefaces.detect.options import DetectorOptions
    from livefaces.serve.config import CameraConfig, MqttConfig, WebConfig, config_schema

    s = config_schema()["$defs"]
    for cls, name, extra in ((CameraConfig, "camera", {"name"}), (WebConfig, "web", set()),
                             (MqttConfig, "mqtt", set()), (DetectorOptions, "detector", set())):
        props = s[name]["properties"]
        assert {f.name for f in dataclasses.fields(cls)} - extra <= set(props), name
        for f in dataclasses.fields(cls):
            if f.name in props and f.default is not dataclasses.MISSING:
                want = list(f.default) if isinstance(f.default, tuple) else f.default
                assert props[f.name]["default"] == want, (name, f.name)
            if f.name in props:
                assert props[f.name].get("description"), (name, f.name)
    # the detector's defaults come from detect.options, never repeated
    assert s["detector"]["properties"]["factor"]["default"] == DetectorOptions().factor
    assert s["camera"]["properties"]["min_face_size"]["default"] == DetectorOptions().min_face_size


def _doc_yaml_examples() -> list[str]:
    import re

    text = (ROOT / "docs" / "serve.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return [b for b in blocks if "cameras:" in b]


def test_schema_and_loader_accept_the_examples_of_docs_serve_md():
    import yaml

    from livefaces.serve.config import parse_config

    v = _validator()
    examples = _doc_yaml_examples()
    assert examples
    env = {"FRONT_PASSWORD": "pw", "LIVEFACES_TOKEN": "t0ken", "MQTT_PASSWORD": "pw"}
    for text in examples:
        errors = [e.message for e in v.iter_errors(yaml.safe_load(text))]
        assert not errors, (errors, text)
        parse_config(text, env=env)  # the loader agrees


BAD = [
    ("cameras:\n  a: rtsp://h/x\ncolour: red\n", "colour"),                         # unknown section
    ("cameras:\n  a:\n    url: rtsp://h/x\n    colour: red\n", "colour"),           # unknown setting
    ("cameras:\n  a:\n    url: rtsp://h/x\n    detect_fps: fast\n", "detect_fps"),
    ("cameras:\n  a:\n    url: rtsp://h/x\n    detect_fps: 0\n", "detect_fps"),
    ("cameras:\n  front door: rtsp://h/x\n", "front door"),                         # name
    ("cameras:\n  a:\n    detect_fps: 2\n", "url"),                                 # no url
    ("web:\n  port: 8780\n", "cameras"),                                            # no cameras
    ("cameras: {}\n", "cameras"),
    ("cameras:\n  a: rtsp://h/x\nweb:\n  port: 70000\n", "port"),
    ("cameras:\n  a: rtsp://h/x\nmqtt:\n  port: 1883\n", "host"),
    ("cameras:\n  a: rtsp://h/x\nmqtt:\n  host: b\n  topic_prefix: a/#\n", "topic_prefix"),
    ("cameras:\n  a: rtsp://h/x\ndetector:\n  device: gpu\n", "device"),
    ("cameras:\n  a: rtsp://h/x\ndetector:\n  engine: tensorflow\n", "engine"),
    ("cameras:\n  a: rtsp://h/x\ndetector:\n  thresholds: [0.6, 0.7]\n", "thresholds"),
    ("cameras:\n  a: rtsp://h/x\ndetector:\n  providers: rocm\n", "providers"),
    ("cameras:\n  a: rtsp://h/x\ndetector:\n  threads: 0\n", "threads"),
]


@pytest.mark.parametrize("text,field", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_schema_and_loader_both_reject_bad_configs(text, field):
    import yaml

    from livefaces.serve.config import parse_config

    v = _validator()
    assert list(v.iter_errors(yaml.safe_load(text))), text
    with pytest.raises(ConfigError) as ei:
        parse_config(text, env={})
    assert field in str(ei.value)


# --------------------------------------------------------------------------- detector: section


def test_detector_section_maps_onto_detector_options():
    from livefaces.detect.options import DetectorOptions
    from livefaces.serve.config import parse_config

    cfg = parse_config("cameras:\n  a: rtsp://h/x\n")
    assert cfg.detector == DetectorOptions()  # defaults from detect.options, not repeated
    cfg = parse_config("cameras:\n  a: rtsp://h/x\n  b:\n    url: rtsp://h/y\n    min_face_size: 60\n"
                       "detector:\n  engine: torch\n  device: cuda:1\n  threads: 3\n"
                       "  min_face_size: 40\n  factor: 0.8\n  thresholds: [0.5, 0.6, 0.7]\n")
    assert cfg.detector == DetectorOptions(engine="torch", device="cuda:1", threads=3,
                                           min_face_size=40, factor=0.8,
                                           thresholds=(0.5, 0.6, 0.7))
    # detector.min_face_size is every camera's default; the engine runs at the smallest
    assert [c.min_face_size for c in cfg.cameras] == [40, 60]


def test_engine_runs_at_the_smallest_face_of_the_enabled_cameras():
    from livefaces.serve.config import CameraConfig, ServeConfig, parse_config

    cfg = parse_config("defaults:\n  min_face_size: 50\ncameras:\n  a: rtsp://h/x\n  b:\n"
                       "    url: rtsp://h/y\n    min_face_size: 30\n  c:\n    url: rtsp://h/z\n"
                       "    min_face_size: 12\n    enabled: false\n")
    assert cfg.detector.min_face_size == 30
    hand_made = ServeConfig(cameras=(CameraConfig("a", "rtsp://h/x", min_face_size=44),))
    assert hand_made.detector.min_face_size == 44


def test_old_providers_key_is_an_alias_of_device_on_onnx():
    from livefaces.serve.config import parse_config

    cfg = parse_config("cameras:\n  a: rtsp://h/x\ndetector:\n  providers: cpu\n")
    assert (cfg.detector.engine, cfg.detector.device) == ("onnx", "cpu")
    with pytest.raises(ConfigError, match=r"^<config>:5: detector.providers: is the old name of "
                                          r"detector.device"):
        parse_config("cameras:\n  a: rtsp://h/x\ndetector:\n  device: cpu\n  providers: cpu\n")


def test_serve_cli_detector_flags_override_the_file(tmp_path):
    from conftest import run_cli

    f = tmp_path / "c.yaml"
    f.write_text("cameras:\n  a: rtsp://h/x\ndetector:\n  threads: 2\n  engine: torch\n")
    r = run_cli("serve", "--config", str(f), "--check-config", "--engine", "onnx", "--device", "cpu",
                timeout=60)
    assert r.returncode == 0, r.stderr
    assert "detector: engine onnx, device cpu, threads 2, min face 20 px" in r.stdout
    r = run_cli("serve", "--config", str(f), "--check-config", "--device", "gpu", timeout=60)
    assert r.returncode == 3
    assert r.stderr.strip() == "livefaces: error: --device: must be auto, cpu, cuda or cuda:N (got 'gpu')"
    r = run_cli("serve", "--config", str(f), "--check-config", "--threads", "0", timeout=60)
    assert r.returncode == 2 and "argument --threads: invalid value '0'" in r.stderr  # usage error
    assert "Traceback" not in r.stderr
