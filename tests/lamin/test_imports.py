"""``annshard.lamin`` has no import cycle, small modules, and the plugin wherever it is documented.

The import graph is read from the source (imports inside functions count, ``if TYPE_CHECKING:`` blocks do not).
The subprocess tests import each module first, in a fresh interpreter, then the rest, and check that
``ln.Collection.loader`` is annshard's; once with annshard's ``lamindb_setup.on_import`` entry point hidden
(a source tree on ``PYTHONPATH``: the plugin then comes from ``import annshard.lamin`` alone), and once as
installed, for the modules of the former cycle ``_instance -> _plugin -> _register -> _instance``.
"""

from __future__ import annotations

import ast
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import annshard
from annshard.lamin import register

from .conftest import make_collection, run_python

SRC = Path(annshard.__file__).resolve().parent
LAMIN = SRC / "lamin"
MODULES = sorted(p.stem for p in LAMIN.glob("*.py") if p.stem != "__init__")
FORMER_CYCLE = ["_instance", "_plugin", "_register"]

# lamindb-setup binds ``importlib.metadata.entry_points`` when it is imported: hide annshard's entry point first
HIDE_ENTRY_POINT = """
import importlib.metadata as md
_entry_points = md.entry_points
def entry_points(**kw):
    eps = _entry_points(**kw)
    if kw.get("group") == "lamindb_setup.on_import":
        return md.EntryPoints(ep for ep in eps if not ep.value.startswith("annshard."))
    return eps
md.entry_points = entry_points
"""


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """``module -> the annshard modules it imports``, for every module under ``src/annshard``."""
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in paths)
                continue
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                edges.add(target if target in paths else base)
        graph[name] = {e for e in edges if e in paths and e != name}
    return graph


def cycles_through(graph: dict[str, set[str]], prefix: str) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component that touches ``prefix``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    out = []
    for component in components:
        if not any(m == prefix or m.startswith(prefix + ".") for m in component):
            continue
        start = min(component)
        path, seen = [start], {start}
        while True:  # walk inside the component until a module repeats
            nxt = min(w for w in graph[path[-1]] if w in component)
            path.append(nxt)
            if nxt in seen:
                break
            seen.add(nxt)
        out.append(path[path.index(path[-1]) :])
    return out


def test_no_import_cycle_through_annshard_lamin():
    graph = import_graph()
    assert "annshard.lamin._plugin" in graph["annshard.lamin"]  # the reader sees what it should
    assert "annshard.lamin._open" in graph["annshard.lamin._plugin"]  # an import inside a function
    assert "annshard._load._loader" not in graph["annshard.lamin._open"]  # an import under TYPE_CHECKING
    found = cycles_through(graph, "annshard.lamin")
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_cycle_reader_finds_a_cycle():
    """The reader is not blind: the former cycle, as a graph, is found."""
    graph = {
        "annshard.lamin._instance": {"annshard.lamin._plugin"},
        "annshard.lamin._plugin": {"annshard.lamin._register"},
        "annshard.lamin._register": {"annshard.lamin._instance", "annshard._store._collection"},
        "annshard._store._collection": set(),
    }
    assert cycles_through(graph, "annshard.lamin") == [
        ["annshard.lamin._instance", "annshard.lamin._plugin", "annshard.lamin._register", "annshard.lamin._instance"]
    ]


def test_lamin_modules_are_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in LAMIN.glob("*.py")}
    assert max(sizes.values()) <= 450, sizes


def _imports_then(first: str) -> str:
    rest = [m for m in MODULES if m != first]
    return f"import annshard.lamin.{first}\n" + "".join(f"import annshard.lamin.{m}\n" for m in rest)


_WITHOUT_ENTRY_POINT = """
import sys
early = sorted(m for m in ("lamindb", "lamindb_setup", "torch") if m in sys.modules)
assert not early, f"imported by annshard.lamin: {early}"
import lamindb as ln
from annshard.lamin._plugin import loader
assert ln.Collection.loader is loader, "no loader() on ln.Collection"
from annshard.lamin._instance import require_instance
from lamindb_setup.core._settings_instance import InstanceSettings
assert require_instance().slug == ln.setup.settings.instance.slug
assert getattr(InstanceSettings.__dict__["is_on_hub"].fget, "__annshard_offline__", False), "no offline patch"
print("ok")
"""

_AS_INSTALLED = """
import lamindb as ln
from annshard.lamin._instance import require_instance
require_instance()
loader = ln.Collection.get(key={key!r}).loader(batch_size=64)
print("rows", sum(b.n_obs for b in loader))
"""


@pytest.fixture(scope="module")
def registered(lamin_root):
    coll = make_collection(lamin_root / "imports" / "coll.zarr", n_obs_per_shard=64)
    return register(coll, key="test/imports")


@pytest.fixture(scope="module")
def fresh(registered, subprocess_env):
    """Every fresh interpreter of this module's cases, run side by side: ``{(case, first): Future}``.

    Each is its own process with its own import order; as many run at once as there are cores, while this
    process only waits (each case alone is ~12 s of imports).
    """
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {}
        for first in FORMER_CYCLE:
            code = HIDE_ENTRY_POINT + _imports_then(first) + _WITHOUT_ENTRY_POINT
            futures["hidden", first] = pool.submit(run_python, code, env=subprocess_env)
            code = _imports_then(first) + _AS_INSTALLED.format(key=registered.key)
            futures["installed", first] = pool.submit(run_python, code, env=subprocess_env)
        yield futures
        pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("first", FORMER_CYCLE)
def test_plugin_from_package_import_without_entry_point(first, fresh):
    """Without the entry point, importing a module first installs ``.loader()``; nothing imports lamindb early.

    The modules of the former cycle are the ones whose import order mattered (each case is a fresh interpreter
    that imports lamindb, ~12 s; every other module is imported right after them in each case).
    """
    result = fresh["hidden", first].result()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ok"


@pytest.mark.parametrize("first", FORMER_CYCLE)
def test_loader_after_importing_a_former_cycle_module_first(first, registered, fresh):
    """As installed: import a module of the former cycle first, require the instance, then ``.loader()`` works."""
    result = fresh["installed", first].result()
    assert result.returncode == 0, result.stderr[-3000:]
    n = registered.meta_artifact.features.get_values()["annshard_n_obs"]
    assert result.stdout.strip().splitlines()[-1] == f"rows {n}"
