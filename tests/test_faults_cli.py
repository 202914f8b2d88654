"""Issue 20, the command line's faults: numeric flags, signals, standard streams, escaping,
events and the HUD, each against the real CLI (subprocesses) or the real parser."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal

import pytest
from conftest import run_cli

from livefaces.cli import build_parser, main

# --- 1. every numeric option is checked at parse time (exit 2, its range in --help) -------

#: (command and the arguments it needs, {flag: bad values}); the other positional arguments
#: name things that do not exist, so code that let a bad value through fails soon after
LIVE = {"--stall-timeout": ["nan", "0", "-1", "inf"], "--open-timeout": ["-1", "nan", "0"],
        "--detect-every": ["0", "1.5", "abc"], "--detect-fps": ["0", "nan", "-2"],
        "--latency-budget": ["0", "inf"], "--idle-interval": ["0", "nan"],
        "--full-interval": ["-1", "inf"], "--motion-threshold": ["-1", "100", "nan"],
        "--update-interval": ["-1", "nan"], "--duration": ["-1", "0", "nan", "inf"],
        "--max-frames": ["0", "-3", "abc"], "--event-min-score": ["-0.1", "1.5", "nan"]}
DETECTOR = {"--min-face": ["nan", "0", "11", "abc"], "--factor": ["0", "1", "nan"],
            "--threads": ["0", "-1", "2.5"],
            "--thresholds": [("0.6", "0.7", "nan"), ("2", "0.7", "0.7"), ("0.6", "-0.1", "0.7")]}
COMMANDS: dict[tuple[str, ...], dict[str, list[str]]] = {
    ("detect", "/nonexistent/x.jpg"): DETECTOR,
    ("demo", "--out", "/nonexistent/demo.jpg"): DETECTOR,
    ("people", "add", "ada", "/nonexistent/x.jpg", "--people", "/nonexistent/p"): DETECTOR,
    ("watch", "/nonexistent/v.mp4"): {**LIVE, **DETECTOR},
    ("preview", "/nonexistent/v.mp4"): {**LIVE, **DETECTOR},
    ("extract", "/nonexistent/v.mp4", "--out", "/nonexistent/out"): {
        **DETECTOR, "--stride": ["0", "nan"], "--resize": ["0", "5", "nan", "-1"],
        "--batch-size": ["0", "abc"], "--crop-size": ["0", "7", "inf"],
        "--margin": ["-1", "nan", "160"], "--workers": ["0", "-1"],
        "--segment-seconds": ["0", "nan", "inf"]},
    ("serve", "--check-config", "cam=/nonexistent/v.mp4"): {
        "--port": ["-1", "65536", "abc"], "--detect-fps": ["0", "nan", "inf"],
        "--min-face": ["nan", "5"], "--threads": ["0"], "--duration": ["-1", "0", "nan"]},
}
CASES = [(cmd, flag, bad) for cmd, flags in COMMANDS.items() for flag, bads in flags.items()
         for bad in bads]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by name ('people add' too)."""
    out = {}

    def walk(p: argparse.ArgumentParser) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    out[sub.prog.removeprefix("livefaces ")] = sub
                    walk(sub)

    walk(build_parser())
    return out


def test_every_numeric_option_is_validated_and_covered_here():
    from livefaces.cli._common import Number

    covered = {}
    for cmd, flags in COMMANDS.items():
        name = " ".join(cmd[:2]) if cmd[0] == "people" else cmd[0]
        covered[name] = set(flags)
    for name, p in _parsers().items():
        for a in p._actions:
            numeric = a.type in (int, float) or isinstance(a.type, Number)
            if not numeric:
                continue
            assert isinstance(a.type, Number), (name, a.option_strings)  # not a bare int/float
            assert a.type.allowed in a.help, (name, a.option_strings)  # the range in --help
            flag = a.option_strings[0] if a.option_strings[0].startswith("--") else a.option_strings[-1]
            assert flag in covered.get(name, ()), (name, flag)  # this test tries it


