"""``annshard demo``: the whole mission on synthetic data, offline.

1. creates (or reuses) a local SQLite lamindb instance in ``DIR/lamindb``;
2. writes realistic synthetic ``.h5ad`` files into its storage and registers them as artifacts;
3. converts them into one shuffled, sharded collection (``annshard.write_collection``)
   and registers it (``annshard.lamin.register``): sources -> collection;
4. trains a small classifier on it for a few epochs inside a tracked run, through
   ``ln.Collection.get(key=...).loader(...)``, with a progress bar and throughput;
5. prints the lineage: sources -> collection -> training run, and what was written.

Re-running reuses the instance, the files and the registered version, and adds a training run.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

__all__ = ["add_parser", "run"]

KEY = "demo/synthetic-cells"
DESCRIPTION = "annshard demo: synthetic cells"


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("--dir", default="annshard-demo", help="working directory of the demo (default: %(default)s)")
    parser.add_argument("--cells", type=int, default=30_000, help="cells over all source files (default: %(default)s)")
    parser.add_argument("--genes", type=int, default=2_000, help="genes (default: %(default)s)")
    parser.add_argument("--files", type=int, default=3, help="number of source .h5ad files (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=2048, help="cells per batch (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default: %(default)s)")


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _say(text: str) -> None:
    print(text, flush=True)


def _sources(storage: Path, args: argparse.Namespace) -> list[Any]:
    """Write (or reuse) the synthetic .h5ad files inside the storage root and register them in place."""
    import lamindb as ln

    from annshard.testing import write_h5ads

    raw = storage / "demo" / "raw"
    base, extra = divmod(args.cells, args.files)
    sizes = [base + (i < extra) for i in range(args.files)]
    paths = [raw / f"dataset-{i:02d}.h5ad" for i in range(args.files)]
    if not all(p.exists() for p in paths):
        t0 = time.perf_counter()
        paths = write_h5ads(raw, sizes, n_vars=args.genes, nnz_per_cell=min(800, args.genes // 2), seed=args.seed)
        _say(
            f"  wrote {len(paths)} synthetic .h5ad files ({sum(sizes):,} cells x {args.genes:,} genes) in {time.perf_counter() - t0:.1f} s"
        )
    else:
        _say(f"  reusing {len(paths)} .h5ad files in {raw}")
    return [ln.Artifact(p, description="synthetic single-cell counts (annshard demo)").save() for p in paths]


def _collection(storage: Path, sources: list[Any], args: argparse.Namespace) -> Any:
    import annshard
    from annshard.lamin import register, write_and_register

    path = storage / "annshard" / "demo" / f"synthetic-cells-seed{args.seed}.zarr"
    if path.exists():
        coll = annshard.open_collection(path)
        _say(f"  reusing collection {path} ({coll.n_obs:,} cells, {len(coll.shards)} shards)")
    else:
        t0 = time.perf_counter()
        # writes the collection inside the storage root (so its shards are registered in place), records the
        # sources' artifact uids in its manifest, and registers it
        record = write_and_register(
            sources, path, key=KEY, description=DESCRIPTION, seed=args.seed, n_obs_per_shard=8192, show_progress=True
        )
        dt = time.perf_counter() - t0
        coll = annshard.open_collection(path)
        _say(f"  wrote and registered {path}: {coll.n_obs:,} cells, {len(coll.shards)} shards in {dt:.1f} s")
        _say(f"  registered {record.key!r} version {record.version} (uid {record.uid})")
        return record
    t0 = time.perf_counter()
    record = register(coll, key=KEY, description=DESCRIPTION, sources=sources)
    _say(f"  registered {record.key!r} version {record.version} (uid {record.uid}) in {time.perf_counter() - t0:.1f} s")
    return record


def _train(record: Any, args: argparse.Namespace) -> Any:
    import lamindb as ln
    import numpy as np
    from tqdm.auto import tqdm

    transform = ln.Transform(key="annshard demo: train a classifier", kind="function").save()
    ln.track(transform, pypackages=False, stream_tracking=False)
    try:
        loader = ln.Collection.get(key=record.key, version=record.version).loader(
            batch_size=args.batch_size, chunk_size=32, preload_nchunks=64, obs_columns=["cell_type"], seed=args.seed
        )
        n_types = len(loader.categories["cell_type"])
        try:
            import torch
        except ImportError:  # pragma: no cover - the demo without the torch extra
            torch = None
        model = opt = None
        if torch is not None:
            torch.manual_seed(args.seed)
            model = torch.nn.Linear(loader.n_vars, n_types)
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for epoch in range(args.epochs):
            loader.set_epoch(epoch)
            t0, cells, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
            bar = tqdm(total=loader.n_obs, unit="cells", unit_scale=True, desc=f"  epoch {epoch + 1}/{args.epochs}")
            for batch in loader:
                y = np.asarray(batch.obs["cell_type"])
                if model is not None:
                    x = torch.from_numpy(np.log1p(batch.X.toarray()).astype(np.float32))
                    target = torch.from_numpy(y.astype(np.int64))
                    logits = model(x)
                    loss = torch.nn.functional.cross_entropy(logits, target)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    loss_sum += float(loss.detach()) * len(y)
                    correct += int((logits.argmax(1) == target).sum())
                cells += len(y)
                bar.update(len(y))
            bar.close()
            dt = time.perf_counter() - t0
            fit = f", loss {loss_sum / cells:.3f}, train accuracy {correct / cells:.1%}" if model is not None else ""
            _say(f"  epoch {epoch + 1}: {cells:,} cells in {dt:.1f} s = {cells / dt:,.0f} cells/s{fit}")
        run = ln.context.run
    finally:
        ln.finish()
    return run


def _lineage(record: Any, run: Any) -> None:
    import lamindb as ln

    record = ln.Collection.get(record.uid)
    reg_run = record.run
    _say("\nlineage")
    for art in reg_run.input_artifacts.order_by("key"):
        _say(f"  source    {art.key}  (artifact {art.uid}, {art.size / 1e6:.1f} MB)")
    _say(f"     |  run {reg_run.uid} of {reg_run.transform.key!r}")
    values = record.meta_artifact.features.get_values()
    _say(
        f"     v  collection {record.key!r} version {record.version} (uid {record.uid}): "
        f"{values['annshard_n_obs']:,} cells x {values['annshard_n_vars']:,} genes, {record.artifacts.count()} shard "
        f"artifacts, seed {values['annshard_seed']}, layout {values['annshard_layout']}"
    )
    run = ln.Run.get(run.uid)
    settings = run.params["annshard_loader"]
    _say(f"     |  read by run {run.uid} of {run.transform.key!r} (finished {run.finished_at:%Y-%m-%d %H:%M:%S})")
    _say(
        "     v  loader settings on the run: "
        + ", ".join(
            f"{k}={settings[k]}"
            for k in ("batch_size", "chunk_size", "preload_nchunks", "sampler", "seed", "obs_columns")
        )
    )
    n_runs = record.input_of_runs.count()
    _say(f"  the collection was read by {n_runs} run{'s' if n_runs != 1 else ''} so far")
    _say(
        f"\nquery it:  ln.Collection.filter(meta_artifact__in=ln.Artifact.filter(annshard_seed={values['annshard_seed']}),"
        f" run__input_artifacts=ln.Artifact.get({reg_run.input_artifacts.first().uid!r}))"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    from annshard.lamin import ensure_local_instance
    from annshard.lamin._instance import free_instance_name

    t_start = time.perf_counter()
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "lamindb"
    _say(f"annshard demo in {workdir}")
    _say("1. lamindb instance")
    with _cwd(workdir):  # lamindb-setup writes its `.lamin/current_instance` marker into the working directory
        # a second checkout's demo gets its own instance, not the first one's database
        isettings = ensure_local_instance(storage, name=free_instance_name(storage, "annshard-demo"))
    _say(f"  {isettings.slug}: SQLite database in {storage / '.lamindb'}, storage {storage}")
    _say("2. sources")
    sources = _sources(storage, args)
    _say("3. write + register the collection")
    record = _collection(storage, sources, args)
    _say(f"4. train for {args.epochs} epochs inside a tracked run")
    train_run = _train(record, args)
    _lineage(record, train_run)
    _say("\nwritten")
    _say(f"  {storage / 'demo' / 'raw'}              source .h5ad files (registered artifacts)")
    _say(f"  {storage / 'annshard' / 'demo'}          the sharded collection (one artifact per shard)")
    _say(f"  {storage / 'annshard' / 'manifests'}     manifest snapshots (the collection's meta artifacts)")
    _say(f"  {storage / '.lamindb' / 'lamin.db'}  the lamindb SQLite database")
    _say(f"done in {time.perf_counter() - t_start:.0f} s; run again to add a training run to the same version")
    return 0
