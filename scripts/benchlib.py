"""What every benchmark script shares: the machine's name and writing its section of
docs/benchmarks.md. Scripts run as ``python scripts/NAME.py``, so this folder is on the path."""
from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, as lscpu shows it), else what platform knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def replace_section(bench: Path, marker: str, table: str) -> None:
    """Put ``table`` (which starts with the heading ``marker``) in place of that section of
    ``bench`` (up to the next ``## `` heading), or at its end when there is none."""
    text = bench.read_text() if bench.exists() else "# Benchmarks\n"
    if marker in text:
        head, _, rest = text.partition(marker)
        nxt = rest.find("\n## ")
        text = head + table + (rest[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + table
    bench.write_text(text)
