from __future__ import annotations

import pytest

import annshard
from annshard._cli import main
from annshard.testing import write_h5ads


@pytest.fixture(scope="module")
def h5ads(tmp_path_factory):
    return write_h5ads(tmp_path_factory.mktemp("cli"), [60, 40], 30, nnz_per_cell=6, gene_overlap=0.8)


def test_convert_then_info(tmp_path, h5ads, capsys):
    out = tmp_path / "c.zarr"
    rc = main(
        [
            "convert",
            *map(str, h5ads),
            "-o",
            str(out),
            "--seed",
            "4",
            "--join",
            "outer",
            "--obs-columns",
            "cell_type,donor",
            "--n-obs-per-shard",
            "30",
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    assert "100 cells x 36 genes in 4 shards" in captured.out
    assert "shuffling" in captured.err  # the progress bar
    coll = annshard.open_collection(out)
    assert coll.seed == 4 and coll.join == "outer"
    assert list(coll.obs_columns) == ["cell_type", "donor", "source", "source_row"]
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in (
        "n_obs      100",
        "n_vars     36",
        "shards     4",
        "seed       4",
        "join       outer",
        "dataset-00.h5ad: 60 rows",
        "cell_type: categorical",
        "source_row: numeric (int64)",
        "lz4",
    ):
        assert needle in text, needle


def test_convert_refuses_existing_output(tmp_path, h5ads, capsys):
    out = tmp_path / "c.zarr"
    out.mkdir()
    assert main(["convert", str(h5ads[0]), "-o", str(out), "--quiet"]) == 2
    assert "already exists; pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err
    assert main(["convert", str(h5ads[0]), "-o", str(out), "--quiet", "--overwrite"]) == 0


def test_convert_bad_source(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.h5ad"), "-o", str(tmp_path / "o.zarr"), "--quiet"]) == 2
    assert "missing.h5ad: no such file or directory" in capsys.readouterr().err


def test_info_unknown_target_goes_to_lamindb(tmp_path, monkeypatch, capsys):
    import annshard.lamin._cli as lamin_cli

    seen = []
    monkeypatch.setattr(lamin_cli, "info_key", lambda key: seen.append(key) or 1)
    assert main(["info", "some/key"]) == 1
    assert seen == ["some/key"]
