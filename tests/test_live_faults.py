"""Faults of the live commands, reproduced with real processes, pipes and servers: a closed
pipe, an absent webcam, a web page instead of a video, photo folders, a slow detector, the
end-of-run summary, the preview window's size."""

from __future__ import annotations

import http.server
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from live_helpers import ROOT, popen_cli, read_events

from livefaces.avio import probe_frames
from livefaces.capture import CaptureOptions, CaptureWorker
from livefaces.cli._live import demo_clip
from livefaces.errors import StalledError
from livefaces.imageio import write_image
from livefaces.pipeline import Pipeline
from livefaces.publish.memory import MemoryPublisher
from livefaces.ringbuffer import RingBuffer
from livefaces.schedule import FixedRate, GateOptions
from livefaces.sources.synthetic import SyntheticSource
from livefaces.track import Tracker
from livefaces.types import Faces

DEMO = Path(demo_clip())


def _quiet(err: str) -> None:
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipe" not in err, err


# -- 1. a closed pipe ends the run at once, quietly -------------------------------------------
def test_detect_into_a_closed_pipe_stops_quietly(tmp_path, grace_hopper):
    small = grace_hopper[::4, ::4].copy()
    for i in range(40):
        write_image(tmp_path / f"{i:02d}.png", small)
    p = popen_cli("detect", str(tmp_path), "--json")
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    assert first.startswith("{"), p.stderr.read()
    p.stdout.close()  # like 'head -1' exiting
    rc = p.wait(timeout=60)
    err = p.stderr.read()
    _quiet(err)
    assert rc == 141, (rc, err)
    assert err.strip() == ""


def test_watch_into_a_closed_pipe_stops_at_once_and_finalises_the_recording(tmp_path):
    rec = tmp_path / "rec.mp4"
    p = popen_cli("watch", "synthetic:320x240@25", "--events", "-", "--record", str(rec))
    assert p.stdout is not None and p.stderr is not None
    try:
        first = p.stdout.readline()
        assert '"source.status"' in first, p.stderr.read()
        time.sleep(1.0)  # let the recording get some frames
        p.stdout.close()
        rc = p.wait(timeout=10)  # it used to run on (until its 20 s timeout here)
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read()
    _quiet(err)
    assert rc == 141, (rc, err)
    assert err.strip() == "", err  # no summary, no error: like 'yes | head'
    assert probe_frames(rec) >= 5  # the recording was finalised and plays
    assert not list(tmp_path.glob("*.part*"))


def test_exit_code_141_is_documented():
    r = run_cli("--help", timeout=60)
    assert "141" in r.stdout and "head" in r.stdout


# -- 2. an absent webcam: one line, exit 3 ------------------------------------------------------
@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera at /dev/video0")
@pytest.mark.parametrize("spec", ["0", "/dev/video3"])
def test_absent_webcam_is_one_line_and_exit_3(tmp_path, spec):
    r = run_cli("watch", spec, "--events", str(tmp_path / "ev.jsonl"), timeout=60)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livefaces: error: webcam:"), r.stderr


@pytest.mark.skipif(Path("/dev/video3").exists() or shutil.which("xvfb-run") is None,
                    reason="needs xvfb-run and no camera at /dev/video3")
