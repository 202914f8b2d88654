"""Issue 20, "data loss and damage": what livefaces writes never replaces what the output path
names, never writes over an input, never collides, and a damaged input or an unfinished or
failed output is a failure (exit 1), said in one line.

Devices are made with mknod in the test's folder when the tests run as root (a container):
replacing one there harms nothing, where replacing /dev/null would break the machine.
"""

from __future__ import annotations

import json
import os
import stat
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
