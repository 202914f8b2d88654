"""The serve config: validation messages name file, line and field; --check-config."""

from __future__ import annotations

import pytest
from conftest import run_cli

from livefaces.serve.config import ConfigError, config_from_sources, load_config, parse_config

GOOD = """\
defaults:
  detect_fps: 4
  min_face_size: 30
cameras:
  front_door:
    url: rtsp://viewer:${CAM_PW}@192.168.1.20:554/stream2
    detect_fps: 8
  garage: rtsp://192.168.1.21/live
  old:
    url: rtsp://192.168.1.22/live
    enabled: false
web:
  host: 127.0.0.1
  port: 8781
  stream_fps: 3
mqtt:
  host: broker.local
  username: livefaces
  password: ${MQTT_PW}
detector:
  threads: 2
"""


def test_good_config_with_defaults_and_env():
    cfg = parse_config(GOOD, filename="cams.yaml", env={"CAM_PW": "pw1", "MQTT_PW": "pw2"})
    cams = {c.name: c for c in cfg.cameras}
    assert cams["front_door"].detect_fps == 8 and cams["front_door"].min_face_size == 30
    assert cams["garage"].detect_fps == 4 and cams["garage"].url == "rtsp://192.168.1.21/live"
    assert [c.name for c in cfg.enabled_cameras] == ["front_door", "garage"]
    assert cams["front_door"].url.endswith(":pw1@192.168.1.20:554/stream2")
    assert "pw1" not in repr(cfg) and "pw2" not in repr(cfg)
    assert cfg.mqtt is not None and cfg.mqtt.password == "pw2" and cfg.mqtt.port == 1883
    assert cfg.web.port == 8781 and cfg.detector.threads == 2


BAD = """\
cameras:
  front:
    url: rtsp://admin:hunter2@10.0.0.1/s
    detect_fps: fast
  "bad name": a.mp4
  back:
    colour: red
  front:
    url: x.mp4
web:
  host: 0.0.0.0
  port: 99999
detector:
  thresholds: [0.6, 0.7]
extra: 1
"""


def test_bad_config_reports_every_problem_with_line_and_field():
    with pytest.raises(ConfigError) as ei:
        parse_config(BAD, filename="cams.yaml", env={})
    p = ei.value.problems
    text = "\n".join(p)
    assert "cams.yaml:4: cameras.front.detect_fps: must be a number (got 'fast')" in p
    assert any(s.startswith("cams.yaml:5: cameras.bad name:") for s in p)
    assert any(s.startswith("cams.yaml:7: cameras.back.colour: unknown setting") for s in p)
    assert any(s.startswith("cams.yaml:6: cameras.back: 'url' is required") for s in p)
    assert any(s.startswith("cams.yaml:8: cameras.front: given twice (first on line 2)") for s in p)
    assert any(s.startswith("cams.yaml:12: web.port: must be <= 65535") for s in p)
    assert any(s.startswith("cams.yaml:14: detector.thresholds:") for s in p)
    assert any(s.startswith("cams.yaml:15: extra: unknown section") for s in p)
    assert any("web.token: is required when web.host is '0.0.0.0'" in s for s in p)
    assert "hunter2" not in text
    lines = [int(s.split(":")[1]) for s in p]
    assert lines == sorted(lines)


@pytest.mark.parametrize("text, expect", [
    ("", "the file is empty"),
    ("cameras: [a, b]\n", "cameras: must be a mapping"),
    ("cameras:\n  a: {url: x\n", "not valid YAML"),
    ("cameras: {}\n", "needs at least one camera"),
    ("cameras:\n  a: rtsp://${NOPE}@h/\n", "environment variable NOPE is not set"),
    ("cameras:\n  a:\n    url: x\n    detect_fps: true\n", "must be a number"),
])
def test_small_mistakes(text, expect):
    with pytest.raises(ConfigError, match=expect):
        parse_config(text, filename="c.yaml", env={})


def test_sources_from_command_line():
    cfg = config_from_sources(["front=rtsp://u:p@h/1", "rtsp://h/2", "clip.mp4"])
    assert [c.name for c in cfg.cameras] == ["front", "cam2", "cam3"]
    with pytest.raises(ConfigError, match="given twice"):
        config_from_sources(["a=x.mp4", "a=y.mp4"])


def test_check_config_cli(tmp_path, monkeypatch):
    good = tmp_path / "cams.yaml"
    good.write_text(GOOD)
    monkeypatch.setenv("CAM_PW", "pw-in-env")
    monkeypatch.setenv("MQTT_PW", "other")
    monkeypatch.delenv("LIVEFACES_TOKEN", raising=False)
    r = run_cli("serve", "--config", str(good), "--check-config")
    assert r.returncode == 0, r.stderr
    assert "front_door" in r.stdout and "disabled" in r.stdout
    assert "pw-in-env" not in r.stdout + r.stderr and "***@192.168.1.20" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = run_cli("serve", "--config", str(bad), "--check-config")
    assert r.returncode == 3
    assert f"{bad}:4: cameras.front.detect_fps" in r.stderr
    assert "Traceback" not in r.stderr and "hunter2" not in r.stderr
    r = run_cli("serve", "--config", str(tmp_path / "missing.yaml"), "--check-config")
    assert r.returncode == 3 and "cannot read the file" in r.stderr
    # a non-loopback bind without a token is refused before anything starts
    r = run_cli("serve", "x.mp4", "--host", "0.0.0.0", "--check-config")
    assert r.returncode == 3 and "needs an access token" in r.stderr


def test_load_config_reads_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("cameras:\n  a: clip.mp4\n")
    assert load_config(f).cameras[0].url == "clip.mp4"


def test_per_camera_rate_keeps_the_average():
    """15 fps camera, 5/s asked: a minimum-gap rule gives ~4.3/s; the schedule gives 5/s."""
    import numpy as np

    from livefaces.schedule import PerCameraRate
    from livefaces.types import Frame

    pol = PerCameraRate({"a": 5.0, "b": 2.0})
    img = np.zeros((2, 2, 3), np.uint8)
    counts = {"a": 0, "b": 0}
    for i in range(15 * 20):  # 20 s of frames at 15 fps
        now = i / 15
        for cam in counts:
            f = Frame(img, cam, i, now, now)
            if pol.due(f, True, now):
                pol.detected(f, now)
                counts[cam] += 1
    assert abs(counts["a"] - 100) <= 1 and abs(counts["b"] - 40) <= 1
