"""The import rules of docs/architecture.md, checked on the source (no module is imported).

Layers, bottom up: ground floor, toolbox (pure functions over the ground types), adapters (one
third-party library each), features (meet only through the layers below), composition roots.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "livefaces"

GROUND = {"types", "errors", "ringbuffer", "meter", "geometry", "redact", "specs", "outfile",
          "detect.options"}  # plain settings data (imports errors only), kept beside the engines
TOOLBOX = {"render", "align", "blur"}
ADAPTERS = {"avio", "imageio", "window"}
ROOTS = {"pipeline", "cli", "extract", "__main__", "", "serve.app"}
_NAMED = ROOTS | GROUND  # groups spelled with a dot


def _group(module: str) -> str:
    """``livefaces.serve.app`` -> ``serve.app`` for roots named that way, else the top name."""
    parts = module.split(".")[1:]
    if ".".join(parts[:2]) in _NAMED:
        return ".".join(parts[:2])
    return parts[0] if parts else ""


def _imports() -> dict[str, set[str]]:
    """module -> the livefaces modules it imports (``from . import x`` resolved)."""
    out: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        module = ".".join(parts)
        package = parts if is_pkg else parts[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("livefaces"):
                    continue
                if node.module:
                    found.add(target)
                else:  # from . import x: x is a module of that package
                    found.update(f"{target}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("livefaces"))
        out[module] = found
    return out


def _level(group: str) -> str:
    if group in GROUND:
        return "ground"
    if group in TOOLBOX:
        return "toolbox"
    if group in ADAPTERS:
        return "adapter"
    if group in ROOTS:
        return "root"
    return "feature"


ALLOWED = {
    "ground": {"ground"},
    "toolbox": {"ground"},
    "adapter": {"ground"},
    "feature": {"ground", "toolbox", "adapter"},
    "root": {"ground", "toolbox", "adapter", "feature", "root"},
}


def test_imports_point_down_and_features_meet_only_through_lower_layers():
    broken = []
    for module, targets in sorted(_imports().items()):
        g = _group(module)
        for t in sorted(targets):
            tg = _group(t)
            if tg == g or t in ("livefaces", "livefaces.__version__"):  # one group; the version
                continue
            if _level(tg) not in ALLOWED[_level(g)]:
                broken.append(f"{module} ({_level(g)}) imports {t} ({_level(tg)})")
    assert not broken, "\n".join(broken)


def test_every_module_is_in_a_layer_the_map_names():
    doc = (PKG.parent / "docs" / "architecture.md").read_text()
    for module in _imports():
        g = _group(module)
        if g and not g.startswith("__"):
            assert f"`{g.split('.')[0]}" in doc, f"{module}: its group {g} is not in docs/architecture.md"
