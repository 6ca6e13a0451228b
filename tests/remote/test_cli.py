"""The command line on collections at URLs: ``--storage-option KEY=VALUE``."""

from __future__ import annotations

import json

import pytest

import annshard
from annshard._cli import main


def test_info_and_bench_take_a_url(uploaded, capsys):
    opt = ["--storage-option", f"endpoint_url={uploaded.options['endpoint_url']}"]
    assert main(["info", uploaded.url, *opt]) == 0
    out = capsys.readouterr().out
    assert out.startswith(uploaded.url) and "n_obs      1200" in out
    argv = ["bench", uploaded.url, *opt, "--batch-size", "100", "--chunk-size", "20", "--preload-nchunks", "10"]
    assert main([*argv, "--no-progress", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["cells"] == 1200 and res["paths"] == [uploaded.url]


def test_convert_writes_to_a_url(s3_server, tmp_path, capsys):
    from annshard.testing import write_h5ads

    files = write_h5ads(tmp_path / "h5", [150, 90], n_vars=30, nnz_per_cell=5, seed=1)
    url = s3_server.url("cli/converted.zarr")
    argv = ["convert", *map(str, files), "-o", url, "--storage-option", f"endpoint_url={s3_server.endpoint}"]
    assert main([*argv, "--quiet", "--n-obs-per-shard", "100"]) == 0
    assert f"wrote {url}: 240 cells" in capsys.readouterr().out
    coll = annshard.open_collection(url, storage_options=s3_server.options)
    assert coll.n_obs == 240 and len(coll.shards) == 3


def test_a_bad_storage_option_is_a_usage_error(uploaded, capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", uploaded.url, "--storage-option", "endpoint_url"])
    assert e.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
