"""How random is a batch? Same-chunk statistics of annshard.Loader batches, measured and analytical.

    uv run python benchmarks/shuffle_quality.py <annshard collection> [--settings "32,256;256,32"]

A batch of ``B`` rows is cut from a preload block of ``p`` chunks of ``c``
contiguous on-disk rows, shuffled in memory. If the block's ``N = p * c`` rows
are permuted uniformly and the batch takes ``B`` of them:

- the share of the batch's row *pairs* that come from the same chunk is ``(c - 1) / (N - 1)``;
- each row shares its batch with ``(c - 1)(B - 1) / (N - 1)`` rows of its own chunk;
- the batch draws on ``p * (1 - C(N - c, B) / C(N, B))`` distinct chunks.

A fully random batch over ``n`` rows has pair share ~0. The collection is
globally shuffled when written, so rows of one chunk are unrelated within an
epoch; what chunking costs is *co-occurrence*: the rows of a chunk travel
together into the same block every epoch. The measurement uses the loader's
own plan to map every row of every batch to its chunk.
"""

from __future__ import annotations

import argparse
import json
import sys
from math import lgamma

import numpy as np


def _log_comb(n: int, k: int) -> float:
    return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)


def analytic(batch: int, chunk: int, preload: int) -> dict[str, float]:
    n = chunk * preload
    b = min(batch, n)
    p_absent = np.exp(_log_comb(n - chunk, b) - _log_comb(n, b)) if n - chunk >= b else 0.0
    distinct = preload * (1 - p_absent)
    return {
        "pair_share_same_chunk": (chunk - 1) / (n - 1),
        "same_chunk_rows_per_row": (chunk - 1) * (b - 1) / (n - 1),
        "distinct_chunks_per_batch": distinct,
        "rows_per_chunk_in_batch": b / distinct,
    }


def measure(collection: str, batch: int, chunk: int, preload: int, max_batches: int = 200) -> dict[str, float]:
    import annshard

    loader = annshard.Loader(collection, batch_size=batch, chunk_size=chunk, preload_nchunks=preload, seed=0)
    plan = np.asarray(loader.sampler.plan(list(loader._n_obs), chunk_size=chunk, seed=loader.seed, epoch=0))
    offsets = np.concatenate([[0], np.cumsum(loader._n_obs)])
    starts = np.sort(offsets[plan[:, 0]] + plan[:, 1])
    pair, distinct, per_row = [], [], []
    for i, b in enumerate(loader):
        if i >= max_batches:
            break
        idx = np.asarray(b.index)
        if idx.shape[0] < batch:
            continue
        cid = np.searchsorted(starts, idx, side="right") - 1
        _, counts = np.unique(cid, return_counts=True)
        n = idx.shape[0]
        pair.append(float((counts * (counts - 1)).sum() / (n * (n - 1))))
        distinct.append(len(counts))
        per_row.append(float((counts * (counts - 1)).sum() / n))
    return {
        "pair_share_same_chunk": float(np.mean(pair)),
        "same_chunk_rows_per_row": float(np.mean(per_row)),
        "distinct_chunks_per_batch": float(np.mean(distinct)),
        "rows_per_chunk_in_batch": float(batch / np.mean(distinct)),
        "batches": len(pair),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("collection")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--settings", default="32,256;256,32")
    a = p.parse_args(argv)
    out = {}
    for s in a.settings.split(";"):
        c, pre = (int(v) for v in s.split(","))
        an = analytic(a.batch_size, c, pre)
        me = measure(a.collection, a.batch_size, c, pre)
        out[f"{a.batch_size},{c},{pre}"] = {"analytic": an, "measured": me}
        print(f"({a.batch_size}, {c}, {pre})", file=sys.stderr)
        for k in an:
            print(f"  {k:28s} analytic {an[k]:10.4f}   measured {me[k]:10.4f}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
