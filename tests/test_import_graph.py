"""The imports inside ``spacelm`` run one way (STYLE.md section 1): no module reaches itself again
through the modules it imports, counting imports inside functions too (a lazy import hides a circle,
it does not remove it). The graph is read from the source with ``ast``; nothing is imported."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spacelm"
# Packages left out of the circle check (none: model/'s processing <-> modeling circle is gone, the point
# tokens live in model/point_tokens.py).
UNCHECKED: tuple[str, ...] = ()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: spacelm modules it imports}``; ``from pkg import sub`` counts as importing ``pkg.sub``."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def unchecked(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in UNCHECKED)


def test_the_graph_reader_finds_a_circle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert "spacelm.render.scene" in import_graph()["spacelm.render.builtin"]


def test_no_import_circles_outside_the_unchecked_packages():
    graph = import_graph()
    circles = [c for c in cycles(graph) if not all(unchecked(m) for m in c)]
    assert not circles, circles


@pytest.mark.parametrize("light", ["spacelm", "spacelm.scene", "spacelm.points", "spacelm.train"])
def test_light_packages_do_not_reach_torch_at_import_time(light):
    # Module-level imports only: what `import <light>` runs.
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    seen, todo = set(), [light]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(modules[name].read_text(encoding="utf-8"))
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), (name, names)
            todo += [n for n in names if n in modules]
            todo += [".".join(n.split(".")[:i]) for n in names for i in range(2, n.count(".") + 1)
                     if ".".join(n.split(".")[:i]) in modules]
