"""Shared fixtures: a detector, the registry-shipped face photos, ../shared when present."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIVEFACES_SHARED", ROOT.parent / "shared"))
#: ``python -m livefaces`` that waits for the Ctrl-C of interrupt_extract (see the file)
GATED_CLI = Path(__file__).with_name("_gated_cli.py")


@pytest.fixture(scope="session")
def detector():
    from livefaces import Detector

    return Detector()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut (NASA, public domain), RGB uint8 512×512."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    """matplotlib's grace_hopper sample (U.S. Navy, public domain), RGB uint8 600×512."""
    import matplotlib.cbook

    from livefaces.imageio import read_image

    return read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared`` (CI has it beside the checkout); tests needing it skip on a bare clone."""
    if not (SHARED / "reference").is_dir():
        pytest.skip(f"{SHARED} not present (CI provides it beside the checkout)")
    return SHARED


def run_cli(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m livefaces ARGS`` from this checkout; capture text output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "livefaces", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)



def interrupt_extract(args: list[str], env: dict, out: Path,
                      ready: Callable[[Path], bool] | None = None) -> tuple[int, str]:
    """Run ``livefaces ARGS`` (an ``extract`` writing into ``out``) as a terminal would (SIGINT
    at its default: a shell's background job passes it ignored, and Python keeps it so), press
    Ctrl-C once ``ready(out)`` (default: its index has a line), and return its exit code and
    stderr. It runs through :data:`GATED_CLI`, which waits for that Ctrl-C: the run cannot end
    first however late this process is scheduled."""
    proc = subprocess.Popen([sys.executable, str(GATED_CLI), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    index = out / "index.jsonl"
    ready = ready or (lambda _: index.exists() and index.stat().st_size > 0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ready(out):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be interrupted"
    # how the child treats SIGINT (blocked/ignored/caught masks), for the message if it fails
    masks = [ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
             if ln.startswith(("SigBlk", "SigIgn", "SigCgt"))] if sys.platform == "linux" else []
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (err, masks)
    return proc.returncode, err


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto broker on a free loopback port (tests/_mosquitto.py)."""
    from _mosquitto import Broker

    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()
