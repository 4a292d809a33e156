"""The floors of docs/architecture.md hold: every import statement under lmaload/ (under
TYPE_CHECKING and inside functions too) goes to the importer's floor or one below, every module
stands on a floor, and the modules import each other without a cycle."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lmaload"
FLOORS_RE = re.compile(r"<!-- floors:.*?-->\n(.*?)<!-- /floors -->", re.DOTALL)


def floors() -> list[list[str]]:
    """The floors as the doc lists them, bottom first: each a list of names (globs allowed)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    match = FLOORS_RE.search(text)
    assert match, "docs/architecture.md has no <!-- floors --> list"
    items = [line for line in match.group(1).splitlines() if re.match(r"\d+\. ", line)]
    return [re.findall(r"`([^`]+)`", item) for item in items]


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The lmaload modules that ``name`` imports, each resolved to the longest known module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    return found


def unit(name: str) -> str:
    """The name a module has in the floors: its top-level module or package under lmaload."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def floor_of(name: str, levels: list[list[str]]) -> int | None:
    for level, names in enumerate(levels):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in names):
            return level
    return None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_stands_on_a_floor() -> None:
    levels = floors()
    missing = sorted({unit(m) for m in modules() if floor_of(unit(m), levels) is None})
    assert not missing, f"not on any floor of docs/architecture.md: {missing}"


def test_no_import_reaches_up_a_floor() -> None:
    levels = floors()
    upward = []
    for importer, targets in graph().items():
        own = floor_of(unit(importer), levels)
        for target in targets:
            there = floor_of(unit(target), levels)
            if own is not None and there is not None and there > own:
                upward.append(f"{importer} (floor {own + 1}) imports {target} (floor {there + 1})")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle() -> None:
    """No cycle between modules (a submodule naming its own enclosing package aside: Python has
    that package half-initialised by then), nor between the top-level units of the floors."""
    edges = {
        name: {t for t in targets if t != name and not name.startswith(t + ".")}
        for name, targets in graph().items()
    }
    units: dict[str, set[str]] = {}
    for name, targets in edges.items():
        units.setdefault(unit(name), set()).update(
            unit(t) for t in targets if unit(t) != unit(name)
        )
    for nodes in (edges, units):
        cycle = find_cycle(nodes)
        assert cycle is None, " -> ".join(cycle or [])


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``edges`` as the list of its nodes (first repeated last), or None."""
    done: set[str] = set()
    for start in sorted(edges):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(edges.get(start, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def test_the_checks_see_an_upward_import_and_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    levels = floors()
    assert floor_of("wire", levels) < floor_of("protocol", levels) < floor_of("cli", levels)  # type: ignore[operator]
    assert floor_of("bench_raw", levels) == floor_of("run", levels)
