"""The store's write-then-rename helpers: real files, real kills (a subprocess ``SIGKILL``-ed at the rename)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import annshard
from annshard._store._atomic import (
    append_dir,
    cleanup_stale,
    commit_manifest,
    copy_collection,
    scatter_workdir,
    temp_sibling,
    write_atomic,
)
from annshard.testing import make_adata

_KILL_AT_RENAME = """
import os, signal, sys
from pathlib import Path
from annshard._store import _atomic
target = os.fsencode(sys.argv[1])

def hook(event, args):  # the real crash: the process dies just before the rename reaches the file system
    if event == "os.rename" and os.fsencode(args[1]) == target:
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
"""


def _run_killed(body: str, *args: str) -> int:
    """Run ``body`` in a fresh interpreter that is killed at the rename onto ``args[0]``; return its pid."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    script = _KILL_AT_RENAME + textwrap.dedent(body)
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env)
    assert proc.wait(timeout=120) == -signal.SIGKILL, "the writer was killed at its rename"
    return proc.pid


def _dead_pid() -> int:
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(out.stdout)


def _hidden_temps(path: Path) -> list[Path]:
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.annshard-tmp-(\d+)-[0-9a-f]+$")
    return [p for p in path.parent.iterdir() if pattern.match(p.name)]


# -- files ------------------------------------------------------------------------------------------------------------
def test_a_kill_between_temp_write_and_rename_leaves_the_old_file(tmp_path):
    f = tmp_path / "notes.json"
    f.write_text("old")
    pid = _run_killed("_atomic.write_atomic(Path(sys.argv[1]), 'new')", str(f))
    assert f.read_text() == "old"
    (left,) = _hidden_temps(f)
    assert left.read_text() == "new", "the killed write got as far as its temporary file"
    assert left.name.startswith(f".notes.json.annshard-tmp-{pid}-")
    write_atomic(f, "newer")  # the next write removes the dead writer's temporary
    assert f.read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]


def test_a_failed_write_removes_its_temporary_and_keeps_the_target(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        write_atomic(target, b"a file cannot replace a non-empty directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "inside").read_text() == "kept"


def test_commit_killed_before_its_rename_keeps_the_old_manifest(built, tmp_path):
    path = tmp_path / "c.zarr"
    shutil.copytree(built, path)
    before = annshard.open_collection(path).manifest
    body = """
        from dataclasses import replace
        import annshard
        coll = annshard.open_collection(Path(sys.argv[1]).parent)
        _atomic.commit_manifest(coll.path, replace(coll.manifest, extra={**coll.manifest.extra, "note": "new"}))
    """
    _run_killed(body, str(path / "zarr.json"))
    assert annshard.open_collection(path).manifest == before
    assert len(_hidden_temps(path / "zarr.json")) == 1
    assert sum(len(b.index) for b in annshard.Loader(path, batch_size=64, chunk_size=10)) == before.n_obs
    commit_manifest(path, before)  # the next commit removes the dead one's temporary
    assert _hidden_temps(path / "zarr.json") == []
    assert json.loads((path / "zarr.json").read_text())["attributes"]["annshard"] == before.to_dict()


# -- temporary names --------------------------------------------------------------------------------------------------
def test_temporary_names_are_fresh_hidden_siblings_naming_the_process(tmp_path):
    target = tmp_path / "sub" / "c.zarr"
    a, b = temp_sibling(target), temp_sibling(target)
    assert a != b and a.parent == b.parent == target.parent
    for p in (a, b):
        assert re.fullmatch(rf"\.c\.zarr\.annshard-tmp-{os.getpid()}-[0-9a-f]{{8}}", p.name)
    assert re.fullmatch(rf"\.c\.zarr\.annshard-old-{os.getpid()}-[0-9a-f]{{8}}", temp_sibling(target, "old").name)
    assert re.fullmatch(rf"\.annshard-append-{os.getpid()}-[0-9a-f]{{8}}", append_dir(target).name)
    assert append_dir(target).parent == target
    assert scatter_workdir(target, None) == target / ".scatter"
    assert scatter_workdir(target, tmp_path).parent == tmp_path


def test_stale_cleanup_removes_only_the_leftovers_of_dead_writers(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    target = tmp_path / "c.zarr"
    target.mkdir()
    removed = [f".c.zarr.annshard-tmp-{dead}-0a1b2c3d", f".c.zarr.annshard-old-{dead}-0a1b2c3e"]
    removed_file = f".c.zarr.annshard-tmp-{dead}-0a1b2c3f"
    kept = [
        f".c.zarr.annshard-tmp-{alive}-0a1b2c40",  # a live writer's
        f".d.zarr.annshard-tmp-{dead}-0a1b2c41",  # another collection's
        f".c.zarr.annshard-tmp-{dead}",  # not a name annshard makes
        ".c.zarr.annshard-notes",
        f"c.zarr.annshard-tmp-{dead}-0a1b2c42",  # not hidden
    ]
    for name in removed + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").write_text(name)
    (tmp_path / removed_file).write_text("a temporary file")
    cleanup_stale(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "c.zarr"])
    assert all((tmp_path / name / "data").read_text() == name for name in kept)


def test_stale_cleanup_puts_back_a_collection_an_overwrite_moved_aside(tmp_path):
    old = tmp_path / f".c.zarr.annshard-old-{_dead_pid()}-0a1b2c3d"
    old.mkdir()
    (old / "zarr.json").write_text("{}")
    cleanup_stale(tmp_path / "c.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr"]
    assert (tmp_path / "c.zarr" / "zarr.json").read_text() == "{}"


# -- the collection copy ----------------------------------------------------------------------------------------------
def test_copy_collection_copies_missing_shards_then_the_manifest(tmp_path):
    src = annshard.write_collection({"a": make_adata(120, 20, nnz_per_cell=4)}, tmp_path / "c.zarr", n_obs_per_shard=60)
    dest = tmp_path / "copy.zarr"
    dest.mkdir()
    written: list[Path] = []
    copy_collection(src.path, dest, [s.name for s in src.shards], before_write=written.append)
    copy = annshard.open_collection(dest)
    assert copy.manifest == src.manifest
    assert sorted(p.name for p in dest.iterdir()) == ["shard-00000.zarr", "shard-00001.zarr", "zarr.json"]
    assert {p for p in written if p.exists()} == set(dest.iterdir()), "every path it made was announced first"
    assert written[-1] == dest / "zarr.json"
    stamp = os.stat(dest / "shard-00000.zarr" / "X" / "data" / "zarr.json").st_mtime_ns
    src = annshard.append_collection(src, {"b": make_adata(50, 20, nnz_per_cell=4, seed=1)})
    written.clear()
    copy_collection(src.path, dest, [s.name for s in src.shards], before_write=written.append)
    assert annshard.open_collection(dest).manifest == src.manifest
    assert os.stat(dest / "shard-00000.zarr" / "X" / "data" / "zarr.json").st_mtime_ns == stamp
    assert {p.name for p in written if p.exists()} == {"shard-00002.zarr", "zarr.json"}, "only the new shard"
