"""``python -m livefaces`` for the Ctrl-C tests of ``extract``, with one gate added: once the
output's ``index.jsonl`` has a line, the run waits there (at most 60 s), on its main thread,
before its next step: the next detect batch (single machine) or the next result it commits
(``--ray``: the driver's ledger; the workers are other processes and run on).

The tests (conftest.interrupt_extract) press Ctrl-C when they see that line, or later.
Without the gate the run could end before the signal arrives when the test process is
scheduled late (a 240-frame clip takes ~2 s on a fast CPU): a race in the test, not in
livefaces. The signal interrupts the gate's sleep on the main thread just as it interrupts a
detect call or the driver's wait for results, so the interrupted run is otherwise a real one.
"""

import functools
import sys
import time
from pathlib import Path

from livefaces.cli import main
from livefaces.detect import mtcnn
from livefaces.extract import parts

GATE_S = 60.0
index = Path(sys.argv[sys.argv.index("--out") + 1]) / "index.jsonl"
held = False


def gated(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        global held
        if not held and index.exists() and index.stat().st_size > 0:
            held = True
            deadline = time.monotonic() + GATE_S
            while time.monotonic() < deadline:
                time.sleep(0.01)
        return method(*args, **kwargs)
    return wrapper


mtcnn.Detector.detect_batch = gated(mtcnn.Detector.detect_batch)
parts.Ledger.add = gated(parts.Ledger.add)
sys.exit(main(sys.argv[1:]))
