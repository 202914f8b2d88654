"""Issue 20, "data loss and damage": what livefaces writes never replaces what the output path
names, never writes over an input, never collides, and a damaged input or an unfinished or
failed output is a failure (exit 1), said in one line.

Devices are made with mknod in the test's folder when the tests run as root (a container):
replacing one there harms nothing, where replacing /dev/null would break the machine.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli


def char_device(tmp_path: Path, name: str, minor: int) -> Path:
    """A private copy of /dev/null (minor 3) or /dev/full (minor 7)."""
    path = tmp_path / name
    if os.geteuid() == 0:
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
            return path
        except OSError:
            pass
    if minor == 3:
        return Path("/dev/null")  # not root: nothing can replace it
    pytest.skip("needs root (mknod) for a private /dev/full")


class FifoReader:
    """Reads everything written into a new FIFO, on a thread (opened before the writer)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.data = b""
        self._opened = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader exists from now on
        self._opened.set()

    def _read(self) -> None:
        import time

        self._opened.wait(30)
        chunks: list[bytes] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except BlockingIOError:  # a writer is there, nothing to read yet
                time.sleep(0.01)
                continue
            if chunk:
                chunks.append(chunk)
            elif chunks:  # the writer closed
                break
            else:  # no writer yet
                time.sleep(0.05)
        self.data = b"".join(chunks)

    def result(self) -> bytes:
        self.thread.join(60)
        os.close(self._fd)
        return self.data


def test_outputs_onto_a_device_a_fifo_or_a_symlink_are_written_through(tmp_path):
    """Every whole-file output (demo --out, detect --annotate, --stats, --record) onto a
    device, a FIFO with a reader or a symlink goes through it; none of them is replaced."""
    null = char_device(tmp_path, "null", 3)
    r = run_cli("demo", "--out", str(null))
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(null.stat().st_mode), "the device was replaced by a file"

    # --stats and --record onto a device; --stats through a symlink to this process's stdout
    # (the shape of /dev/stdout): the JSON comes out on stdout and the link stays
    link = tmp_path / "stdout-link"
    link.symlink_to("/proc/self/fd/1")
    r = run_cli("watch", "synthetic:160x120@25", "--max-frames", "5", "--events", str(null),
                "--stats", str(link), "--record", str(null), "-q")
    assert r.returncode == 0, r.stderr
    assert stat.S_ISCHR(null.stat().st_mode)
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert json.loads(r.stdout)["frames"] == 5

    # a symlink to a regular file: the target gets the bytes, the link stays a link
    target = tmp_path / "real.jpg"
    target.write_bytes(b"old")
    alias = tmp_path / "alias.jpg"
    alias.symlink_to(target)
    r = run_cli("demo", "--out", str(alias))
    assert r.returncode == 0, r.stderr
    assert alias.is_symlink() and cv2.imread(str(target)) is not None

    # a FIFO with a reader: the reader gets the whole JPEG, the FIFO stays a FIFO
    fifo = FifoReader(tmp_path / "pipe.jpg")
    r = run_cli("demo", "--out", str(fifo.path))
    data = fifo.result()
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(fifo.path.stat().st_mode)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None

    # the recording into a FIFO: a fragmented MP4 stream arrives at the reader
    fifo = FifoReader(tmp_path / "rec.mp4")
    r = run_cli("watch", "synthetic:160x120@25", "--max-frames", "10", "--events", str(null),
                "--record", str(fifo.path), "-q")
    data = fifo.result()
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(fifo.path.stat().st_mode)
    assert data[4:8] == b"ftyp" and b"moof" in data
    assert not list(tmp_path.glob("*.part*")) and not list(tmp_path.glob(".*.tmp"))


def test_a_full_device_or_a_fifo_without_reader_fails_in_one_line_and_stays(tmp_path):
    full = char_device(tmp_path, "full", 7)
    r = run_cli("demo", "--out", str(full))
    assert r.returncode == 3
    assert r.stderr.strip().splitlines()[-1].startswith("livefaces: error: ")
    assert "No space left on device" in r.stderr and "Traceback" not in r.stderr
    assert stat.S_ISCHR(full.stat().st_mode), "/dev/full was replaced by a file"

    fifo = tmp_path / "nobody.jpg"
    os.mkfifo(fifo)
    r = run_cli("demo", "--out", str(fifo), timeout=60)  # no endless wait for a reader
    assert r.returncode == 3 and "no reader" in r.stderr, r.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# -- item 2: detect --annotate never writes over an input, and says where each copy went ----
