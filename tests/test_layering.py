"""The package layers: imports point downwards only, and the pure layers do no I/O.

Order, lowest first: shared leaf modules (errors, sections, console); model, optim,
batching, theory (pure computation); data (corpora, I/O); config; train; cbs;
cli on top. A package may import its own layer and those below, never above.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bsjax"
LEAVES = {"errors", "sections", "console", "__init__", "__main__"}
LAYER = {"model": 1, "optim": 1, "batching": 1, "theory": 1, "data": 2, "config": 3}
LAYER.update(storage=2, train=4, cbs=5, cli=6)
PURE = ("model", "optim", "batching", "theory")
# theory/plots.py draws the theory lab's figures; it belongs with the experiments, and until it
# moves it is the one pure-layer module allowed matplotlib.
ALLOWED_IO = {"theory/plots.py"}
IO_LIBRARIES = ("tensorflow", "tensorflow_datasets", "clu", "orbax", "matplotlib", "grain")


def _part(module: str) -> str:
    """The top-level part of ``bsjax`` a dotted module belongs to."""
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _edges() -> dict[str, set[str]]:
    """part -> the parts its modules import (top-level parts of bsjax)."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in LEAVES:
            continue
        own = parts[0]
        for name in _imports(path):
            other = _part(name) if name.startswith("bsjax.") else None
            if other and other != own and other not in LEAVES and _is_part(other):
                edges.setdefault(own, set()).add(other)
    return edges


def _is_part(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()


def _layer(part: str) -> int:
    # New top-level helpers of the CLI (help, dry runs) sit with it on top.
    return LAYER.get(part, LAYER["cli"])


def test_every_import_points_to_the_same_or_a_lower_layer():
    upward = [f"{a} -> {b}" for a, bs in _edges().items() for b in bs if _layer(b) > _layer(a)]
    assert upward == []


def test_the_package_graph_is_acyclic():
    edges = _edges()
    seen, on_path = set(), []

    def visit(node):
        assert node not in on_path, f"import cycle: {' -> '.join(on_path + [node])}"
        if node in seen:
            return
        on_path.append(node)
        for other in sorted(edges.get(node, ())):
            visit(other)
        on_path.pop()
        seen.add(node)

    for node in sorted(edges):
        visit(node)


def test_pure_layers_import_no_io_library():
    found = []
    for part in PURE:
        paths = [PACKAGE / f"{part}.py"] if (PACKAGE / f"{part}.py").exists() else []
        paths += sorted((PACKAGE / part).rglob("*.py")) if (PACKAGE / part).is_dir() else []
        for path in paths:
            for name in _imports(path):
                rel = str(path.relative_to(PACKAGE))
                if name.split(".")[0] in IO_LIBRARIES and rel not in ALLOWED_IO:
                    found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert found == []
