"""Inputs that hang, leak or blow up memory (issue 20): looping files, decompression bombs,
FIFOs, rotated phone videos, user mistakes in the inputs of ``detect``/``watch``/``extract``."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

HAMILTON = "media/ageitgey__face_recognition/examples/short_hamilton_clip.mp4"


def _ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True,
                   timeout=120)


def _tasks() -> int:
    """Threads of this process as the kernel counts them (FFmpeg's decoder threads too)."""
    return len(os.listdir("/proc/self/task"))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- 1. a looping file source must not leak a decoder per loop --------------------------------

@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_a_looping_file_keeps_threads_and_memory_flat(shared, tmp_path):
    """``watch FILE --loop`` and serve's file cameras loop through FileSource in a capture
    thread; each loop used to keep the old decoder alive (its frame threads, its last frames):
    +3 threads and a few MB per loop, 198 -> 251 threads in 30 s in serve."""
    from livefaces.capture import CaptureOptions, CaptureWorker
    from livefaces.ringbuffer import RingBuffer
    from livefaces.sources import open_source

    clip = tmp_path / "short.mp4"  # 6 frames of the real clip: a loop every 6 frames
    _ffmpeg("-i", str(shared / HAMILTON), "-frames:v", "6", "-an", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(clip))
    source = open_source(clip, loop=True)
    ring: RingBuffer = RingBuffer(4, policy="wait")
    stop = threading.Event()
    worker = CaptureWorker(source, ring, stop, CaptureOptions())
    worker.start()
    seen = {}
    try:
        n = 0
        while n < 6 * 150:  # 150 loops
            frame = ring.get(timeout=30)
            assert frame is not None, worker.error
            n += 1
            if n == 6 * 20:  # after 20 loops: the decoder threads have all started
                seen["threads"], seen["py"], seen["rss"] = _tasks(), threading.active_count(), _rss_mb()
        assert frame.index == n - 1  # one source, never reopened by capture: loops only
        threads, py, rss = _tasks(), threading.active_count(), _rss_mb()
    finally:
        stop.set()
        assert worker.join(10)
    assert py == seen["py"]
    assert threads <= seen["threads"] + 2, (seen, threads)  # was +390 (3 per loop)
    assert rss < seen["rss"] + 40, (seen, rss)  # was +~400 MB