def test_preview_of_absent_webcam_has_no_opencv_warnings():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(["xvfb-run", "-a", sys.executable, "-m", "livefaces", "preview", "3"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("livefaces: error: webcam:3: cannot open the camera"), r.stderr
    # OpenCV's own probing noise (V4L2, FFmpeg, Orbbec backends) is gone
    assert not [ln for ln in lines if "WARN" in ln or "ERROR:" in ln or "VIDEOIO" in ln], r.stderr


# -- 3. a web page instead of a video ----------------------------------------------------------
LOGIN = b"<!DOCTYPE html><html><head><title>IP Camera</title></head><body><form method=post>" \
        b"<input name=user><input type=password name=pass><button>Log in</button></form>" \
        b"</body></html>"


class _LoginPage(http.server.BaseHTTPRequestHandler):
    """A camera's web interface: every path answers with its HTML login page."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(LOGIN)))
        self.end_headers()
        self.wfile.write(LOGIN)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def login_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LoginPage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# "/snapshot.jpg" and "/video.cgi": FFmpeg guesses a demuxer from the extension, "opens" the
# page, then no frame decodes; that used to reconnect forever (47 times in 90 s)
@pytest.mark.parametrize("path", ["/login", "/snapshot.jpg", "/cgi-bin/video.cgi"])
@pytest.mark.parametrize("retry", [False, True])
def test_html_page_is_not_a_video_exit_3(tmp_path, login_server, path, retry):
    url = login_server.replace("http://", "http://admin:secret@") + path
    ev = tmp_path / "ev.jsonl"
    r = run_cli("watch", url, "--events", str(ev), *(["--retry"] if retry else []), timeout=60)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("livefaces: error: http://admin:***@127.0.0.1:")
    assert f"{path}: not a video stream (the server sent text/html)" in lines[0]
    assert "secret" not in r.stderr + ev.read_text()
    statuses = [e["after"] for e in read_events(ev) if e["type"] == "source.status"]
    assert statuses == ["connecting", "failed"], statuses


def test_capture_reports_a_web_page_as_failed_with_the_reason(login_server, detector):
    """What serve sees: retry_at_start (serve's setting) and still a final 'failed' with the
    reason in the detail, never 'connected'."""
    mem = MemoryPublisher()
    p = Pipeline([login_server + "/snapshot.jpg"], detector, sinks=[mem],
                 capture=CaptureOptions(retry_at_start=True, open_timeout=5))
    p.start()
    try:
        assert p.wait(30)
    finally:
        p.stop()
    st = p.stats().source()
    assert st.status == "failed" and st.frames_captured == 0
    assert st.error and "not a video stream (the server sent text/html)" in st.error
    after = [e["after"] for e in mem.of_type("source.status")]
    assert "connected" not in after and after[-1] == "failed"
    assert "not a video stream" in mem.of_type("source.status")[-1]["detail"]


class _OpensButSilent:
    """A live source that connects and never yields a frame (times out like a stalled one)."""

    live = True
    name = "silent:"

    def open(self, open_timeout: float, stall_timeout: float) -> None:
        self._stall = stall_timeout

    def read(self):  # noqa: ANN201
        time.sleep(self._stall)
        raise StalledError(f"{self.name}: no frame for {self._stall:g} s")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("retry", [False, True])
def test_a_source_without_frames_is_never_connected(retry):
    statuses: list[tuple[str, str | None]] = []
    stop = threading.Event()
    ring: RingBuffer = RingBuffer(4, "drop_oldest")
    w = CaptureWorker(_OpensButSilent(), ring, stop,  # type: ignore[arg-type]
                      CaptureOptions(stall_timeout=0.3, retry_at_start=retry, backoff_initial=0.05,
                                     backoff_max=0.1),
                      on_status=lambda n, b, a, d: statuses.append((a, d)))
    w.start()
    if retry:  # serve: keeps trying, but reports the trouble
        time.sleep(1.5)
        assert w.status in ("stalled", "reconnecting"), statuses
        stop.set()
    assert w.join(5)
    after = [a for a, _ in statuses]
    assert "connected" not in after, statuses
    if not retry:  # watch: gives up (exit 3) with the reason
        assert after == ["connecting", "failed"], statuses
        assert "no frame for 0.3 s" in (statuses[-1][1] or "")


# -- 4. photos in a folder are independent stills ----------------------------------------------
def test_photo_folder_gets_fresh_tracks_per_photo(tmp_path, astronaut, grace_hopper):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, img in enumerate([astronaut, grace_hopper, astronaut]):
        write_image(folder / f"{i}.png", img)
    ev = tmp_path / "ev.jsonl"
    r = run_cli("watch", str(folder), "--events", str(ev), timeout=120)
    assert r.returncode == 0, r.stderr
    events = read_events(ev)
    appeared = [e for e in events if e["type"] == "face.appeared"]
    lost = [e for e in events if e["type"] == "face.lost"]
    by_photo: dict[str, set[int]] = {}
    for e in appeared:
        by_photo.setdefault(e["source"], set()).add(e["track_id"])
    photo_of = {e["track_id"]: e["frame_index"] for e in appeared}
    assert sorted({e["frame_index"] for e in appeared}) == [0, 1, 2], appeared  # a face each
    assert len(photo_of) == len(appeared)  # one appeared per track
    for e in lost:  # each track lives and dies on its own photo
        assert photo_of[e["track_id"]] == e["frame_index"], e
        assert e["reason"] in ("next_image", "source_ended")
    assert sorted(e["track_id"] for e in lost) == sorted(photo_of)
    assert not [e for e in events if e["type"] == "face.updated"]


# -- 5. a slow detector does not lose still faces ----------------------------------------------
def _face(x: float = 200.0, score: float = 0.99) -> Faces:
    b = np.array([[x, 100, x + 80, 190]], np.float32)
    lm = np.repeat(((b[:, None, :2] + b[:, None, 2:]) / 2), 5, axis=1).astype(np.float32)
    return Faces(b, np.array([score], np.float32), lm)


def test_tracker_keeps_a_still_face_at_half_a_hertz():
    tr = Tracker()
    ids: set[int] = set()
    lost: list[int] = []
    t = 0.0
    for k in range(10):  # a detection every 2 s, the frames between at 25 fps
        missed = k == 5  # one detection misses the face (it looked away)
        u = tr.update(Faces.empty() if missed else _face(), t)
        ids |= set(u.ids.tolist())
        lost += [x.id for x in u.lost]
        for _ in range(49):
            t += 0.04
            p = tr.predict(t)
            ids |= set(p.ids.tolist())
            lost += [x.id for x in p.lost]
        t += 0.04
    assert ids == {1} and not lost  # used to be a new id after every detection
    assert tr.detect_interval is not None and 1.9 < tr.detect_interval < 2.1
    for _ in range(5):  # the face leaves: lost after a few missed detections
        t += 2.0
        lost += [x.id for x in tr.update(Faces.empty(), t).lost]
    assert lost == [1]


class _SlowDetector:
    """Finds the same face on every image and takes ``seconds`` to do it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def detect_batch(self, images):  # noqa: ANN001, ANN201
        time.sleep(self.seconds)
        return [_face() for _ in images]


def test_pipeline_keeps_ids_and_warns_once_when_detection_falls_behind(caplog):
    caplog.set_level(logging.WARNING, logger="livefaces")
    mem = MemoryPublisher()
    p = Pipeline([SyntheticSource(320, 240, 25)], _SlowDetector(1.3), policy=FixedRate(fps=5),
                 sinks=[mem], duration=9.0, gate=GateOptions(motion=False, refine=False))
    st = p.run()
    s = st.source()
    assert s.frames_detected >= 5 and s.frames_tracked > s.frames_detected
    assert len(mem.of_type("face.appeared")) == 1, mem.of_type("face.appeared")
    assert [e["reason"] for e in mem.of_type("face.lost")] == ["stopped"]
    assert s.detect_interval_s is not None and s.detect_interval_s > 1.2
    assert s.detect_expected_s is not None and s.detect_expected_s < 0.5
    warnings = [r for r in caplog.records if "cannot keep up" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


# -- 6. the summary says what it measures --------------------------------------------------------
def test_file_summary_is_throughput_and_live_summary_is_latency(tmp_path):
    r = run_cli("watch", str(DEMO), "--max-frames", "20", "--events", str(tmp_path / "a.jsonl"),
                timeout=120)
    assert r.returncode == 0, r.stderr
    assert "20 frames (" in r.stderr and " fps; not paced" in r.stderr, r.stderr
    assert "latency" not in r.stderr
    r = run_cli("watch", "synthetic:320x240@25", "--max-frames", "20", "--events",
                str(tmp_path / "b.jsonl"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "latency p50" in r.stderr and "not paced" not in r.stderr, r.stderr


# -- 7. the preview window opens at the frame's size -------------------------------------------
def test_fit_size_keeps_the_aspect_ratio():
    from livefaces.window import fit_size

    assert fit_size(640, 360) == (640, 360)
    assert fit_size(1920, 1080) == (1280, 720)
    assert fit_size(1000, 2000) == (400, 800)
    assert fit_size(100, 50) == (100, 50)  # never scaled up


_WINDOW_SCRIPT = """
import subprocess, sys
import numpy as np
from livefaces.window import Window
w, h = int(sys.argv[1]), int(sys.argv[2])
win = Window("livefaces-size-test")
for _ in range(20):
    win.show(np.zeros((h, w, 3), np.uint8))
out = subprocess.run(["xwininfo", "-name", "livefaces-size-test"], capture_output=True, text=True)
print(out.stdout)
win.close()
"""


@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("xwininfo") is None,
                    reason="xvfb or xwininfo missing: run scripts/install_system_deps.sh")
@pytest.mark.parametrize("frame,window", [((640, 360), (640, 360)), ((1920, 1080), (1280, 720))])
def test_preview_window_has_the_frame_size_under_x(frame, window):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-c",
                        _WINDOW_SCRIPT, str(frame[0]), str(frame[1])],
                       capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    geo = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in r.stdout.splitlines())}
    assert (int(geo["Width"]), int(geo["Height"])) == window, r.stdout  # was 400×300


class _OutOfDescriptors:
    """A live source whose system runs out of file descriptors (EMFILE) while it opens, twice,
    then works: serve saw its capture thread crash with a traceback, the camera dead for good."""

    live = True
    name = "busy"

    def __init__(self) -> None:
        self.opens = self.frames = 0

    def open(self, open_timeout: float, stall_timeout: float) -> None:
        import errno

        self.opens += 1
        if self.opens <= 2:
            raise OSError(errno.EMFILE, "Too many open files", "/some/sample.jpg")

    def read(self):  # noqa: ANN201
        from livefaces.types import Frame

        time.sleep(0.01)
        self.frames += 1
        return Frame(np.zeros((8, 8, 3), np.uint8), self.name, self.frames, None, time.monotonic())

    def close(self) -> None:
        pass


def test_an_os_error_while_opening_is_retried_not_a_crash(caplog):
    import logging

    statuses: list[tuple[str, str | None]] = []
    stop = threading.Event()
    ring: RingBuffer = RingBuffer(4, "drop_oldest")
    src = _OutOfDescriptors()
    w = CaptureWorker(src, ring, stop,  # type: ignore[arg-type]
                      CaptureOptions(retry_at_start=True, backoff_initial=0.05, backoff_max=0.1),
                      on_status=lambda n, b, a, d: statuses.append((a, d)))
    with caplog.at_level(logging.WARNING):
        w.start()
        deadline = time.monotonic() + 10
        while w.status != "connected" and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        assert w.join(5)
    assert src.opens == 3 and "connected" in [a for a, _ in statuses], statuses
    assert any(d == "busy: Too many open files (/some/sample.jpg)" for _, d in statuses), statuses
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]
