"""The package's shape: a documented, sorted public surface; a light import; no import cycles; small modules.

Everything here reads the source tree or runs a fresh interpreter; nothing is mocked.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "annshard"
API = ROOT / "docs" / "api.md"

PUBLIC = ["annshard", "annshard.samplers", "annshard.testing", "annshard.lamin", "annshard.lightning", "annshard.scvi"]
"""Every public module (``annshard.scvi`` where it exists)."""

HEAVY = (
    "torch",
    "cupy",
    "lamindb",
    "lightning",
    "distributed",
    "obstore",
    "moto",
    "scvi",
)  # not dask: anndata imports dask.array when installed
MAX_MODULE_LINES = 450
MAX_LOADER_LINES = 250


def _public_modules() -> list[str]:
    return [m for m in PUBLIC if importlib.util.find_spec(m) is not None]


def _static_all(module: str) -> list[str]:
    """``__all__`` as written in the module's source (no import: annshard.lightning would import lightning)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    pytest.fail(f"{module} ({spec.origin}) has no __all__")


def _documented() -> tuple[set[tuple[str, str]], str]:
    """``(module, name)`` of every autosummary entry in docs/api.md, and the page's text."""
    text = API.read_text()
    entries: set[tuple[str, str]] = set()
    module = None
    in_summary = False
    for line in text.splitlines():
        m = re.match(r"\.\. (?:current)?module:: (\S+)", line.strip())
        if m:
            module, in_summary = m.group(1), False
            continue
        if line.strip().startswith(".. autosummary::"):
            in_summary = True
            continue
        if in_summary:
            item = line.strip()
            if not item or item.startswith(":"):
                continue
            if line.startswith("   ") and module is not None and re.fullmatch(r"[A-Za-z_][\w.]*", item):
                entries.add((module, item))
            else:
                in_summary = False
    return entries, text


# -- (a) the public surface --------------------------------------------------------------------------
@pytest.mark.parametrize("module", _public_modules())
def test_every_public_name_is_documented(module):
    entries, text = _documented()
    names = _static_all(module)
    missing = [
        n
        for n in names
        if (module, n) not in entries  # an autosummary entry under its module
        and f"`{module}.{n}`" not in text  # or named in full in the text (``annshard.__version__``)
        and not any(mod == f"{module}.{n}" for mod, _ in entries)  # or a subpackage with a section of its own
    ]
    assert not missing, f"{module}.__all__ names {missing}, which docs/api.md does not document"


@pytest.mark.parametrize("module", _public_modules())
def test_every_all_is_sorted(module):
    names = _static_all(module)
    assert names == sorted(names), f"{module}.__all__ is not sorted: {names}"
    assert len(set(names)) == len(names), f"{module}.__all__ names something twice"


@pytest.mark.parametrize("module", ["annshard", "annshard.samplers", "annshard.testing"])
def test_every_public_name_resolves(module):
    mod = importlib.import_module(module)
    assert list(mod.__all__) == _static_all(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"


def test_public_types_are_the_ones_users_receive(tmp_path):
    import annshard
    from annshard.testing import make_adata

    adata = make_adata(300, 40, nnz_per_cell=8)
    adata.layers["counts"] = adata.X.copy()
    annshard.write_collection([adata], tmp_path / "c.zarr", layers=["counts"])
    collection = annshard.open_collection(tmp_path / "c.zarr")
    assert isinstance(collection.manifest, annshard.Manifest)
    assert isinstance(collection.manifest.storage, annshard.StorageSpec)
    assert all(isinstance(s, annshard.ShardInfo) for s in collection.shards)
    assert all(isinstance(s, annshard.SourceInfo) for s in collection.sources)
    assert all(isinstance(c, annshard.ObsColumn) for c in collection.obs_columns.values())
    assert [type(m) for m in collection.manifest.matrices] == [annshard.MatrixSpec]
    loader = annshard.Loader(collection, batch_size=64)
    assert isinstance(loader.world(), annshard.World)
    assert isinstance(loader.stream(0), annshard.EpochStream)
    assert isinstance(next(iter(loader)), annshard.Batch)


def test_no_docstring_points_at_a_private_path_of_a_public_type():
    import annshard

    public_types = [n for n in annshard.__all__ if n[:1].isupper()]
    pattern = re.compile(r"annshard\.(?:_\w+\.)+(" + "|".join(public_types) + r")\b")
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in [*SRC.rglob("*.py"), API, ROOT / "docs" / "design.md"]
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith(("from ", "import "))
    ]
    assert not hits, "use the public names (annshard.StorageSpec, ...):\n" + "\n".join(hits)


