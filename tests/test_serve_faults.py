"""Faults found by probing ``livefaces serve``, each reproduced against the real thing: a real
aiohttp server on a socket, a real mosquitto broker, the CLI in a subprocess.

open redirect after ``?token=``; port in use; MQTT unreachable/refused silently "ok"; tokens,
forged lines and NUL bytes in the debug log; HEAD streaming an endless MJPEG body; a stale
camera error; ``connected`` without frames counted as streaming; SIGINT ignored when started
in the background; unrounded floats and NaN in the JSON; a detector falling behind unnoticed.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli
from live_helpers import start_serve_cli
from test_serve_web import _face_result, _get

from livefaces.pipeline import SourceStats
from livefaces.serve.app import NO_FRAME_GRACE_S, CameraServer, camera_health, rate_watch
from livefaces.serve.config import CameraConfig, MqttConfig, WebConfig, config_from_sources
from livefaces.serve.hub import Hub
from livefaces.serve.web import WebServer
from livefaces.types import Faces, PipelineStats

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-faults-8c1d2e"
MQTT_PW = "mqtt-pw-9f8e7d"


# --------------------------------------------------------------------------- helpers


class FakeDetector:
    """Finds nothing, optionally slowly (a stand-in for an overloaded shared detector)."""

    min_face_size = 40.0

    def __init__(self, seconds_per_batch: float = 0.0):
        self.seconds = seconds_per_batch

    def detect_batch(self, images: list[np.ndarray]) -> list[Faces]:
        if self.seconds:
            time.sleep(self.seconds)
        return [Faces.empty() for _ in images]


def make_server(sources: list[str], *, detect_fps: float = 5.0, mqtt: MqttConfig | None = None,
                detector: Any = None, **kw: Any) -> CameraServer:
    cfg = config_from_sources(sources, detect_fps=detect_fps, min_face_size=40)
    cfg = dataclasses.replace(cfg, web=WebConfig(port=0), mqtt=mqtt)
    return CameraServer(cfg, detector=detector or FakeDetector(), **kw)


def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def get_json(url: str) -> Any:
    st, _, body = _get(url)
    # strict JSON: NaN/Infinity are not JSON
    return st, json.loads(body, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


@pytest.fixture
def hub() -> Hub:
    h = Hub([CameraConfig("front", "rtsp://admin:pw@10.0.0.5/s1")])
    h.put_result("front", _face_result())
    return h


# --------------------------------------------------------------------------- 1. open redirect


def test_token_redirect_never_leaves_this_server(hub):
    s = WebServer(hub, WebConfig(port=0, token=TOKEN)).start()
    base = f"http://127.0.0.1:{s.port}/"
    try:
        for raw, expected in [("//evil.example/?token=x", "/evil.example/"),
                              ("////evil.example/?token=x", "/evil.example/"),
                              ("/\\evil.example/?token=x", "/evil.example/"),
                              ("/api/cameras?a=1&token=x", "/api/cameras?a=1"),
                              (f"/?token={TOKEN}", "/")]:
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
            conn.request("GET", raw, headers={"Cookie": f"livefaces_token={TOKEN}"})
            r = conn.getresponse()
            r.read()
            conn.close()
            assert r.status == 302, raw
            loc = r.getheader("Location")
            assert loc == expected, (raw, loc)
            # what a browser does with it: stays on this host
            assert urllib.parse.urljoin(base + "x/y", loc).startswith(base), (raw, loc)
    finally:
        s.stop()


# --------------------------------------------------------------------------- 2. port in use


def test_port_in_use_is_one_line_and_exit_3():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = run_cli("serve", "synthetic:160x120@5", "--port", str(port), "--duration", "5", timeout=120)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"livefaces: error: cannot listen on 127.0.0.1:{port}: address already in use")


# --------------------------------------------------------------------------- 3. MQTT trouble


def _health(server: CameraServer) -> dict:
    assert server.web is not None
    st, body = get_json(server.web.url + "health")
    assert st == 200  # documented: degraded is still 200 (the process serves)
    return body


def test_mqtt_refused_warns_once_degrades_health_and_recovers(tmp_path, caplog):
    from _mosquitto import Broker

    caplog.set_level(logging.WARNING)
    broker = Broker(tmp_path)  # its port, not listening yet: connection refused
    server = make_server(["cam=synthetic:160x120@10"],
                         mqtt=MqttConfig(host="127.0.0.1", port=broker.port, client_id="lf-faults"))
    server.start()
    try:
        expected = f"mqtt: cannot connect to 127.0.0.1:{broker.port}: connection refused"
        body = wait_for(lambda: (b := _health(server)) and expected in b["problems"] and b, 20,
                        "a degraded /health")
        assert body["status"] == "degraded" and body["mqtt_connected"] is False
        time.sleep(3.5)  # paho retries (1 s, 2 s): still one warning for the outage
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and "MQTT" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "connection refused" in warnings[0] and f"127.0.0.1:{broker.port}" in warnings[0]

        broker.start()
        body = wait_for(lambda: (b := _health(server)) and b["status"] == "ok" and b, 40,
                        "/health back to ok after the broker came up")
        assert body["problems"] == [] and body["mqtt_connected"] is True
        assert any("again" in r.getMessage() for r in caplog.records if "MQTT" in r.getMessage())
    finally:
        server.stop()
        broker.stop()


def test_mqtt_bad_credentials_degrade_health_without_the_password(tmp_path, caplog):
    from _mosquitto import Broker

    caplog.set_level(logging.DEBUG)
    broker = Broker(tmp_path)
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "livefaces", "right-pw"], check=True,
                   capture_output=True)
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true",
                                                           f"allow_anonymous false\npassword_file {pwfile}"))
    broker.start()
    server = make_server(["cam=synthetic:160x120@10"],
                         mqtt=MqttConfig(host="127.0.0.1", port=broker.port, username="livefaces",
                                         password=MQTT_PW, client_id="lf-faults-auth"))
    server.start()
    try:
        body = wait_for(lambda: (b := _health(server)) and b["status"] == "degraded"
                        and any(p.startswith("mqtt:") for p in b["problems"]) and b, 20, "degraded")
        problem = next(p for p in body["problems"] if p.startswith("mqtt:"))
        assert "refused" in problem and "not authori" in problem, problem
        assert MQTT_PW not in json.dumps(body)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "MQTT" in r.getMessage()]
        assert len(warnings) == 1 and "not authori" in warnings[0].getMessage()
    finally:
        server.stop()
        broker.stop()
    assert MQTT_PW not in "\n".join(r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- 4. logs


def _raw_request(port: int, line: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return data


def test_debug_log_never_has_tokens_forged_lines_or_nul():
    proc, lines, ready, url, _ = start_serve_cli("-vv", "serve", "cam=synthetic:160x120@5", "--port", "0",
                                        "--token", TOKEN, "--detect-fps", "1")
    try:
        assert ready.wait(120), "".join(lines)
        port = urllib.parse.urlsplit(url[0]).port
        assert port
        for req in (f"GET /api/cameras?token={TOKEN} HTTP/1.1",
                    f"GET /?token={TOKEN} HTTP/1.1",
                    f"GET /nope%0aFORGED%20line?token={TOKEN} HTTP/1.1",
                    "GET /nul%00byte%0d%0aFORGED2 HTTP/1.1",
                    f"GET /bad path?token={TOKEN} HTTP/1.1 junk",  # a malformed request line
                    f"GET /\x00raw?token={TOKEN} HTTP/1.1"):
            _raw_request(port, req.encode())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/cameras", headers={"Authorization": f"Bearer {TOKEN}"})
        assert conn.getresponse().status == 200
        conn.close()
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    err = "".join(lines)
    assert rc == 0, err
    assert "/api/cameras" in err  # requests are logged at -vv ...
    assert TOKEN not in err  # ... never with the token
    assert "\x00" not in err and "\\x00" in err  # NUL escaped
    for ln in err.splitlines():
        assert ln.startswith(("livefaces", " ", "\t", "Traceback")) or not ln.strip(), ln
        assert not ln.startswith("FORGED"), ln
    assert "Traceback" not in err


# --------------------------------------------------------------------------- 5. HEAD


def test_head_on_mjpeg_stream_is_headers_only(hub):
    s = WebServer(hub, WebConfig(port=0)).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        conn.request("HEAD", "/api/cameras/front/stream.mjpeg")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        assert r.read() == b""
        # the same keep-alive connection still speaks HTTP: no body bytes were streamed
        conn.request("GET", "/health")
        r2 = conn.getresponse()
        assert r2.status == 200 and json.loads(r2.read())["cameras"] == 1
        conn.close()
        time.sleep(0.3)
        assert s.streams_open == 0
    finally:
        s.stop()


# --------------------------------------------------------------------------- 6. camera state


def _stats(status: str | None, frames: int, error: str | None = None) -> SourceStats:
    return SourceStats(name="cam", status=status, live=True, frames_captured=frames, frames_processed=0,
                       frames_detected=0, frames_tracked=0, dropped=0, reconnects=1, capture_fps=0.0,
                       detect_fps=0.0, output_fps=0.0, latency_ms_p50=None, latency_ms_p95=None,
                       last_frame_age=None, faces=0, error=error)


def test_camera_health_rules():
    # reconnected and streaming again: the old error is gone
    assert camera_health(_stats("connected", 120, "stalled: no frame for 10 s"),
                         ("connected", 100, 50.0), 51.0) == ("streaming", None)
    # connected, zero frames since: starting for a moment, then an error with a reason
    assert camera_health(_stats("connected", 0), ("connected", 0, 50.0), 51.0)[0] == "starting"
    h, err = camera_health(_stats("connected", 0), ("connected", 0, 50.0), 50.0 + NO_FRAME_GRACE_S + 1)
    assert h == "error" and "no video frame" in err
    # whatever status capture reports for "not video", it is an error with its reason
    why = "http://h/: not a video stream (text/html)"
    for status in ("failed", "not_video", "reconnecting", "stalled"):
        assert camera_health(_stats(status, 0, why), (status, 0, 50.0), 51.0) == ("error", why)
    assert camera_health(_stats("connecting", 0), (None, None, None), 1.0) == ("starting", None)


def test_camera_error_clears_after_reconnect_and_html_page_is_an_error(tmp_path):
    """A real RTSP camera that goes away and comes back: ``error`` is set while it is away and
    cleared once frames flow again. A real HTTP server answering an HTML login page: an error
    with a reason, never counted as streaming."""
    from aiohttp import web as aioweb
    from live_helpers import RtspServer, free_port, write_face_frames

    from livefaces.capture import CaptureOptions

    frames = write_face_frames(tmp_path / "frames", [np.full((64, 64, 3), 128, np.uint8)], n=20,
                               size=(320, 240))
    rtsp = RtspServer(frames).start()

    # an HTML "login page" on a real HTTP server
    html_port = free_port()
    app = aioweb.Application()
    async def login_page(request: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(text="<html><body><form>login</form></body></html>",
                               content_type="text/html")

    app.router.add_get("/{tail:.*}", login_page)
    loop_ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve_html() -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        runner = aioweb.AppRunner(app)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(aioweb.TCPSite(runner, "127.0.0.1", html_port).start())
        loop_ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    threading.Thread(target=serve_html, daemon=True).start()
    assert loop_ready.wait(10)
    server = make_server([f"door={rtsp.url}", f"login=http://127.0.0.1:{html_port}/video"],
                         capture=CaptureOptions(retry_at_start=True, backoff_max=1.0, open_timeout=3.0,
                                                stall_timeout=3.0))
    server.start()
    assert server.web is not None
    cams_url = server.web.url + "api/cameras"

    def cams() -> dict[str, dict]:
        return {c["name"]: c for c in get_json(cams_url)[1]["cameras"]}

    try:
        wait_for(lambda: cams()["door"]["health"] == "streaming", 60, "door streaming")
        login = wait_for(lambda: (c := cams()["login"]) and c["health"] == "error" and c, 60,
                         "the HTML page reported as an error")
        assert login["error"] and login["streaming"] is False
        h = _health(server)
        assert h["status"] == "degraded" and h["cameras_streaming"] == 1
        assert any(p.startswith("camera login: ") for p in h["problems"])

        rtsp.kill()
        door = wait_for(lambda: (c := cams()["door"]) and c["health"] == "error" and c["error"] and c,
                        60, "door error while the RTSP server is down")
        assert door["streaming"] is False
        rtsp.start()
        door = wait_for(lambda: (c := cams()["door"]) and c["health"] == "streaming" and c, 90,
                        "door streaming again")
        assert door["error"] is None and door["state"] == "connected"
    finally:
        server.stop()
        rtsp.kill()
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)


# --------------------------------------------------------------------------- 7. signals


def test_sigint_stops_serve_even_when_started_with_sigint_ignored():
    proc, lines, ready, _, _ = start_serve_cli("serve", "cam=synthetic:160x120@5", "--port", "0",
                                      "--detect-fps", "1", ignore_sigint=True)
    try:
        assert ready.wait(120), "".join(lines)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert rc == 130, "".join(lines)
    assert "Traceback" not in "".join(lines)


# --------------------------------------------------------------------------- 8. JSON numbers


def test_api_json_is_rounded_and_never_nan(hub):
    st = dataclasses.replace(_stats("connected", 10), name="front", detect_fps=154.9094365000201,
                             capture_fps=float("inf"), latency_ms_p95=float("nan"),
                             latency_ms_p50=12.3456789)
    hub.put_stats(PipelineStats((st,), (), 0.01, 1.0, "x", True, 1.0))
    hub.put_event({"schema": 1, "type": "face.appeared", "source": "front", "time": "t", "track_id": 1,
                   "box": [10.123456, 20.987654, 110.55555, 130.0], "confidence": 0.98765432,
                   "landmarks": {"left_eye": [33.33333, 44.44444]}, "age_s": 1.234567891})
    s = WebServer(hub, WebConfig(port=0)).start()
    try:
        st, cam = get_json(s.url + "api/cameras/front")
        assert st == 200
        assert cam["detect_fps"] == 154.91 and cam["latency_ms_p50"] == 12.35
        assert cam["capture_fps"] is None and cam["latency_ms_p95"] is None
        _, data = get_json(s.url + "api/events?since=0")
        ev = data["events"][0]
        assert ev["box"] == [10.1, 21.0, 110.6, 130.0] and ev["confidence"] == 0.9877
        assert ev["landmarks"]["left_eye"] == [33.3, 44.4] and ev["age_s"] == 1.235
        _, cams = get_json(s.url + "api/cameras")
        assert cams["cameras"][0]["detect_fps"] == 154.91
        _, health = get_json(s.url + "health")
        assert health["status"] == "ok"
    finally:
        s.stop()


# --------------------------------------------------------------------------- 9. detector behind


def test_rate_watch_hysteresis_one_warning_per_episode(caplog):
    caplog.set_level(logging.INFO)
    now = [0.0]
    w = rate_watch(window=5.0, clock=lambda: now[0])

    def feed(rate: float, seconds: int) -> None:
        for _ in range(seconds):
            now[0] += 1.0
            w.update("front", 5.0, rate)

    feed(5.0, 10)
    assert "front" not in w.behind
    feed(1.1, 10)
    assert w.behind["front"][0] == pytest.approx(1.1)
    feed(4.0, 10)  # 80%: above "behind", below "caught up": still one episode
    assert "front" in w.behind
    feed(5.0, 10)
    assert "front" not in w.behind
    feed(1.0, 10)
    behind = [r for r in caplog.records
              if r.levelno == logging.WARNING and "falling behind" in r.getMessage()]
    assert len(behind) == 2 and "front" in behind[0].getMessage()
    w.update("front", 5.0, 0.0, active=False)  # camera down: not the detector's fault
    assert "front" not in w.behind


def test_detector_behind_warns_degrades_health_and_sets_metric(caplog):
    caplog.set_level(logging.WARNING)
    # configured 8 detections/s; the shared detector manages ~2/s
    server = make_server(["slow=synthetic:160x120@20"], detect_fps=8,
                         detector=FakeDetector(seconds_per_batch=0.5))
    server.start()
    try:
        body = wait_for(lambda: (b := _health(server)) and any("detector behind" in p for p in b["problems"])
                        and b, 40, "a detector-behind problem")
        assert body["status"] == "degraded"
        problem = next(p for p in body["problems"] if "detector behind" in p)
        assert problem.startswith("camera slow: detector behind") and "of 8 configured" in problem
        assert server.web is not None
        text = _get(server.web.url + "metrics")[2].decode()
        assert 'livefaces_detect_behind{camera="slow"} 1' in text
        assert 'livefaces_detect_fps_target{camera="slow"} 8' in text
        warnings = [r.getMessage() for r in caplog.records if "falling behind" in r.getMessage()]
        assert len(warnings) == 1 and "slow" in warnings[0]
    finally:
        server.stop()
