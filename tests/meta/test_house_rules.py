"""House rules for the package's layout, checked on the source with ``ast`` (nothing is imported or run).

- No module over :data:`MAX_MODULE_LINES` lines, no function or method over :data:`MAX_FUNCTION_LINES` (from its
  ``def`` line to its last line): past that a reader cannot keep it in view.
- A private name (``_name``) stays in its module: no ``from .x import _name``, no ``x._name`` on an imported fcn
  module. What two modules share is public in one of them.
- ``fcn/ops/`` (the kernel tables) imports nothing else of fcn, and itself only relatively, so every other layer
  may build on it.
- No import cycles among fcn's modules, counting every import wherever it is: an import inside a function is a
  dependency too. Only ``if TYPE_CHECKING:`` blocks, which never run, are left out.

Each rule is one test per module, and a failure lists every offence as ``file:line``. The modules that break a
rule today are in :data:`KNOWN_OFFENDERS`, as strict expected failures: once a module is fixed its test passes,
which fails the run until the entry is removed.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 550
MAX_FUNCTION_LINES = 60
ISOLATED = "fcn.ops"


@dataclass(frozen=True)
class Module:
    name: str  # dotted: fcn.ops.cuda; a package by its own name (fcn.ops for fcn/ops/__init__.py)
    file: str  # relative to the root, as the messages print it
    is_package: bool
    tree: ast.Module
    lines: int

    def at(self, node: ast.AST) -> str:
        return f"{self.file}:{getattr(node, 'lineno', 1)}"


@dataclass(frozen=True)
class Import:
    node: ast.Import | ast.ImportFrom
    target: str  # the fcn module the statement makes Python run, and so depends on
    names: tuple[str, ...]  # ``from target import a, b``: the names taken from target; () for a module import


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class Source:
    """The modules of the ``fcn`` package under ``root``, with their imports and the import graph."""

    def __init__(self, root: Path) -> None:
        self.modules: dict[str, Module] = {}
        for path in sorted((root / "fcn").rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            text = path.read_text(encoding="utf-8")
            name, file = ".".join(parts), path.relative_to(root).as_posix()
            self.modules[name] = Module(name, file, is_package, ast.parse(text, file), len(text.splitlines()))

    def _base(self, module: Module, level: int) -> str:
        """The package a relative import with ``level`` dots starts from."""
        parts = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
        return ".".join(parts[: len(parts) - (level - 1)])

    @functools.cache  # noqa: B019 - one Source per run (a few in the self-tests): nothing to leak
    def imports(self, name: str) -> list[Import]:
        """Every import of an fcn module in module ``name``, at any depth, except under ``if TYPE_CHECKING:``.

        ``from P import n`` depends on the submodule ``P.n`` where there is one (Python imports it), else on
        ``P`` itself (``n`` is an attribute that P's ``__init__`` must already have set).
        """
        module, found = self.modules[name], []
        pending: list[ast.AST] = [module.tree]
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                pending.extend(node.orelse)  # the body never runs
                continue
            pending.extend(ast.iter_child_nodes(node))
            if isinstance(node, ast.Import):
                found += [Import(node, a.name, ()) for a in node.names if a.name.split(".")[0] == "fcn"]
            elif isinstance(node, ast.ImportFrom):
                source = ".".join(p for p in (self._base(module, node.level) if node.level else "", node.module) if p)
                if source.split(".")[0] != "fcn":
                    continue
                names = tuple(a.name for a in node.names)
                attributes = tuple(n for n in names if f"{source}.{n}" not in self.modules)
                found += [Import(node, f"{source}.{n}", ()) for n in names if n not in attributes]
                if attributes:
                    found.append(Import(node, source, attributes))
        return sorted(found, key=lambda imp: (imp.node.lineno, imp.target))

    @functools.cached_property
    def graph(self) -> dict[str, dict[str, list[str]]]:
        """``graph[a][b]``: the ``file:line`` of each import of module ``b`` in module ``a``."""
        graph: dict[str, dict[str, list[str]]] = {name: {} for name in self.modules}
        for name, module in self.modules.items():
            for imp in self.imports(name):
                if imp.target in graph and imp.target != name:
                    graph[name].setdefault(imp.target, []).append(module.at(imp.node))
        return graph

    @functools.cached_property
    def cycles(self) -> dict[str, frozenset[str]]:
        """For each module in an import cycle, the modules that import each other with it (its strongly
        connected component of the graph, by Tarjan's algorithm)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        found: dict[str, frozenset[str]] = {}

        def visit(node: str) -> None:
            index[node] = low[node] = len(index)
            stack.append(node)
            for nxt in self.graph[node]:
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                component = frozenset(stack[stack.index(node) :])
                del stack[stack.index(node) :]
                if len(component) > 1:
                    found.update(dict.fromkeys(component, component))

        for node in self.graph:
            if node not in index:
                visit(node)
        return found

    def module_names(self, name: str) -> dict[str, str]:
        """The local names module ``name`` binds to fcn modules (``import fcn.x as y``, ``from . import x``)."""
        bound = {}
        for imp in self.imports(name):
            for alias in imp.node.names:
                if isinstance(imp.node, ast.Import):
                    if alias.name == imp.target:  # `import fcn.x` binds fcn; `import fcn.x as y` binds fcn.x
                        bound[alias.asname or "fcn"] = imp.target if alias.asname else "fcn"
                elif imp.target.endswith(f".{alias.name}") and imp.target in self.modules and not imp.names:
                    bound[alias.asname or alias.name] = imp.target
        return bound


# -- the rules: each yields "file:line: what" for every offence in one module ---------------------------------


def module_size(source: Source, module: Module) -> Iterator[str]:
    if module.lines > MAX_MODULE_LINES:
        yield f"{module.file}:1: {module.lines} lines (at most {MAX_MODULE_LINES})"


def function_size(source: Source, module: Module) -> Iterator[str]:
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                yield f"{module.at(node)}: {node.name} has {length} lines (at most {MAX_FUNCTION_LINES})"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names(source: Source, module: Module) -> Iterator[str]:
    for imp in source.imports(module.name):
        if imp.target != module.name:
            for name in filter(_private, imp.names):
                yield f"{module.at(imp.node)}: imports {imp.target}.{name}, a private name of another module"
    bound = source.module_names(module.name)

    def named_module(node: ast.expr) -> str | None:
        """The fcn module that ``node`` (``x``, ``fcn.x.y``) stands for, if it stands for one."""
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute) and (parent := named_module(node.value)):
            return f"{parent}.{node.attr}" if f"{parent}.{node.attr}" in source.modules else None
        return None

    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = named_module(node.value)
            if owner is not None and owner != module.name:
                yield f"{module.at(node)}: uses {owner}.{node.attr}, a private name of another module"


def isolated_ops(source: Source, module: Module) -> Iterator[str]:
    for imp in source.imports(module.name):
        inside = imp.target == ISOLATED or imp.target.startswith(ISOLATED + ".")
        if not inside or isinstance(imp.node, ast.Import) or not imp.node.level:
            yield f"{module.at(imp.node)}: imports {imp.target} (fcn/ops/ imports only itself, relatively)"


def import_cycles(source: Source, module: Module) -> Iterator[str]:
    component = source.cycles.get(module.name, frozenset())
    others = ", ".join(sorted(component - {module.name}))
    for target, places in sorted(source.graph[module.name].items()):
        if target in component:
            for place in places:
                yield f"{place}: imports {target}, in an import cycle with {others}"


RULES: dict[str, Callable[[Source, Module], Iterator[str]]] = {
    "module-size": module_size,
    "function-size": function_size,
    "private-names": private_names,
    "isolated-ops": isolated_ops,
    "import-cycles": import_cycles,
}


def applies(rule: str, module: Module) -> bool:
    return rule != "isolated-ops" or module.name == ISOLATED or module.name.startswith(ISOLATED + ".")


# (rule, file): every offence the module has today. The reason lists them; the test must keep failing until they
# are all fixed, and then the entry goes.
KNOWN_OFFENDERS: dict[tuple[str, str], str] = {}

SOURCE = Source(ROOT)


def _cases() -> Iterator[object]:
    for rule in RULES:
        for module in SOURCE.modules.values():
            if applies(rule, module):
                reason = KNOWN_OFFENDERS.get((rule, module.file))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                yield pytest.param(rule, module.name, id=f"{rule}:{module.file}", marks=marks)


@pytest.mark.parametrize(("rule", "name"), list(_cases()))
def test_house_rule(rule, name):
    offences = list(RULES[rule](SOURCE, SOURCE.modules[name]))
    assert not offences, f"{rule} ({len(offences)}):\n" + "\n".join(offences)


def test_known_offenders_are_current_modules():
    files = {module.file for module in SOURCE.modules.values()}
    stale = [f"{rule}: {file}" for rule, file in KNOWN_OFFENDERS if rule not in RULES or file not in files]
    assert not stale, "remove these entries of KNOWN_OFFENDERS (no such rule or module any more): " + ", ".join(stale)


# -- the rules catch what they are meant to: a small package written for each test ----------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Source:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return Source(tmp_path)


def _offences(source: Source, rule: str) -> list[str]:
    return [o for m in source.modules.values() if applies(rule, m) for o in RULES[rule](source, m)]


def test_cycles_count_imports_in_functions_but_not_type_checking_blocks(tmp_path):
    source = _package(
        tmp_path,
        {
            "fcn/__init__.py": "from .a import f\n",
            "fcn/a.py": "def f():\n    from .b import g\n",
            "fcn/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import h\nimport fcn.a\n",
            "fcn/c.py": "from . import b\n",
        },
    )
    assert _offences(source, "import-cycles") == [
        "fcn/a.py:2: imports fcn.b, in an import cycle with fcn.b",
        "fcn/b.py:4: imports fcn.a, in an import cycle with fcn.a",
    ]
    assert set(source.cycles) == {"fcn.a", "fcn.b"}  # c imports b, but nothing that runs imports c back


def test_a_package_attribute_is_a_dependency_on_the_package(tmp_path):
    source = _package(
        tmp_path, {"fcn/__init__.py": "VERSION = 1\nfrom .a import f\n", "fcn/a.py": "from . import VERSION\n"}
    )
    assert _offences(source, "import-cycles") == [
        "fcn/__init__.py:2: imports fcn.a, in an import cycle with fcn.a",
        "fcn/a.py:1: imports fcn, in an import cycle with fcn",
    ]


def test_private_names_of_other_modules(tmp_path):
    source = _package(
        tmp_path,
        {
            "fcn/__init__.py": "__version__ = '1'\n",
            "fcn/a.py": "_x = 1\n__all__ = []\n",
            "fcn/sub/__init__.py": "",
            "fcn/sub/b.py": textwrap.dedent(
                """\
                import fcn.a
                import fcn.sub.b as me
                from .. import a as alias, __version__
                from ..a import _x, __all__
                from . import b

                fcn.a._x, alias._x, me._own, b._own, alias.__all__, alias.public
                """
            ),
        },
    )
    assert _offences(source, "private-names") == [
        "fcn/sub/b.py:4: imports fcn.a._x, a private name of another module",
        "fcn/sub/b.py:7: uses fcn.a._x, a private name of another module",
        "fcn/sub/b.py:7: uses fcn.a._x, a private name of another module",
    ]


def test_ops_import_only_themselves_relatively(tmp_path):
    source = _package(
        tmp_path,
        {
            "fcn/__init__.py": "",
            "fcn/backend.py": "",
            "fcn/ops/__init__.py": "from .k import f\n",
            "fcn/ops/k.py": "import numpy\nfrom .j import g\n\n"
            + "def f():\n    from ..backend import g\n    import fcn.ops.j\n",
            "fcn/ops/j.py": "from . import k\n",
        },
    )
    assert _offences(source, "isolated-ops") == [
        "fcn/ops/k.py:5: imports fcn.backend (fcn/ops/ imports only itself, relatively)",
        "fcn/ops/k.py:6: imports fcn.ops.j (fcn/ops/ imports only itself, relatively)",
    ]


def test_sizes(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))  # with its def: the most allowed
    source = _package(
        tmp_path,
        {
            "fcn/__init__.py": "",
            "fcn/a.py": f"def fits():\n{body}\n\nclass C:\n    @property\n    def too_long(self):\n"
            + textwrap.indent(body, "    ")
            + "        pass\n",
            "fcn/b.py": "x = 1\n" * (MAX_MODULE_LINES + 1),
        },
    )
    too_long = f"fcn/a.py:{MAX_FUNCTION_LINES + 5}: too_long has {MAX_FUNCTION_LINES + 1} lines"
    assert _offences(source, "function-size") == [f"{too_long} (at most {MAX_FUNCTION_LINES})"]
    assert _offences(source, "module-size") == [
        f"fcn/b.py:1: {MAX_MODULE_LINES + 1} lines (at most {MAX_MODULE_LINES})"
    ]
