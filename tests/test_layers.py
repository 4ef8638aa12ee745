"""The package's shape (issue 36): layers import only downwards, no import cycle between modules
(function-level imports included), no function over 80 lines and no module over 400."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "selfpowered"
# lowest first; a module may import its own layer and the ones before it, never one after
LAYERS = [
    {"atomic", "errors", "logs"},
    {"jsonl", "convert", "audio"},
    {"assets"},
    {"cards"},
    {"text"},  # instruction libraries, metrics, the echo and loop rules: what augment and evaluate share
    {"config"},
    {"model"},
    {"corpus"},
    {"augment", "train", "evaluate", "serve", "chat"},  # the stages: peers, never importing each other
    {"demo", "cli", "__init__", "__main__"},
]
STAGES = len(LAYERS) - 2


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("selfpowered", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text())
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node but what sits under `if TYPE_CHECKING:` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(tree: ast.Module) -> set[str]:
    out = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selfpowered"):
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("selfpowered"))
    return out


def _rank(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def test_layers_import_only_downwards_and_stages_do_not_import_each_other():
    modules = _modules()
    problems = []
    for name, tree in modules.items():
        mine = _package(name)
        for target in _imports(tree):
            if target not in modules:
                continue
            theirs = _package(target)
            if theirs == mine:
                continue
            if _rank(theirs) > _rank(mine) or (_rank(theirs) == _rank(mine) == STAGES):
                problems.append(f"{name} -> {target}")
    assert not problems, problems


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {name: {t for t in _imports(tree) if t in modules and t != name} for name, tree in modules.items()}
    for package in [n for n in modules if n.count(".") == 1 and (SRC / n.split(".")[1]).is_dir()]:
        for name in graph:  # a package's __init__ re-exporting its modules is not a cycle
            graph[name].discard(package)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_no_function_over_80_lines_and_no_module_over_400():
    long = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 400:
            long.append(f"{path.relative_to(SRC)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1}")
    assert not long, long