def test_annotate_never_writes_over_an_input_and_keeps_the_folders(tmp_path, astronaut):
    from livefaces.imageio import write_image

    photos = tmp_path / "photos"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    write_image(photos / "a" / "x.png", astronaut)
    write_image(photos / "b" / "x.png", astronaut)
    before = {p: p.read_bytes() for p in photos.rglob("*.png")}
    cases = [([str(photos)], str(photos)),  # the folder itself
             ([str(photos / "a" / "x.png")], str(photos / "a")),  # the file's own folder
             (["photos/a/x.png"], "."),  # a relative name, mirrored under DIR
             ([str(photos / "a" / "x.png"), str(photos / "b")], str(photos / "b"))]
    for paths, annotate in cases:
        r = run_cli("detect", *paths, "--annotate", annotate, cwd=tmp_path)
        assert r.returncode == 2, (paths, annotate, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("livefaces: error: --annotate "), r.stderr
        assert "would write over the input" in lines[0] and r.stdout == ""
        assert {p: p.read_bytes() for p in photos.rglob("*.png")} == before, "an input was changed"

    # two files of one name in different folders keep their folders, and each line says where
    r = run_cli("detect", "photos/a/x.png", "photos/b/x.png", "--annotate", "out", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["annotated"] for rec in recs] == ["out/photos/a/x.png", "out/photos/b/x.png"]
    assert all((tmp_path / rec["annotated"]).is_file() for rec in recs)
    r = run_cli("detect", str(photos), "--annotate", str(tmp_path / "o2"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.relative_to(tmp_path / "o2").as_posix() for p in (tmp_path / "o2").rglob("*.png")) \
        == ["a/x.png", "b/x.png"]
    assert f"-> {tmp_path / 'o2' / 'a' / 'x.png'}" in r.stdout


# -- item 3: extract's crop paths are unique per input and stable across runs ---------------
def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def _assert_own_crops(out: Path) -> list[dict]:
    """Every row names its own crop file (no two rows, no two inputs share one)."""
    rows = _rows(out)
    crops = [r["crop"] for r in rows]
    assert len(crops) == len(set(crops)), f"crop paths shared: {sorted(crops)}"
    assert all((out / c).is_file() for c in crops)
    return rows


def test_extract_crop_names_never_collide_within_or_across_runs(detector, tmp_path, astronaut,
                                                               grace_hopper):
    from test_extract import make_clip

    from livefaces.extract import extract
    from livefaces.imageio import read_image, write_image

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_image(tmp_path / "a" / "x.jpg", astronaut)
    write_image(tmp_path / "b" / "x.jpg", grace_hopper)
    out = tmp_path / "o"
    extract([tmp_path / "a" / "x.jpg"], out, detector=detector)
    first = _rows(out)
    kept = {r["crop"]: (out / r["crop"]).read_bytes() for r in first}
    extract([tmp_path / "b" / "x.jpg"], out, detector=detector)  # a second run, same name
    rows = _assert_own_crops(out)
    assert {r["source"] for r in rows} == {str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg")}
    assert {c: (out / c).read_bytes() for c in kept} == kept, "the first run's crop was overwritten"
    crop_of = {Path(r["source"]).parent.name: r["crop"] for r in rows}
    a_crop, b_crop = (read_image(out / crop_of[d]) for d in ("a", "b"))
    assert np.abs(a_crop.astype(int) - b_crop.astype(int)).mean() > 10  # two faces, two files
    # stable: a rerun naming both, in the other order, skips them and changes nothing
    extract([tmp_path / "b" / "x.jpg", tmp_path / "a" / "x.jpg"], out, detector=detector)
    assert _rows(out) == rows

    # one run: a folder photos/ holding 000000.jpg, and a video photos.mp4
    (tmp_path / "photos").mkdir()
    write_image(tmp_path / "photos" / "000000.jpg", astronaut)
    make_clip(tmp_path / "photos.mp4", [grace_hopper], frames=3)
    for order in ([tmp_path / "photos", tmp_path / "photos.mp4"],
                  [tmp_path / "photos.mp4", tmp_path / "photos"]):
        o = tmp_path / f"o{len(list(tmp_path.glob('o*')))}"
        report = extract(order, o, detector=detector)
        assert report.failed == [] and report.done == 2
        rows = _assert_own_crops(o)
        assert {r["source"] for r in rows} == {str(tmp_path / "photos" / "000000.jpg"),
                                               str(tmp_path / "photos.mp4")}
        assert len(rows) == 4  # one face in the photo, one in each of the 3 frames


def test_extract_crop_names_never_collide_with_ray_local(tmp_path, astronaut, grace_hopper):
    pytest.importorskip("ray")
    from test_extract import make_clip

    from livefaces.imageio import write_image

    (tmp_path / "photos").mkdir()
    write_image(tmp_path / "photos" / "000000.jpg", astronaut)
    make_clip(tmp_path / "photos.mp4", [grace_hopper], frames=3)
    out = tmp_path / "o"
    r = run_cli("extract", str(tmp_path / "photos.mp4"), str(tmp_path / "photos"), "--out", str(out),
                "--ray", "local", "--workers", "1", "--progress", "off", timeout=240)
    assert r.returncode == 0, r.stderr
    rows = _assert_own_crops(out)
    assert len(rows) == 4 and len({r["source"] for r in rows}) == 2


# -- item 4: a damaged or truncated video is a failed input, and leaves nothing -----------------
def _faststart_clip(path: Path, face: np.ndarray, frames: int = 48, size: int = 120) -> bytes:
    """An H.264 MP4 with its index first (faststart, as phones and web video have it): a
    truncated copy still opens and the header still lists every frame."""
    import av

    small = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream("libx264", rate=24, options={"preset": "veryfast", "g": "12"})
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            img = np.full((240, 320, 3), 90, np.uint8)
            x = (10 + 3 * i) % (320 - size)
            img[(240 - size) // 2:(240 + size) // 2, x:x + size] = small
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def damaged_clips(tmp_path_factory, astronaut) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("damaged")
    data = _faststart_clip(root / "good.mp4", astronaut)
    (root / "half.mp4").write_bytes(data[: len(data) // 2])
    noisy = bytearray(data)
    mid = len(data) // 2
    noisy[mid:mid + 4000] = np.random.default_rng(7).integers(0, 256, 4000, np.uint8).tobytes()
    (root / "noisy.mp4").write_bytes(bytes(noisy))
    return {"good": root / "good.mp4", "half": root / "half.mp4", "noisy": root / "noisy.mp4"}


def _check_damaged_run(r: subprocess.CompletedProcess, out: Path, clips: dict[str, Path]) -> None:
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("livefaces: error: ")]
    assert len(errors) == 2 and "Traceback" not in r.stderr, r.stderr
    half = next(e for e in errors if str(clips["half"]) in e)
    noisy = next(e for e in errors if str(clips["noisy"]) in e)
    assert "truncated or damaged" in half and "of the 48" in half
    assert "damaged: decoding failed after frame " in noisy and "of the 48" in noisy
    rows = _rows(out)
    assert rows and {r["source"] for r in rows} == {str(clips["good"])}, "rows of a failed input"
    done = [json.loads(line)["source"] for line in (out / "done.jsonl").read_text().splitlines()]
    assert done == [str(clips["good"])]
    crops = {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    assert crops == {r["crop"] for r in rows}, "crops of a failed input left behind"


def test_extract_a_damaged_or_truncated_video_is_a_failed_input(damaged_clips, tmp_path):
    c = damaged_clips
    out = tmp_path / "o"
    r = run_cli("extract", str(c["good"]), str(c["half"]), str(c["noisy"]), "--out", str(out),
                "--progress", "off")
    _check_damaged_run(r, out, c)


def test_extract_on_ray_a_damaged_or_truncated_video_is_a_failed_input(damaged_clips, tmp_path):
    pytest.importorskip("ray")
    c = damaged_clips
    out = tmp_path / "o"
    r = run_cli("extract", str(c["good"]), str(c["half"]), str(c["noisy"]), "--out", str(out),
                "--progress", "off", "--ray", "local", "--workers", "1", "--segment-seconds", "0.5",
                timeout=240)
    _check_damaged_run(r, out, c)


def test_watch_a_damaged_or_truncated_video_exits_1_saying_how_far(damaged_clips):
    for name in ("half", "noisy"):
        r = run_cli("watch", str(damaged_clips[name]), "--events", os.devnull, "-q")
        assert r.returncode == 1, (name, r.stderr)
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("livefaces: error: ") and "Traceback" not in r.stderr
        assert ("of the 48 frames its header lists" in line) if name == "half" else ("after " in line)
    r = run_cli("watch", str(damaged_clips["good"]), "--events", os.devnull, "-q")
    assert r.returncode == 0, r.stderr


# -- item 5: at the end of an input the recording is waited for; one left unfinished is exit 1 --
def _watch_with_slow_recorder(args: list[str], close_delay: float, sink_budget: float | None,
                              timeout: float = 120) -> subprocess.CompletedProcess:
    """``livefaces watch ARGS`` in a subprocess whose recorder takes ``close_delay`` s more to
    close (an encoder behind under load), and whose sinks get ``sink_budget`` s to finish
    (None: the default)."""
    code = (
        "import sys, time\n"
        "import livefaces.avio as a, livefaces.pipeline as p\n"
        "orig = a.AVWriter.close\n"
        f"def slow(self):\n    time.sleep({close_delay})\n    orig(self)\n"
        "a.AVWriter.close = slow\n"
        + (f"p.SINK_CLOSE_S = {sink_budget}\n" if sink_budget is not None else "")
        + "from livefaces.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-c", code, "watch", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_the_end_of_a_file_waits_for_a_slow_recording(tmp_path, damaged_clips):
    rec = tmp_path / "out.mp4"
    r = _watch_with_slow_recorder([str(damaged_clips["good"]), "--realtime", "--events", os.devnull,
                                   "--record", str(rec), "-q"], close_delay=3.0, sink_budget=None)
    assert r.returncode == 0, r.stderr
    assert rec.is_file() and not list(tmp_path.glob("*.part*")), r.stderr
    from livefaces.avio import probe_frames

    assert probe_frames(rec) >= 40


def test_a_recording_left_unfinished_is_exit_1_with_a_message(tmp_path, damaged_clips):
    rec = tmp_path / "out.mp4"
    r = _watch_with_slow_recorder([str(damaged_clips["good"]), "--events", os.devnull,
                                   "--record", str(rec), "-q"], close_delay=6.0, sink_budget=0.5)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"the recording was not finalised: {tmp_path / 'out.part.mp4'} is incomplete" in r.stderr


# -- item 6: a recording's write error stops that sink with one line; nothing grows ------------
def test_a_recording_whose_writes_fail_holds_no_frames(tmp_path):
    """A full disk, simulated for any user by a file size limit (RLIMIT_FSIZE: writes past it
    fail with EFBIG): every write after the first failure fails at once, and the error holds
    no pile of frames (raising one exception object again and again grew its traceback, and
    every frame it referenced: a full disk grew 'watch --record' by ~34 MB/s)."""
    code = (
        "import json, resource, signal, traceback, numpy as np\n"
        "from livefaces.avio import AVWriter\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (32768, resource.RLIM_INFINITY))\n"
        f"w = AVWriter({str(tmp_path / 'rec.mp4')!r})\n"
        "rng = np.random.default_rng(1)\n"
        "errors, depths = [], []\n"
        "for i in range(250):\n"
        "    try:\n"
        "        w.write(rng.integers(0, 256, (120, 160, 3), np.uint8), i / 25)\n"
        "    except OSError as e:\n"
        "        errors.append(str(e)); depths.append(len(traceback.extract_tb(e.__traceback__)))\n"
        "print(json.dumps({'errors': errors[:1], 'n': len(errors), 'depths': depths}))\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] > 100 and "cannot write" in out["errors"][0], out
    assert max(out["depths"]) <= 3, out["depths"]


def test_a_recording_onto_a_full_device_stops_in_one_line(tmp_path):
    full = char_device(tmp_path, "full", 7)
    link = tmp_path / "rec.mp4"
    link.symlink_to(full)  # a full disk, as a path: writes fail with ENOSPC
    r = run_cli("watch", "synthetic:160x120@25", "--max-frames", "150", "--events", os.devnull,
                "--record", str(link))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "No space left on device" in line]
    assert 1 <= len(errors) <= 2, r.stderr  # the moment it failed, and the exit's reason
    assert stat.S_ISCHR(full.stat().st_mode) and link.is_symlink()
    assert not list(tmp_path.glob("*.part*"))


# -- item 7: extract on a full disk: one line, exit 3, no temp file; a rerun finishes ----------
def _run_with_file_limit(limit: int, *args: str) -> subprocess.CompletedProcess:
    """``livefaces ARGS`` where no file may grow past ``limit`` bytes (RLIMIT_FSIZE: writes
    past it fail with EFBIG, as on a full disk, for any user)."""
    import resource
    import signal

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "livefaces", *args], capture_output=True,
                          text=True, timeout=120, env=env, preexec_fn=limited)


@pytest.mark.parametrize("limit", [0, 1500])  # full from the start; full after a few files
def test_extract_on_a_full_disk_is_one_line_exit_3_and_no_temp_file(tmp_path, damaged_clips, limit):
    out = tmp_path / "o"
    args = ("extract", str(damaged_clips["good"]), "--out", str(out), "--progress", "off")
    r = _run_with_file_limit(limit, *args)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livefaces: error: "), r.stderr
    assert "File too large" in lines[0]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    r = run_cli(*args)  # room again: the rerun finishes
    assert r.returncode == 0, r.stderr
    rows = _assert_own_crops(out)
    assert len(rows) == 48


# -- item 8: snapshot names: the source's short name + track + frame, unique, never replaced --
def test_snapshot_names_are_short_readable_and_unique(tmp_path, grace_hopper):
    deep = tmp_path / "some_rather_long_folder_name" / "and_another_one_below_it"
    deep.mkdir(parents=True)
    clip = deep / "astro clip.mp4"
    _faststart_clip(clip, grace_hopper, frames=36, size=220)
    snaps = tmp_path / "snaps"
    args = ("watch", str(clip), "-q", "--events", os.devnull, "--snapshots", str(snaps))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    first = sorted(p.name for p in snaps.glob("*.jpg"))
    assert first and all(re.fullmatch(r"astro_clip_track\d{6}_frame\d{8}\.jpg", n) for n in first), first
    before = {n: (snaps / n).read_bytes() for n in first}
    r = run_cli(*args)  # a second run into the same folder replaces none of them
    assert r.returncode == 0, r.stderr
    assert {n: (snaps / n).read_bytes() for n in first} == before
    again = sorted(p.name for p in snaps.glob("*.jpg") if p.name not in before)
    assert again == [n.replace(".jpg", "-2.jpg") for n in first]

    # two sources of one short name in one sink (serve's cameras) stay apart
    from test_media_faults import _marks

    from livefaces.publish.snapshots import SnapshotSink
    from livefaces.types import Faces, Frame, FrameResult

    sink = SnapshotSink(tmp_path / "two")
    for src in ("rtsp://***@cam1/live", "/a/cam1_live.mp4"):
        img = np.full((300, 300, 3), 100, np.uint8)
        faces = Faces(np.array([[50, 50, 170, 170]], np.float32), np.array([0.99], np.float32),
                      np.array([_marks(50, 50, 120)], np.float32))
        sink.on_result(FrameResult(Frame(img, src, 3, 0.0, 0.0), faces, True,
                                   np.array([1], np.int64), np.array([True])))
    sink.close()
    assert sorted(p.name for p in sink.written) == ["cam1_live-2_track000001_frame00000003.jpg",
                                                    "cam1_live_track000001_frame00000003.jpg"]


def test_events_into_a_fifo_reach_its_reader_and_without_one_fail_at_once(tmp_path):
    fifo = FifoReader(tmp_path / "events")
    r = run_cli("watch", "synthetic:160x120@25", "--max-frames", "5", "--events", str(fifo.path), "-q")
    data = fifo.result()
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["type"] for line in data.decode().splitlines()][0] == "source.status"
    nobody = tmp_path / "nobody"
    os.mkfifo(nobody)
    r = run_cli("watch", "synthetic:160x120@25", "--max-frames", "5", "--events", str(nobody),
                timeout=60)  # was: blocked forever in open()
    assert r.returncode == 3 and "no reader" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and stat.S_ISFIFO(nobody.stat().st_mode)