@pytest.mark.parametrize(("cmd", "flag", "bad"), CASES, ids=[f"{c[0]}{f}={b}" for c, f, b in CASES])  # noqa: E501
def test_bad_numeric_flag_is_a_usage_error(cmd, flag, bad, capsys):
    with pytest.raises(SystemExit) as e, contextlib.suppress(KeyboardInterrupt):
        rc = main([*cmd, *([flag, *bad] if isinstance(bad, tuple) else [f"{flag}={bad}"])])
        raise SystemExit(rc)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert e.value.code == 2, err
    if isinstance(bad, tuple):  # --thresholds P R O: the one out of range is named
        bad = next(v for v in bad if not 0 <= float(v) <= 1)
    shown = repr(bad)
    assert len(errors) == 1 and flag in errors[0] and shown in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("cmd", [c for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_bad_numeric_flag_in_the_real_cli(cmd):
    """The command line as a user types it: ``--flag -1`` (a separate word), exit 2, one
    error line naming the flag, nothing run."""
    flag = next(iter(COMMANDS[cmd]))
    r = run_cli(*cmd, flag, "-1", timeout=60)
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 2, r.stderr
    assert len(errors) == 1 and f"argument {flag}" in errors[0] and "'-1'" in errors[0], r.stderr


def test_help_shows_the_allowed_range():
    r = run_cli("watch", "--help")
    flat = " ".join(r.stdout.split())
    assert "reconnects (default: 10) [a number > 0 (seconds)]" in flat
    assert "--max-frames N stop after N frames [an integer >= 1]" in flat


# --- 2. SIGHUP (the terminal closed) stops like SIGTERM: recording, stats, MQTT finished --


def test_sighup_finishes_the_recording_and_the_stats(tmp_path):
    from live_helpers import popen_cli, wait_event

    from livefaces.avio import probe_frames

    ev, rec, stats = tmp_path / "ev.jsonl", tmp_path / "rec.mp4", tmp_path / "stats.json"
    p = popen_cli("watch", "synthetic:320x240@25", "--events", str(ev), "--record", str(rec),
                  "--stats", str(stats))
    try:
        assert wait_event(ev, lambda e: e["type"] == "face.appeared", 60), "no face seen"
        # a first fragment of the recording is out (a keyframe every second)
        assert wait_event(ev, lambda e: e["type"] == "face.updated", 60), "no update"
    finally:
        p.send_signal(signal.SIGHUP)
        _out, err = p.communicate(timeout=30)
    assert p.returncode == 130, (p.returncode, err)  # stopped as by SIGTERM (not killed: -1)
    assert "Traceback" not in err
    assert probe_frames(rec) >= 10, err  # a finished, readable MP4
    assert not list(tmp_path.glob("*.part*"))
    st = json.loads(stats.read_text())
    assert st["frames"] >= 10 and st["source"].startswith("synthetic")


def test_nohup_still_ignores_sighup(tmp_path):
    """'nohup livefaces watch ...' starts it with SIGHUP ignored: a hang-up must not stop it."""
    from live_helpers import popen_cli, wait_event

    ev = tmp_path / "ev.jsonl"
    p = popen_cli("watch", "synthetic:160x120@25", "--events", str(ev),
                  preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        assert wait_event(ev, lambda e: e["type"] == "face.appeared", 60), "no face seen"
        p.send_signal(signal.SIGHUP)
        n = len(ev.read_text().splitlines())
        # still running: more events come (a face.updated a second)
        assert wait_event(ev, lambda e: e["type"] == "face.updated", 30, start=n), "it stopped"
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "Traceback" not in err, err


def test_sighup_stops_serve_cleanly_with_mqtt_offline(broker, tmp_path):
    from live_helpers import start_serve_cli
    from test_serve_mqtt import Subscriber

    sub = Subscriber(broker.port, "hup-sub")
    assert sub.subscribed.wait(10)
    proc, lines, ready, _url, reader = start_serve_cli(
        "serve", "cam=synthetic:160x120@5", "--port", "0", "--mqtt", f"127.0.0.1:{broker.port}")
    try:
        assert ready.wait(60), "".join(lines)
        sub.wait_for(lambda m: ("livefaces/available", b"online", True) in m
                     or ("livefaces/available", b"online", False) in m, timeout=30)
        n = len(sub.messages)
    finally:
        proc.send_signal(signal.SIGHUP)
        rc = proc.wait(30)
        reader.join(5)
    msgs = sub.wait_for(lambda m: any(t == "livefaces/available" and p == b"offline"
                                      for t, p, _ in m[n:]), timeout=20)
    sub.close()
    assert rc == 0, "".join(lines)
    assert "Traceback" not in "".join(lines)
    # a clean stop, not the broker's last will: the camera said it stopped before 'offline'
    after = [(t, p) for t, p, _ in msgs[n:]]
    assert any(t == "livefaces/cam/status" and b"stopped" in p for t, p in after), after


# --- 3. a closed or failing stdout/stderr: one line, exit 1, never a lost output with 0 ---


def _cli(*args: str, stdout=None, stderr=None, close: tuple[int, ...] = (), timeout: float = 120):
    """``python -m livefaces ARGS`` with stdout/stderr at ``stdout``/``stderr`` (paths or
    PIPE) and the descriptors ``close`` closed, as a shell's ``>&-`` / ``2>&-`` leaves them."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    def pre() -> None:
        for fd in close:
            os.close(fd)

    with contextlib.ExitStack() as st:
        out = st.enter_context(open(stdout, "w")) if isinstance(stdout, str) else stdout
        err = st.enter_context(open(stderr, "w")) if isinstance(stderr, str) else stderr
        return subprocess.run([sys.executable, "-m", "livefaces", *args], cwd=ROOT,
                              env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE if out is None else out,
                              stderr=subprocess.PIPE if err is None else err, text=True,
                              timeout=timeout, preexec_fn=pre)


def _one_error(err: str, needle: str) -> None:
    assert "Traceback" not in err and "NoneType" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("livefaces: error: ") and needle in errors[0], err


GRACE = "livefaces/data/grace_hopper.jpg"


@pytest.mark.parametrize("how", ["closed", "full"])
@pytest.mark.parametrize("json_out", [False, True], ids=["summary", "json"])
def test_detect_with_a_lost_stdout_is_an_error(how, json_out):
    r = _cli("detect", GRACE, *(["--json"] if json_out else []),
             stdout="/dev/full" if how == "full" else None, close=(1,) if how == "closed" else ())
    assert r.returncode == 1, r.stderr
    _one_error(r.stderr, "stdout: cannot write ("
               + ("closed" if how == "closed" else "No space left on device") + ")")


@pytest.mark.parametrize("how", ["closed", "full"])
def test_watch_with_a_lost_stdout_stops_with_one_error(how, tmp_path):
    from livefaces.cli._live import demo_clip

    stats = tmp_path / "stats.json"
    r = _cli("watch", demo_clip(), "--stats", str(stats),
             stdout="/dev/full" if how == "full" else None, close=(1,) if how == "closed" else ())
    assert r.returncode == 1, r.stderr
    _one_error(r.stderr, "stdout: cannot write the events ("
               + ("closed" if how == "closed" else "No space left on device") + ")")
    # it stopped when its output failed, instead of processing the whole file for nothing
    assert json.loads(stats.read_text())["frames"] < 250


@pytest.mark.parametrize("how", ["closed", "full"])
def test_extract_with_a_lost_stderr_is_not_a_success(how, tmp_path):
    out = tmp_path / "faces"
    r = _cli("extract", GRACE, "--out", str(out), stderr="/dev/full" if how == "full" else None,
             close=(2,) if how == "closed" else ())
    assert r.returncode == 1  # its summary line was lost
    assert (out / "index.jsonl").read_text().count("\n") == 1  # the work itself is complete
    assert not [p for p in out.iterdir() if p.name.startswith("grace") and p.stat().st_size == 0]


@pytest.mark.parametrize("how", ["closed", "full"])
@pytest.mark.parametrize("args", [("--version",), ("watch", "--help"), ("doctor",)],
                         ids=["version", "help", "doctor"])
def test_what_argparse_and_doctor_print_onto_a_lost_stdout_is_an_error(how, args):
    """argparse swallows a failed write of --help/--version; doctor prints a table: either
    way the text is lost, so the exit code is 1 and stderr says why."""
    r = _cli(*args, stdout="/dev/full" if how == "full" else None, close=(1,) if how == "closed" else ())
    assert r.returncode == 1, r.stderr
    _one_error(r.stderr, "stdout: cannot write (")


# --- 4. what is printed of untrusted strings stays on its line, escapes shown, not run ----

HOSTILE = "a\nb\x1b[31mred\r\u202egpj"  # a newline, an ANSI colour, a carriage return, a bidi override


def _clean(text: str) -> None:
    assert not set(text) & set("\x1b\r\u202e"), repr(text)


def test_detect_escapes_file_names_in_its_lines_not_in_json(tmp_path):
    import shutil

    from conftest import ROOT

    photo = tmp_path / f"{HOSTILE}.jpg"
    shutil.copy(ROOT / GRACE, photo)
    broken = tmp_path / "x\n\x1b[2Jlivefaces: error: forged.jpg"
    broken.write_bytes(b"not a jpeg")
    r = run_cli("detect", str(photo), str(broken))
    assert r.returncode == 1, r.stderr
    _clean(r.stdout + r.stderr)
    assert r.stdout.splitlines() == [f"{tmp_path}/a\\nb\\x1b[31mred\\r\\u202egpj.jpg: 1 face (best 1.000)"]
    err = r.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith(f"livefaces: error: {tmp_path}/x\\n\\x1b[2Jlivefaces"), err
    r = run_cli("detect", str(photo), "--json")
    assert json.loads(r.stdout)["source"] == str(photo)  # JSON: escaped by JSON, exactly once


def test_watch_summary_of_a_hostile_file_name_is_one_line(tmp_path):
    import shutil

    from livefaces.cli._live import demo_clip

    clip = tmp_path / f"{HOSTILE}.mp4"
    shutil.copy(demo_clip(), clip)
    r = run_cli("watch", str(clip), "--max-frames", "3", "--events", str(tmp_path / "ev.jsonl"))
    assert r.returncode == 0, r.stderr
    _clean(r.stderr)
    assert len(r.stderr.splitlines()) == 1 and "a\\nb\\x1b[31mred" in r.stderr, r.stderr


def test_people_unknown_escapes_what_a_server_says(tmp_path):
    """A server (or something answering in its place) sends newlines and ANSI escapes in the
    ids, camera names and error texts that 'people unknown' and 'people name' print."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):  # noqa: N802
            self._send(200, {"enabled": True, "unknown": [
                {"id": "door.1\n\x1b[2Jdoor.2", "camera": "door\r\x1b[31m", "seen": "now\u2028"}]})

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(400, {"error": "no such face\n\x1b[32mlivefaces: added ada\x07"})

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        r = run_cli("people", "unknown", "--server", url, timeout=60)
        n = run_cli("people", "name", "door.1", "ada", "--server", url, timeout=60)
    finally:
        srv.shutdown()
    assert r.returncode == 0, r.stderr
    _clean(r.stdout + r.stderr)
    assert r.stdout.splitlines() == ["door.1\\n\\x1b[2Jdoor.2  camera door\\r\\x1b[31m, seen now\\u2028"]
    assert n.returncode == 3
    _clean(n.stdout + n.stderr)
    assert "\x07" not in n.stderr
    assert n.stderr.splitlines() == [f"livefaces: error: {url}: no such face\\n\\x1b[32mlivefaces: "
                                     "added ada\\x07 (HTTP 400)"]


# --- 5. events: frame times throughout, boxes in the frame, a minimum score --------------


def _t(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_face_event_times_are_the_frames_capture_times():
    """Processing runs 0.5 s behind capture (a busy CPU, a queue of frames): first_seen and
    duration come from the frames' capture times, as 'captured' does, so a face.lost never
    reports a last frame from before its track began."""
    import numpy as np

    from livefaces.events import FaceEvents
    from livefaces.track import Tracker
    from livefaces.types import Faces, Frame

    t = [0.0]
    lag = 0.5  # each frame is handled this long after it was captured
    ev = FaceEvents("cam", update_interval=1.0, clock=lambda: t[0] + lag, wall=lambda: 1000.0 + t[0] + lag)
    tr = Tracker()
    img = np.zeros((100, 200, 3), np.uint8)
    out = []
    for i in range(30):  # 3 s at 10 fps; the face reaches beyond the frame's bottom edge
        t[0] = i / 10
        faces = Faces(np.array([[10 + i, 60, 50 + i, 130]], np.float32), np.full(1, 0.99, np.float32),
                      np.zeros((1, 5, 2), np.float32))
        out += ev.update(Frame(img, "cam", i, t[0], t[0]), tr.update(faces, t[0]))
    out += ev.clear("source_ended", [x.id for x in tr.clear()])
    appeared, lost = out[0], out[-1]
    assert appeared["type"] == "face.appeared" and lost["type"] == "face.lost"
    assert appeared["first_seen"] == appeared["captured"] and appeared["duration"] == 0.0
    for e in out:
        assert _t(e["captured"]) >= _t(e["first_seen"]), e
        assert abs(_t(e["captured"]) - _t(e["first_seen"]) - e["duration"]) < 1e-3, e
        assert e["box"][3] == 100.0 and e["height"] == 100  # clipped to the frame
    assert lost["frame_index"] == 29 and lost["duration"] == round(2.9 - _t(appeared["captured"]) + 1000, 3)


def test_hamilton_clip_events_and_snapshots_skip_low_scores(shared, tmp_path):
    """The hamilton clip: the detector boxes hands, hair and dark background at 0.70-0.82
    (8 tracks) besides the 7 faces (0.988-1.0). With the default --event-min-score (0.9)
    only tracks scored that high get events and snapshots; every box is inside the frame and
    every time is a frame's."""
    clip = shared / "media/ageitgey__face_recognition/examples/short_hamilton_clip.mp4"
    ev, snaps = tmp_path / "ev.jsonl", tmp_path / "snaps"
    r = run_cli("watch", str(clip), "--events", str(ev), "--snapshots", str(snaps),
                "--update-interval", "0", "-q", timeout=300)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in ev.read_text().splitlines()]
    faces = [e for e in events if "track_id" in e]
    best: dict[int, float] = {}
    for e in faces:
        best[e["track_id"]] = max(best.get(e["track_id"], 0.0), e["confidence"])
        assert 0 <= e["box"][0] <= e["box"][2] <= e["width"], e["box"]
        assert 0 <= e["box"][1] <= e["box"][3] <= e["height"], e["box"]
        assert _t(e["captured"]) >= _t(e["first_seen"]) - 1e-6, e
    appeared = [e for e in faces if e["type"] == "face.appeared"]
    assert appeared and all(e["confidence"] >= 0.9 for e in appeared)
    assert sum(v >= 0.98 for v in best.values()) >= 7  # the faces are all there
    assert len([e for e in faces if e["type"] == "face.lost"]) == len(appeared)
    snapped = {int(p.name.split("_track")[1][:6]) for p in snaps.glob("*.jpg")}
    assert snapped and snapped <= set(best)  # no snapshot of a track without events


# --- 6. the HUD: a rate over a time window, in a bar at the bottom ------------------------


def test_rate_meter_counts_bursts_over_its_window():
    """A detector batch delivers its results at one moment: 8 results every 8/30 s is 30 a
    second, from the first batch on (the old meter divided by the burst's own span: 1e6)."""
    from livefaces.meter import RateMeter

    m = RateMeter(2.0)
    seen = []
    for k in range(20):
        t = k * 8 / 30
        for _ in range(8):
            m.tick(t)
        seen.append(m.rate(t + 0.001))
    assert max(seen) <= 1.5 * 30, seen
    assert all(25 <= r <= 36 for r in seen[10:]), seen  # a whole window watched: about 30
    assert m.rate(t + 10) == 0.0  # nothing for longer than the window


def test_hud_is_a_bar_at_the_bottom_that_leaves_faces_alone(astronaut):
    import numpy as np

    from livefaces.render import HUD_SHOW_THROUGH, HudInfo, render_result
    from livefaces.types import Faces, Frame, FrameResult

    result = FrameResult(Frame(astronaut, "cam", 0, None, 0.0), Faces.empty(), True)
    out = render_result(result, HudInfo(25.0, 5.0, 0, 40.0, "connected", "rtsp://***@cam/live"))
    h = astronaut.shape[0]
    changed = np.any(out != astronaut, axis=2)
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows.min() > 0.85 * h  # the top (the astronaut's face, the old panel) untouched
    bar = out[rows.min():]
    lit = astronaut[rows.min():].max(axis=2) > 20  # (black stays black when darkened)
    assert changed[rows.min():][lit].mean() > 0.95  # a full-width bar...
    dark = bar.astype(float).mean() / max(astronaut[rows.min():].astype(float).mean(), 1)
    assert HUD_SHOW_THROUGH * 0.8 < dark < 0.9  # ...darkened, the picture showing through
    assert (bar == 255).all(axis=2).sum() > 100  # with white text


def test_recording_hud_leaves_the_top_of_the_picture_alone(tmp_path):
    """watch --record: the synthetic scene's background (70, 90, 110) is untouched at the top
    left, where the old panel darkened it, and darkened in a bar along the bottom (the face
    never reaches either)."""
    import av
    import numpy as np

    rec = tmp_path / "rec.mp4"
    r = run_cli("watch", "synthetic:640x360@25", "--record", str(rec), "--max-frames", "40",
                "--events", str(tmp_path / "ev.jsonl"), "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    with av.open(str(rec)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    last = frames[-1].astype(float)  # the HUD is there once the first statistics came
    bg = np.array([70, 90, 110], float)
    assert np.abs(last[2:28, 2:200].mean(axis=(0, 1)) - bg).max() < 12, last[2:28, 2:200].mean(axis=(0, 1))
    bottom = np.median(last[-12:-2].reshape(-1, 3), axis=0)  # the bar (its text is thin)
    assert (bottom < 0.6 * bg).all() and (bottom > 0.3 * bg).all(), bottom


def test_preview_help_says_what_each_colour_means():
    r = run_cli("preview", "--help")
    flat = " ".join(r.stdout.split())
    for words in ("green D detected", "light blue R refined", "amber, thin T tracked"):
        assert words in flat, words
