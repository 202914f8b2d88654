"""Write docs/config.schema.json, the JSON Schema of ``livefaces serve``'s config file.

The schema is generated from the one model the loader uses (``config_schema()`` in
livefaces/serve/config/schema.py), so run this after changing a setting; a test checks the
committed file equals what this writes.

    python scripts/make_config_schema.py           # (re)write docs/config.schema.json
    python scripts/make_config_schema.py --check   # exit 1 if the committed file is stale

Editors validate with it, e.g. VS Code's YAML extension: put
``# yaml-language-server: $schema=PATH/TO/config.schema.json`` at the top of the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "config.schema.json"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from livefaces.serve.config import config_schema

    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if it differs")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python scripts/make_config_schema.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
