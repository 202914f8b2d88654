"""``python -m livefaces`` for the Ctrl-C test of ``extract``, with one gate added: once the
output's ``index.jsonl`` has a line, the detect loop waits (at most 60 s) before its next batch.

The test presses Ctrl-C when it sees that line. Without the gate the run could end before the
signal arrives when the test process is scheduled late (a 240-frame clip takes ~2 s on a fast
CPU): a race in the test, not in livefaces. The signal interrupts the gate's sleep in the main
thread just as it interrupts a detect call, so the interrupted run is otherwise a real one.
"""

import sys
import time
from pathlib import Path

from livefaces.cli import main
from livefaces.detect import mtcnn

GATE_S = 60.0
index = Path(sys.argv[sys.argv.index("--out") + 1]) / "index.jsonl"
detect_batch = mtcnn.Detector.detect_batch
gated = False


def gated_detect_batch(self, images, **kw):
    global gated
    if not gated and index.exists() and index.stat().st_size > 0:
        gated = True
        deadline = time.monotonic() + GATE_S
        while time.monotonic() < deadline:
            time.sleep(0.01)
    return detect_batch(self, images, **kw)


mtcnn.Detector.detect_batch = gated_detect_batch
sys.exit(main(sys.argv[1:]))
