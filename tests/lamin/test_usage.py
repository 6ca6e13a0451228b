"""Recording a loader's use on the active run: inputs, settings, warn-once, DataLoader workers."""

from __future__ import annotations

import copy
import warnings

import pytest

from annshard.lamin import NoRunWarning, _usage, register

from .conftest import all_rows, make_collection


@pytest.fixture
def registered(lamin_root, unique_key):
    coll = make_collection(lamin_root / "usage" / f"{unique_key}.zarr", n_obs_per_shard=64)
    return register(coll, key=unique_key)


@pytest.fixture
def tracked(lamin_root, request):
    import lamindb as ln

    transform = ln.Transform(key=f"annshard-tests/{request.node.name}", kind="function").save()
    ln.track(transform, pypackages=False, stream_tracking=False)
    try:
        yield ln.context.run
    finally:
        ln.finish()


def test_use_is_recorded_with_settings(registered, tracked):
    import lamindb as ln

    loader = ln.Collection.get(key=registered.key).loader(
        batch_size=32, chunk_size=8, preload_nchunks=4, seed=7, obs_columns=["cell_type"]
    )
    run = tracked
    assert registered in run.input_collections.all()
    values = run.features.get_values()
    assert values["annshard_batch_size"] == 32 and values["annshard_chunk_size"] == 8
    assert values["annshard_preload_nchunks"] == 4 and values["annshard_loader_seed"] == 7
    assert values["annshard_sampler"] == "random" and values["annshard_obs_columns"] == "cell_type"
    run.refresh_from_db()
    assert run.params["annshard_loader"] == loader.settings() | {"obs_columns": ["cell_type"]}
    assert run.params["annshard_loaders"][0]["collection"] == registered.uid
    # queryable
    assert run in ln.Run.filter(annshard_batch_size=32).to_list()
    assert run in ln.Run.filter(params__annshard_loader__chunk_size=8).to_list()
    assert run in ln.Run.filter(input_collections=registered).to_list()
    # the collection knows the runs that used it
    assert run in registered.input_of_runs.all()
    assert len(all_rows(loader)) == registered.meta_artifact.features.get_values()["annshard_n_obs"]


def test_no_run_warns_once(registered, monkeypatch):
    monkeypatch.setattr(_usage, "_warned", False)
    with pytest.warns(NoRunWarning, match=r"ln\.track\(\)"):
        registered.loader()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registered.loader()  # no second warning
    assert registered.input_of_runs.count() == 0


@pytest.mark.slow
def test_workers_never_write(registered, tracked):
    """A DataLoader with spawn workers over a registered collection: every row once, one recorded use."""
    import torch.utils.data as tud

    loader = registered.loader(batch_size=40, chunk_size=8, preload_nchunks=2)
    # collate_fn=copy.copy: keep the Batch as it is (torch's default collate rebuilds Mappings); a stdlib
    # function pickles by reference into spawn workers
    dl = tud.DataLoader(loader, batch_size=None, num_workers=2, multiprocessing_context="spawn", collate_fn=copy.copy)
    seen = []
    for batch in dl:
        seen.extend(int(i) for i in batch.index)
    assert sorted(seen) == list(range(loader.n_obs))
    tracked.refresh_from_db()
    assert len(tracked.params["annshard_loaders"]) == 1
    assert list(tracked.input_collections.all()) == [registered]


def test_main_process_detection():
    assert _usage.in_main_process()
