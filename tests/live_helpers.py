"""Helpers for the live-pipeline integration tests: a real RTSP server, CLI processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_face_frames(folder: Path, faces: list[np.ndarray], n: int = 50, size=(640, 360)) -> Path:
    """``n`` JPEG frames with the given face photos moving slowly (known positions)."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        img = np.full((h, w, 3), 80, np.uint8)
        for k, face in enumerate(faces):
            fh = h // 2
            fw = int(face.shape[1] * fh / face.shape[0])
            small = cv2.resize(face, (fw, fh), interpolation=cv2.INTER_AREA)
            x = int(60 + k * (w // 2) + 40 * np.sin(2 * np.pi * i / n))
            y = h // 4
            img[y:y + fh, x:x + fw] = small
        cv2.imwrite(str(folder / f"frame{i:05d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder


class RtspServer:
    """tests/rtsp_server.py in a subprocess (Debian's python3 with gi), on a loopback port."""

    def __init__(self, frames: Path, port: int | None = None, *args: str) -> None:
        self.frames, self.port, self.args = frames, port or free_port(), args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self, timeout: float = 15.0) -> RtspServer:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(ROOT / "tests" / "rtsp_server.py"), "--frames", str(self.frames),
             "--port", str(self.port), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "READY" not in line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"RTSP server did not start: {line!r} {err[-2000:]}")
        assert time.monotonic() < deadline
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def popen_cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "livefaces", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT), **kw)


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))  # every line is complete JSON (flushed per line)
    return out


def wait_event(path: Path, pred, timeout: float, start: int = 0) -> tuple[int, dict] | None:
    """(position, event) of the first event from ``start`` matching ``pred``, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evs = read_events(path)
        for i, e in enumerate(evs[start:], start):
            if pred(e):
                return i, e
        time.sleep(0.1)
    return None


def interrupt(proc: subprocess.Popen, timeout: float = 10.0) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def start_serve_cli(*args: str, ignore_sigint: bool = False, max_files: int | None = None
                    ) -> tuple[subprocess.Popen, list[str], threading.Event, list[str], threading.Thread]:
    """``python -m livefaces ARGS`` (a serve command) with its stderr read on a thread:
    ``(proc, stderr lines so far, set once it serves, [its URL], the reader thread)``.
    ``max_files``: its open-file limit (``ulimit -n``, as in a container)."""
    import resource

    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def pre() -> None:
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

    proc = subprocess.Popen([sys.executable, "-m", "livefaces", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            errors="backslashreplace", preexec_fn=pre)
    lines: list[str] = []
    url: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"serving \d+ camera\(s\) on (http://\S+)", line)
            if m:
                url.append(m.group(1))
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, lines, ready, url, reader
