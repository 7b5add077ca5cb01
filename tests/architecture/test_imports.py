"""Herald's import graph, read from the source (every import, type-only ones included), and its
use of libraries' private attributes.

Three rules for the wiring: only the entry points build and use the running Herald
(`herald.runtime`, the composition root), everything below them is handed what it uses; a
library's underscore attributes are used in one adapter per library (ADAPTERS), where a change
of the library shows up in one place; and Herald's packages import each other in one direction,
without circles (type-only and function-level imports count: a circle hidden behind
TYPE_CHECKING is still one a reader must hold in their head). Where a lower package needs
something of a higher one, it names what it needs as a Protocol and the composition root hands
it in (e.g. herald.accounts.sessions.SessionSockets).
"""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterator
from pathlib import Path

import herald

SOURCE = Path(herald.__file__).parent
RUNTIME = "herald.runtime"
# The composition root's callers: the command line, the assembled ASGI app, the bench.
ENTRY_POINTS = {"herald.cli", "herald.server.app", "herald.bench.stack"}


def modules() -> dict[str, Path]:
    """Every Herald module by dotted name (a package by its own name, for its __init__)."""
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(path: Path) -> Iterator[str]:
    """Every dotted name this file imports anywhere (top level, functions, TYPE_CHECKING):
    `from a.b import c` gives `a.b.c`, which may name a module or something inside `a.b`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Herald module -> the Herald modules it imports."""
    known = modules()

    def module_of(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = {module_of(n) for n in imported_names(path) if n.startswith("herald.")}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


# Not in the README's code map: the entry module, the table of every model for migrations.
UNMAPPED = {"herald.__main__", "herald.cli", "herald.models"}
# The one module (or package) per library that may use its internals, each saying why.
ADAPTERS = {
    "herald.realtime.adapter": "python-socketio and python-engineio",
    "herald.delivery.bullmq_clients": "BullMQ-Python's worker",
    "herald.core.redis": "redis-py's connection pool",
}
# Public despite the underscore: namedtuple's methods, SQLAlchemy's Row mapping.
PUBLIC_UNDERSCORED = {"_asdict", "_replace", "_make", "_fields", "_mapping"}


def defined_names(paths: list[Path]) -> set[str]:
    """Every name Herald's own source defines: functions, classes, arguments, and whatever is
    assigned (variables and attributes alike)."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return names


def foreign_private_uses(path: Path, ours: set[str]) -> Iterator[str]:
    """`x._name` in this file where `_name` is not one of Herald's own: a library's private
    attribute (method calls on a subclass's `self` included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            name = node.attr
            private = name.startswith("_") and not name.endswith("__")
            if private and name not in ours and name not in PUBLIC_UNDERSCORED:
                yield f"{path.name}:{node.lineno} .{name}"


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def in_circles(graph: dict[str, set[str]]) -> set[str]:
    """The nodes that lie on a circle of `graph` (members of a strongly connected component
    of more than one node), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circled: set[str] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circled.update(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circled


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = collections.defaultdict(set)
    for module, targets in graph.items():
        packages[package_of(module)].update(
            package_of(t) for t in targets if package_of(t) != package_of(module)
        )
    return packages


def test_only_the_entry_points_import_the_runtime() -> None:
    importers = {m for m, targets in import_graph().items() if RUNTIME in targets}
    assert importers - ENTRY_POINTS == set(), "hand these modules what they use, not the Herald"


def test_no_packages_import_each_other_in_a_circle() -> None:
    circled = in_circles(package_graph(import_graph()))
    assert circled == set(), "these packages import each other in a circle"


def test_only_the_adapter_uses_libraries_private_attributes() -> None:
    known = modules()
    ours = defined_names(list(known.values()))
    found = [
        use
        for name, path in known.items()
        if not any(name == a or name.startswith(a + ".") for a in ADAPTERS)
        for use in foreign_private_uses(path, ours)
    ]
    assert found == [], "use a public API, or move these into the library's adapter"


def test_the_private_attribute_check_sees_a_library_attribute(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "class Mine:\n"
        "    def _own(self): return self._state\n"
        "    def go(self, sio, row):\n"
        "        self._state = row._mapping\n"
        "        return sio._trigger_event('x'), self._redis_connect(), self._own()\n"
    )
    ours = defined_names([source])
    assert sorted(u.split(" ")[1] for u in foreign_private_uses(source, ours)) == [
        "._redis_connect",
        "._trigger_event",
    ]


def test_the_readme_code_map_names_every_package_bottom_up() -> None:
    """The README's code map lists every package (and top-level module) of Herald, each below
    the ones it imports: a newcomer can read it top down."""
    text = (SOURCE.parent / "README.md").read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `herald/([a-z_]+)(?:\.py)?` \|", section, re.MULTILINE)
    order = [f"herald.{row}" for row in rows]
    packages = package_graph(import_graph())
    shown = {p for p in packages if p != "herald" and p not in UNMAPPED}
    assert shown - set(order) == set(), "add these to the README's code map"
    position = {p: i for i, p in enumerate(order)}
    upward = [
        (p, t) for p in order for t in packages.get(p, ()) if position.get(t, -1) > position[p]
    ]
    assert upward == [], "these import a package listed below them in the code map"


class TestTheGraphReader:
    """The checks above are only as good as the reading of the source they rest on."""

    def test_reads_type_only_and_function_level_imports(self, tmp_path: Path) -> None:
        source = tmp_path / "module.py"
        source.write_text(
            "from typing import TYPE_CHECKING\n"
            "import herald.core.db\n"
            "if TYPE_CHECKING:\n"
            "    from herald.runtime import Herald\n"
            "def later():\n"
            "    from herald.delivery import queues\n"
        )
        assert set(imported_names(source)) == {
            "typing.TYPE_CHECKING",
            "herald.core.db",
            "herald.runtime.Herald",
            "herald.delivery.queues",
        }

    def test_from_imports_resolve_to_the_module_that_holds_the_name(self) -> None:
        graph = import_graph()
        # `from herald.core.config import Settings` is an import of herald.core.config;
        # `from herald.notifications import unsubscribe` one of herald.notifications.unsubscribe.
        assert "herald.core.config" in graph["herald.runtime"]
        assert "herald.notifications.unsubscribe" in graph["herald.runtime"]
        assert RUNTIME in graph["herald.cli"]  # imported inside its commands

    def test_finds_circles_and_only_circles(self) -> None:
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
        assert in_circles(graph) == {"a", "b", "c"}
        assert in_circles({"a": {"b"}, "b": set()}) == set()
