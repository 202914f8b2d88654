"""watch/preview on files, folders and bad inputs; Ctrl-C; the library API."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import run_cli
from live_helpers import popen_cli, read_events, wait_event

import livefaces
from livefaces.avio import probe_frames
from livefaces.cli._live import demo_clip
from livefaces.pipeline import Pipeline
from livefaces.publish.memory import MemoryPublisher
from livefaces.schedule import EveryN
from livefaces.sources.synthetic import SyntheticSource

DEMO = Path(demo_clip())


def test_file_to_eof_with_record_and_snapshots(tmp_path):
    ev, rec, snaps = tmp_path / "ev.jsonl", tmp_path / "rec.mp4", tmp_path / "snaps"
    r = run_cli("watch", str(DEMO), "--events", str(ev), "--record", str(rec), "--snapshots",
                str(snaps), "--detect-every", "3", timeout=300)
    assert r.returncode == 0, r.stderr
    events = read_events(ev)
    assert events[-1]["type"] in ("face.lost", "source.status")
    assert "ended" in [e["after"] for e in events if e["type"] == "source.status"]
    appeared = [e for e in events if e["type"] == "face.appeared"]
    assert len(appeared) >= 2
    lost_ids = {e["track_id"] for e in events if e["type"] == "face.lost"}
    assert {e["track_id"] for e in appeared} <= lost_ids  # every track ends with face.lost
    upd = [e for e in events if e["type"] == "face.updated"]
    assert upd and all(e["before"] is not None for e in upd)
    assert probe_frames(rec) == probe_frames(DEMO) == 250  # every frame of a file, no drops
    # one per track at most: tracks whose face never reaches 40 px write none
    assert 1 <= len(list(snaps.glob("*.jpg"))) <= len(appeared)
    assert "250 frames (84 detected, 166 refined, 0 tracked), 0 dropped" in r.stderr


def test_image_folder(tmp_path, grace_hopper, astronaut):
    from livefaces.imageio import write_image

    (tmp_path / "in").mkdir()
    for i, img in enumerate([grace_hopper, astronaut, grace_hopper]):
        write_image(tmp_path / "in" / f"{i}.png", img)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    r = run_cli("watch", str(tmp_path / "in"), "--events", str(tmp_path / "ev.jsonl"), timeout=120)
    assert r.returncode == 0, r.stderr
    faces = [e for e in read_events(tmp_path / "ev.jsonl") if e["type"] == "face.appeared"]
    assert [e["frame_index"] for e in faces][:1] == [0] and len(faces) >= 2


@pytest.mark.parametrize("case,needle", [
    ("missing", "no such file"),
    ("text", "not a video"),
    ("truncated", "not a video"),
    ("scheme", "unsupported URL scheme"),
    ("empty_folder", "no images"),
])
def test_bad_inputs_one_line_and_exit_3(tmp_path, case, needle):
    if case == "missing":
        src = str(tmp_path / "nope.mp4")
    elif case == "text":
        src = str(tmp_path / "notes.mp4")
        Path(src).write_text("hello, this is not a video\n" * 50)
    elif case == "truncated":
        src = str(tmp_path / "cut.mp4")
        data = DEMO.read_bytes()
        Path(src).write_bytes(data[: len(data) // 2])
    elif case == "scheme":
        src = "ftp://user:secret@example.invalid/clip.mp4"
    else:
        (tmp_path / "empty").mkdir()
        src = str(tmp_path / "empty")
    r = run_cli("watch", src, "-q", "--events", str(tmp_path / "ev.jsonl"), timeout=120)
    assert r.returncode == 3, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livefaces: error:"), r.stderr
    assert needle in lines[0] and "secret" not in lines[0]


@pytest.mark.parametrize("flag,target,needle", [
    ("--record", "{f}/x.mp4", "{f}/x.mp4: {f} is a file, not a folder"),
    ("--stats", "{f}/s.json", "{f}/s.json: {f} is a file, not a folder"),
    ("--snapshots", "{f}", "{f}: cannot be the folder for the snapshots ({f} is a file, not a folder)"),
    ("--record", "{t}/nodir/x.mp4", "{t}/nodir/x.mp4: folder {t}/nodir does not exist"),
])
def test_outputs_in_a_bad_place_one_line_and_exit_3(tmp_path, flag, target, needle):
    f = tmp_path / "keep.jpg"
    f.write_bytes(b"the user's file")
    r = run_cli("watch", str(DEMO), "-q", flag, target.format(f=f, t=tmp_path), timeout=120)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stderr.splitlines() == [f"livefaces: error: {needle.format(f=f, t=tmp_path)}"]
    assert f.read_bytes() == b"the user's file" and sorted(tmp_path.iterdir()) == [f]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])  # Ctrl-C; systemd/docker stop
def test_stop_signal_finalises_the_recording(tmp_path, sig):
    import signal

    ev, rec = tmp_path / "ev.jsonl", tmp_path / "rec.mp4"
    p = popen_cli("watch", "synthetic:640x360@25", "--events", str(ev), "--record", str(rec))
    try:
        assert wait_event(ev, lambda e: e["type"] == "face.appeared", 60), p.stderr
        time.sleep(1.0)
    finally:
        t = time.monotonic()
        p.send_signal(getattr(signal, sig))
        _out, err = p.communicate(timeout=10)
    assert p.returncode == 130, err
    assert time.monotonic() - t < 5  # 2 s stop budget + interpreter exit
    assert "Traceback" not in err
    assert probe_frames(rec) >= 10  # decodes: the MP4 was finalised
    assert not list(tmp_path.glob("*.part*"))
    assert read_events(ev)[-1]["type"] in ("source.status", "face.lost")


def test_max_frames_and_stream_api(detector):
    results = list(livefaces.stream("synthetic:320x240@50", detector=detector, max_frames=30))
    idx = [r.frame.index for r in results]
    assert 25 <= len(results) <= 30 and idx == sorted(set(idx))  # live: may drop if we lag
    assert results[0].detected
    with_faces = [r for r in results if len(r.faces)]
    assert len(with_faces) >= 25
    for r in with_faces:
        assert len(r.track_ids) == len(r.faces) and r.face_detected.shape == (len(r.faces),)


def test_several_sources_share_one_detector(detector):
    calls = []

    class Counting:
        def detect_batch(self, images):
            calls.append([im.shape for im in images])
            return detector.detect_batch(images)

    mem = MemoryPublisher(keep_results=1000)
    # not paced (realtime=False): both rings always hold frames, so batching across sources
    # does not depend on how the two capture threads happen to interleave
    srcs = [SyntheticSource(320, 240, 25, frames=40, realtime=False),
            SyntheticSource(480, 270, 25, frames=40, realtime=False)]
    p = Pipeline(srcs, Counting(), policy=EveryN(n=1), sinks=[mem])
    st = p.run()
    names = {s.name for s in st.sources}
    assert len(names) == 2 and all(s.frames_processed == 40 for s in st.sources)
    assert any(len(set(c)) == 2 for c in calls)  # one detect_batch call with both sizes
    assert {e["source"] for e in mem.of_type("face.appeared")} == names
    assert all(s.status == "ended" for s in st.sources)


def test_preview_without_display_is_a_clean_error():
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(root)
    r = subprocess.run([sys.executable, "-m", "livefaces", "preview", "synthetic:", "--max-frames",
                        "5"], capture_output=True, text=True, timeout=60, env=env, cwd=root)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and "cannot open a window" in r.stderr




@pytest.mark.skipif(shutil.which("xvfb-run") is None,
                    reason="xvfb missing: run scripts/install_system_deps.sh (scripts/test.sh does)")
def test_preview_window_under_a_real_x_server(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 800x600x24", sys.executable, "-m",
                        "livefaces", "preview", "synthetic:640x360@25", "--max-frames", "40",
                        "--record", str(tmp_path / "p.mp4")],
                       capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "40 frames" in r.stderr and "Traceback" not in r.stderr
    assert probe_frames(tmp_path / "p.mp4") >= 30


def test_second_ctrl_c_forces_exit(tmp_path):
    """A camera that accepts the connection and never answers keeps its capture thread busy,
    so the first Ctrl-C's stop waits out its 2 s budget; the second one exits at once."""
    import signal
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        ev = tmp_path / "ev.jsonl"
        p = popen_cli("watch", f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam", "--events", str(ev))
        assert wait_event(ev, lambda e: e["type"] == "source.status" and e["after"] == "connecting", 60)
        time.sleep(0.5)
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=10)
    finally:
        silent.close()
    assert p.returncode == 130 and "Traceback" not in err, err
    assert "forced exit" in err, err
    assert time.monotonic() - t < 1.5  # did not wait for the first stop to finish


def test_watch_http_stream(tmp_path):
    """An http:// source: the bundled demo clip as MPEG-TS from a real HTTP server on loopback."""
    import functools
    import http.server
    import subprocess
    import threading

    # MPEG-TS over HTTP, as IP cameras and streaming servers send it (ffmpeg: install_system_deps.sh)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(DEMO), "-c", "copy", "-f", "mpegts",
                    str(tmp_path / "clip.ts")], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        ev = tmp_path / "ev.jsonl"
        url = f"http://127.0.0.1:{httpd.server_address[1]}/clip.ts"
        p = popen_cli("watch", url, "--events", str(ev), "--max-frames", "50")
        _out, err = p.communicate(timeout=90)
    finally:
        httpd.shutdown()
    assert p.returncode == 0, err
    events = read_events(ev)
    faces = [e for e in events if e["type"] == "face.appeared"]
    assert len(faces) >= 1 and all(e["source"] == url for e in faces), events
    assert [e["after"] for e in events if e["type"] == "source.status"][:2] == ["connecting", "connected"]
