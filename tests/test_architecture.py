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


def _import_target(node: ast.ImportFrom, package: list[str]) -> str:
    """The absolute module an ``from X import ...`` in ``package`` names (relative levels
    resolved)."""
    if node.level:
        base = package[: len(package) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


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
                target = _import_target(node, package)
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


def _module_level_imports() -> dict[str, set[str]]:
    """module -> the livefaces modules it imports outside any function body (at the top, in
    ``if TYPE_CHECKING:`` and in ``try:`` blocks), each resolved to a module of the package
    (``from livefaces.types import Faces`` -> ``livefaces.types``; ``from . import x``
    -> ``livefaces.<package>.x`` when ``x`` is a module, else the package)."""
    modules: dict[str, tuple[Path, list[str]]] = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        name_parts = parts[:-1] if is_pkg else parts
        modules[".".join(name_parts)] = (path, name_parts if is_pkg else name_parts[:-1])

    def resolve(target: str) -> str:
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]
        return target

    def outside_functions(node: ast.AST):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            yield child
            yield from outside_functions(child)

    out: dict[str, set[str]] = {}
    for module, (path, package) in modules.items():
        found: set[str] = set()
        for node in outside_functions(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _import_target(node, package)
                if not target.startswith("livefaces"):
                    continue
                names = [f"{target}.{a.name}" for a in node.names]
                found.update(resolve(n) for n in names)
            elif isinstance(node, ast.Import):
                found.update(resolve(a.name) for a in node.names if a.name.startswith("livefaces"))
        out[module] = found - {module}
    return out


def test_no_import_cycle_anywhere_in_the_package():
    """Module-level imports (including those under ``if TYPE_CHECKING:``: a type is a
    dependency too) form no cycle, so every module can be read and loaded bottom up.

    Imports inside a function body are left out: they run when the function is called,
    after every module has loaded, and are kept for optional extras and heavy libraries
    (``extract.job`` -> ``extract.cluster`` and Ray, ``pipeline`` -> ``identify.live``,
    the lazy ``livefaces.Pipeline``). They still obey the layer rules above."""
    graph = _module_level_imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan: strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
