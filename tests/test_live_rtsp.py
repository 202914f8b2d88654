"""The live pipeline against a real RTSP server (GStreamer's gst-rtsp-server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from live_helpers import (
    SYSTEM_PYTHON,
    RtspServer,
    free_port,
    interrupt,
    popen_cli,
    read_events,
    wait_event,
    write_face_frames,
)


def _has_gst_rtsp() -> bool:
    import subprocess

    if not Path(SYSTEM_PYTHON).exists():
        return False
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0');"
                        "from gi.repository import GstRtspServer"], capture_output=True)
    return r.returncode == 0


pytestmark = pytest.mark.skipif(not _has_gst_rtsp(), reason=(
    "gst-rtsp-server missing: run scripts/install_system_deps.sh (scripts/test.sh does)"))


@pytest.fixture(scope="module")
def frames(tmp_path_factory, astronaut, grace_hopper) -> Path:
    return write_face_frames(tmp_path_factory.mktemp("rtsp") / "frames", [grace_hopper, astronaut])


@pytest.fixture
def server(frames):
    s = RtspServer(frames).start()
    yield s
    s.kill()


def _is_face(e):
    return e["type"] == "face.appeared"


def _status(after):
    return lambda e: e["type"] == "source.status" and e["after"] == after


def test_watch_rtsp_reports_faces_with_sensible_boxes(server, tmp_path):
    ev = tmp_path / "ev.jsonl"
    p = popen_cli("watch", server.url, "--events", str(ev), "--duration", "6", "--min-face", "40")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    events = read_events(ev)
    faces = [e for e in events if e["type"] == "face.appeared"]
    assert len(faces) >= 2, events
    for e in faces:
        x1, y1, x2, y2 = e["box"]
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
        assert 25 <= x2 - x1 <= 200 and e["confidence"] > 0.9
        assert e["source"] == server.url and e["width"] == 640 and e["height"] == 360
        assert set(e["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert [e["after"] for e in events if e["type"] == "source.status"][:2] == \
        ["connecting", "connected"]
    # a face on each half of the frame (hopper left, astronaut right)
    centres = sorted((e["box"][0] + e["box"][2]) / 2 for e in faces)
    assert centres[0] < 320 < centres[-1]
    assert "frames (" in err  # the summary line


def test_outage_reconnects_without_restarting(server, tmp_path):
    ev = tmp_path / "ev.jsonl"
    p = popen_cli("watch", server.url, "--events", str(ev), "--stall-timeout", "2",
                  "--min-face", "40", "--update-interval", "0.5")
    try:
        assert wait_event(ev, _is_face, 30), p.stderr
        n = len(read_events(ev))
        server.kill()
        hit = wait_event(ev, lambda e: e["type"] == "source.status"
                         and e["after"] in ("stalled", "reconnecting"), 10, n)
        assert hit, read_events(ev)
        lost = wait_event(ev, lambda e: e["type"] == "face.lost", 5, n)
        assert lost and lost[1]["reason"] == "source_lost"
        time.sleep(2.0)  # the server stays away a while
        n = len(read_events(ev))
        server.start()
        back = time.monotonic()
        hit = wait_event(ev, _status("connected"), 15, n)
        assert hit, read_events(ev)[n:]
        assert time.monotonic() - back < 5.0 + 1.0  # 1 s slack for this polling loop
        assert wait_event(ev, lambda e: e["type"] in ("face.appeared", "face.updated"), 15, hit[0])
        assert p.poll() is None  # same process all along
    finally:
        rc, _out, err = interrupt(p)
    assert rc == 130, err
    assert "Traceback" not in err


def test_stalled_stream_triggers_watchdog(frames, tmp_path):
    srv = RtspServer(frames, None, "--stall-after", "4").start()
    ev = tmp_path / "ev.jsonl"
    try:
        p = popen_cli("watch", srv.url, "--events", str(ev), "--stall-timeout", "1.5",
                      "--min-face", "40")
        try:
            assert wait_event(ev, _status("connected"), 30)
            hit = wait_event(ev, _status("stalled"), 20)
            assert hit, read_events(ev)
            assert "no frame for 1.5 s" in hit[1]["detail"]
        finally:
            rc, _out, err = interrupt(p)
        assert rc == 130 and "Traceback" not in err
    finally:
        srv.kill()


def test_password_protected_stream(frames, tmp_path):
    srv = RtspServer(frames, None, "--user", "bob", "--password", "s3cret-pw").start()
    try:
        from conftest import run_cli

        url = srv.url.replace("rtsp://", "rtsp://bob:wrong-pw@")
        r = run_cli("watch", url, "--events", str(tmp_path / "e.jsonl"), timeout=60)
        assert r.returncode == 3, r.stderr
        assert "Traceback" not in r.stderr and "wrong-pw" not in r.stderr + r.stdout
        assert "USER:PASSWORD" in r.stderr and len(r.stderr.strip().splitlines()) <= 2
        ev = read_events(tmp_path / "e.jsonl")
        assert ev and not any("wrong-pw" in str(e) for e in ev)
        assert ev[-1]["after"] == "failed"
        good = srv.url.replace("rtsp://", "rtsp://bob:s3cret-pw@")
        r = run_cli("watch", good, "--events", str(tmp_path / "ok.jsonl"), "--max-frames", "10",
                    "--min-face", "40", timeout=60)
        assert r.returncode == 0, r.stderr
        assert "s3cret-pw" not in (tmp_path / "ok.jsonl").read_text() + r.stderr
        assert any(e["type"] == "face.appeared" for e in read_events(tmp_path / "ok.jsonl"))
    finally:
        srv.kill()


def test_unreachable_host(tmp_path):
    from conftest import run_cli

    r = run_cli("watch", f"rtsp://user:pw@127.0.0.1:{free_port()}/live", "-q", timeout=60)
    assert r.returncode == 3
    assert "connection refused" in r.stderr and "Traceback" not in r.stderr
    assert ":pw@" not in r.stderr




def test_watch_rtsp_over_udp(server, tmp_path):
    """--transport udp: RTP over UDP on loopback instead of interleaved TCP."""
    ev = tmp_path / "ev.jsonl"
    p = popen_cli("watch", server.url, "--transport", "udp", "--events", str(ev), "--duration", "5",
                  "--min-face", "40")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    faces = [e for e in read_events(ev) if e["type"] == "face.appeared"]
    assert len(faces) >= 2 and all(e["confidence"] > 0.9 for e in faces), err
