"""``annshard bench``."""

from __future__ import annotations

import json

import pytest

import annshard
from annshard._cli import main
from annshard.testing import make_adata


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return annshard.write_collection([make_adata(900, 50, nnz_per_cell=10)], tmp_path_factory.mktemp("b") / "c.zarr")


def test_bench_prints_figures(small, capsys):
    rc = main(
        [
            "bench",
            str(small.path),
            "--batch-size",
            "128",
            "--chunk-size",
            "8",
            "--preload-nchunks",
            "10",
            "--epochs",
            "2",
            "--obs-column",
            "cell_type",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "cells/s" in out and "peak RSS" in out and "first batch" in out
    assert "1800 in" in out
    assert "epochs          first " in out and "later " in out  # the first epoch (from construction) vs the second
    assert "later epochs    first batch after " in out  # the wait at the second epoch's start


def test_bench_json(small, capsys):
    assert main(["bench", str(small.path), "--batch-size", "100", "--epochs", "0.5", "--json", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["cells"] >= 450 and res["cells_per_s"] > 0 and res["peak_rss_mb"] > 0
    assert res["settings"]["batch_size"] == 100
    assert len(res["epoch_s"]) == 1 and res["epoch_s"][0] > 0
    assert res["later_first_batch_s"] == []  # one pass: no later epoch


def test_bench_bad_path(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.zarr"), "--no-progress"]) == 2
    assert "no such collection" in capsys.readouterr().err
