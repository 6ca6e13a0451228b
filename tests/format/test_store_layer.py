"""The store layer's shape: it never imports the writer, loader or lamin; every rename in ``src`` is in ``_atomic``."""

from __future__ import annotations

import ast
from pathlib import Path

import annshard
from annshard._store._collection import Collection

SRC = Path(annshard.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, in functions too (``TYPE_CHECKING`` blocks excluded), as absolute names."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)

    Visitor().visit(ast.parse(path.read_text()))
    return found


def test_the_store_never_imports_the_writer_the_loader_or_lamin():
    upward = ("annshard._write", "annshard.lamin", "annshard._load._loader", "annshard._load")
    offending = {
        str(p.relative_to(SRC)): sorted(m for m in _imports(p) if m.startswith(upward))
        for p in sorted((SRC / "_store").glob("*.py"))
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_a_collection_is_read_only_and_appending_is_a_function():
    assert not hasattr(Collection, "append")
    assert "append_collection" in annshard.__all__
    from annshard._write import append_collection

    assert annshard.append_collection is append_collection


def test_every_rename_in_src_is_in_the_atomic_module():
    renames = {}
    for path in sorted(SRC.rglob("*.py")):
        calls = [
            node.lineno
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute)
            and node.attr in {"replace", "rename", "renames"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ]
        if calls:
            renames[str(path.relative_to(SRC))] = calls
    assert set(renames) == {"_store/_atomic.py"}, renames
