"""lamindb keys are keys: checked before anything is copied, and a failed registration leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

import annshard
from annshard._cli import main
from annshard._errors import AnnshardError
from annshard.lamin import InvalidKeyError, register, write_and_register
from annshard.lamin._errors import check_key

from .conftest import append_to, make_collection

pytestmark = [
    pytest.mark.filterwarnings("ignore::annshard.lamin._usage.NoRunWarning"),
]

BAD_KEYS = {
    "escapes": ("../../escaped", "'..'"),
    "absolute": ("/abs/path", "absolute"),
    "escapes-inside": ("a/../../b", "'..'"),
    "dot": ("./a", "'.'"),
    "backslash": ("a\\..\\b", "backslash"),
    "empty": ("", "empty"),
    "blank": ("  ", "empty"),
    "double-slash": ("a//b", "empty segment"),
    "trailing-slash": ("a/b/", "empty segment"),
    "nul": ("a\x00b", "NUL"),
    "home": ("~/x", "home directory"),
    "drive": ("C:/x", "drive"),
}


def _files(root: Path, *, skip: str | None = None) -> dict[str, str]:
    """Every file and directory under ``root`` (a hash of each file's content), but those under ``skip``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if skip is not None and (rel == skip or rel.startswith(f"{skip}/")):
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _stats(root: Path) -> dict[str, tuple[bool, int, int, int]]:
    """Every file and directory under ``root``: (is a directory, size, mtime in ns, inode).

    Any write changes a file's mtime (or, through a rename, its inode), any new file or directory adds a key:
    equal snapshots mean nothing was written. (The session's whole temporary tree is walked twice per test:
    stat only, where hashing every file of it took seconds per walk.)
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[path] = (stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino)
    return out


# the instance's SQLite database lives in the storage root; a failed registration still records its run there
def _counts() -> tuple[int, int, int]:
    import lamindb as ln

    return ln.Artifact.filter().count(), ln.Collection.filter().count(), ln.Run.filter().count()


@pytest.fixture
def outside(tmp_path):
    """A collection outside every storage root: registering it copies it into the default root."""
    return make_collection(tmp_path / "outside.zarr", seed=11)


@pytest.fixture(scope="module")
def outside_untouched(tmp_path_factory):
    """As ``outside``, written once for the tests whose registration is refused before it reads a file.

    (Each of them checks that nothing under the session's temporary tree changed, this collection included.)
    """
    return make_collection(tmp_path_factory.mktemp("keys") / "outside.zarr", seed=11)


@pytest.mark.parametrize(("key", "rule"), list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_key_copies_and_registers_nothing(lamin_root, tmp_path_factory, outside_untouched, key, rule):
    outside = outside_untouched
    base = tmp_path_factory.getbasetemp()
    before, counts, absolute = _stats(base), _counts(), Path("/abs/path").exists()
    with pytest.raises(InvalidKeyError, match=rule) as info:
        register(outside, key=key)
    assert repr(key) in str(info.value) and "e.g. 'pbmc/train'" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert _stats(base) == before  # nothing written anywhere under the test's temporary directories
    assert _counts() == counts  # no run, artifact or collection
    assert Path("/abs/path").exists() == absolute  # (the code before this check wrote a full copy there)


def test_absolute_key_in_reach_writes_nothing_there(lamin_root, tmp_path, outside):
    target = tmp_path / "abs" / "copy"
    with pytest.raises(InvalidKeyError, match="absolute"):
        register(outside, key=str(target))
    assert not (tmp_path / "abs").exists()


def test_write_and_register_checks_the_key_before_writing(lamin_root, tmp_path_factory):
    from annshard.testing import make_adata

    base = tmp_path_factory.getbasetemp()
    before, counts = _stats(base), _counts()
    with pytest.raises(InvalidKeyError, match="'..'"):
        write_and_register([make_adata(50, 20, nnz_per_cell=4, seed=1)], key="../../escaped")
    assert _stats(base) == before
    assert _counts() == counts


def test_cli_register_bad_key(lamin_root, tmp_path_factory, outside_untouched, capsys):
    outside = outside_untouched
    base = tmp_path_factory.getbasetemp()
    before = _stats(base)
    assert main(["register", str(outside.path), "--key", "a/../../b"]) == 2
    err = capsys.readouterr().err
    assert "annshard register: error: invalid lamindb key 'a/../../b'" in err
    assert _stats(base) == before


@pytest.mark.parametrize("key", ["pbmc/train", "a", "x.y/z-1_2", "pbmc/train.v2"])
def test_good_keys_pass(key):
    assert check_key(key) == key


def _fail_on_collection_save(monkeypatch):
    import lamindb as ln

    def save(self, *args, **kwargs):
        msg = "database is locked"  # what a busy SQLite instance says
        raise RuntimeError(msg)

    monkeypatch.setattr(ln.Collection, "save", save)


def test_failure_after_the_copy_removes_the_copy(lamin_root, outside, unique_key, monkeypatch):
    import lamindb as ln

    before, (n_art, n_coll, n_run) = _files(lamin_root, skip=".lamindb"), _counts()
    _fail_on_collection_save(monkeypatch)
    with pytest.raises(RuntimeError, match="database is locked"):
        register(outside, key=unique_key)
    monkeypatch.undo()
    assert _files(lamin_root, skip=".lamindb") == before  # the copy, its folders and the manifest snapshot are gone
    assert not (lamin_root / "annshard" / unique_key.split("/")[0] / unique_key.split("/")[1]).exists()
    # the shard and meta artifacts it created are deleted; its run stays, marked as failed
    assert _counts() == (n_art, n_coll, n_run + 1)
    run = ln.Run.filter().order_by("-started_at").first()
    assert run.params["key"] == unique_key and run.status != "completed"
    # and the registration works once the instance does
    record = register(outside, key=unique_key)
    assert annshard.Loader(annshard.lamin.open_registered(record)).n_obs == outside.n_obs


def test_failure_of_a_new_version_keeps_the_old_one(lamin_root, outside, unique_key, monkeypatch):
    v1 = register(outside, key=unique_key)
    copy = Path(next(iter(v1.ordered_artifacts.all())).path).parent
    before = _files(lamin_root, skip=".lamindb")
    outside = append_to(outside, n=70)
    _fail_on_collection_save(monkeypatch)
    with pytest.raises(RuntimeError, match="database is locked"):
        register(outside, key=unique_key)
    monkeypatch.undo()
    # the new shard and the copy's new manifest are undone: version 1's files are exactly as they were
    assert _files(lamin_root, skip=".lamindb") == before
    assert annshard.open_collection(copy).n_obs == v1.meta_artifact.features.get_values()["annshard_n_obs"]
    assert annshard.lamin.open_registered(v1).n_obs == annshard.open_collection(copy).n_obs
    v2 = register(outside, key=unique_key)
    assert v2.version == "2" and annshard.lamin.open_registered(v2).n_obs == outside.n_obs


def test_unknown_source_fails_before_the_copy(lamin_root, outside, unique_key):
    before, counts = _files(lamin_root, skip=".lamindb"), _counts()
    with pytest.raises(AnnshardError, match="uids"):
        register(outside, key=unique_key, sources=["0123456789abcdef0000"])
    assert _files(lamin_root, skip=".lamindb") == before
    assert _counts() == counts