# -- (b) a light import ------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["annshard", "annshard.testing"])
def test_import_is_light(module):
    code = (
        f"import json, sys\nimport {module}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == [], f"import {module} imports {heavy}"


# -- (c) no import cycle -----------------------------------------------------------------------------
def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str], src: Path = SRC) -> set[str]:
    """The annshard modules ``path`` imports, anywhere but in ``if TYPE_CHECKING:`` blocks (function bodies count)."""
    name = _module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def target(base: str, attr: str | None) -> None:
        if attr is not None and f"{base}.{attr}" in modules:
            found.add(f"{base}.{attr}")
        elif base in modules:
            found.add(base)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target(alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                target(base, alias.name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def _cycles() -> list[list[str]]:
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {m: _imports(p, set(paths)) for m, p in paths.items()}
    # strongly connected components (Tarjan), each one with more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def test_no_import_cycle():
    cycles = _cycles()
    assert not cycles, "import cycles among src/annshard modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_function_level_imports(tmp_path):
    # the checker itself: a cycle closed by an import inside a function counts, one under TYPE_CHECKING does not
    pkg = tmp_path / "annshard"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from annshard.a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n")
    modules = {"annshard", "annshard.a", "annshard.b", "annshard.c"}
    assert _imports(pkg / "a.py", modules, pkg) == {"annshard.b"}
    assert _imports(pkg / "b.py", modules, pkg) == {"annshard.a"}
    assert _imports(pkg / "c.py", modules, pkg) == set()


# -- (d), (e) small modules, a small Loader ----------------------------------------------------------
def test_no_module_over_450_lines():
    big = {
        str(p.relative_to(ROOT)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_loader_class_under_250_lines():
    sizes = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name == "Loader":
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                sizes[str(path.relative_to(ROOT))] = node.end_lineno - start + 1
    assert sizes, "no class Loader under src/annshard"
    assert all(n < MAX_LOADER_LINES for n in sizes.values()), f"Loader is {sizes} lines (limit {MAX_LOADER_LINES})"


# -- py.typed ----------------------------------------------------------------------------------------
def test_py_typed_ships():
    assert (SRC / "py.typed").is_file()


def test_design_package_table_matches_the_tree():
    """Every module and subpackage directly under ``src/annshard`` has a row in docs/design.md's package table, and
    every row names something that exists."""
    text = (ROOT / "docs" / "design.md").read_text()
    table = text.split("## Package layout", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| `") and line.count("|") >= 3
    }
    named = {name.strip("`") for row in rows for name in row.split(", ")}
    tree = {p.name + ("/" if p.is_dir() else "") for p in SRC.iterdir() if p.name != "__pycache__"}
    tree -= {"__init__.py", "py.typed"}
    top = {n.split("/", 1)[0] + "/" if "/" in n.rstrip("/") else n for n in named}
    assert tree <= top, f"modules missing from docs/design.md's package table: {sorted(tree - top)}"
    for name in named:
        assert (SRC / name.rstrip("/")).exists(), f"docs/design.md's package table names {name}, which does not exist"


# -- benchmark scripts -------------------------------------------------------------------------------
def test_no_benchmark_script_shadows_an_installed_module():
    # `python benchmarks/x.py` puts benchmarks/ first on sys.path: a script named like a package
    # (benchmarks/distributed.py once did) replaces that package for every import in the process
    import importlib.util
    import sys

    bench = ROOT / "benchmarks"
    path = [p for p in sys.path if Path(p or ".").resolve() != bench.resolve()]
    shadowed = [
        p.name
        for p in sorted(bench.glob("*.py"))
        if importlib.machinery.PathFinder.find_spec(p.stem, path) is not None or p.stem in sys.builtin_module_names
    ]
    assert not shadowed, f"benchmark scripts named like installed modules: {shadowed}"
