"""Every built-in sampler keeps the sampler contract (through annshard.testing.check_sampler)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annshard.samplers import RandomSampler, Sampler, SequentialSampler, WeightedSampler, chunk_grid, get_sampler
from annshard.testing import check_sampler, plan_rows

shards = st.lists(st.integers(0, 120), min_size=1, max_size=6).filter(lambda s: sum(s) > 0)


@settings(max_examples=40, deadline=None)
@given(n_obs=shards, chunk_size=st.integers(1, 50), seed=st.integers(0, 2**40))
def test_random(n_obs, chunk_size, seed):
    # two epochs may legitimately repeat an order when there are few chunks (3 chunks: 1 in 6 x the phases);
    # with 8 or more chunks a repeat (1 in 40,320 or less) means the epoch is ignored
    check_sampler(
        RandomSampler(), n_obs=n_obs, chunk_size=chunk_size, seeds=[seed], reshuffles=sum(n_obs) >= 8 * chunk_size
    )


@settings(max_examples=30, deadline=None)
@given(n_obs=shards, chunk_size=st.integers(1, 50))
def test_sequential(n_obs, chunk_size):
    check_sampler(SequentialSampler(), n_obs=n_obs, chunk_size=chunk_size, reshuffles=False)
    plan = SequentialSampler().plan(n_obs, chunk_size=chunk_size, seed=0, epoch=0)
    assert np.array_equal(plan_rows(plan, n_obs), np.arange(sum(n_obs)))


@settings(max_examples=30, deadline=None)
@given(n_obs=shards, chunk_size=st.integers(1, 20), n_classes=st.integers(1, 5))
def test_weighted(n_obs, chunk_size, n_classes):
    codes = np.arange(sum(n_obs)) % n_classes
    check_sampler(WeightedSampler("ct"), n_obs=n_obs, chunk_size=chunk_size, obs={"ct": codes}, reshuffles=False)


def test_random_epochs_and_seeds_differ():
    a = RandomSampler().plan([500, 300], chunk_size=8, seed=0, epoch=0)
    assert not np.array_equal(a, RandomSampler().plan([500, 300], chunk_size=8, seed=0, epoch=1))
    assert not np.array_equal(a, RandomSampler().plan([500, 300], chunk_size=8, seed=1, epoch=0))
    # the grid's phase moves: chunk boundaries differ between epochs
    starts0 = set(map(tuple, a[:, :2].tolist()))
    starts1 = set(map(tuple, RandomSampler().plan([500, 300], chunk_size=8, seed=0, epoch=1)[:, :2].tolist()))
    assert starts0 != starts1


def test_weighted_balances_classes_with_small_chunks():
    rng = np.random.default_rng(0)
    codes = rng.choice(3, size=30000, p=[0.9, 0.08, 0.02])
    s = WeightedSampler("ct")
    from annshard.samplers import SamplerContext

    bound = s.bind(SamplerContext(n_obs=(20000, 10000), obs=lambda name: codes))
    rows = plan_rows(bound.plan([20000, 10000], chunk_size=1, seed=0, epoch=0), [20000, 10000])
    share = np.bincount(codes[rows], minlength=3) / rows.shape[0]
    np.testing.assert_allclose(share, 1 / 3, atol=0.02)
    # with big chunks of a shuffled collection the balance is diluted (documented)
    rows32 = plan_rows(bound.plan([20000, 10000], chunk_size=32, seed=0, epoch=0), [20000, 10000])
    share32 = np.bincount(codes[rows32], minlength=3) / rows32.shape[0]
    assert share32[2] < share[2]


def test_weighted_by_array_and_errors():
    w = np.zeros(100)
    w[90:] = 1
    plan = WeightedSampler(weights=w, num_samples=50).plan([100], chunk_size=1, seed=0, epoch=0)
    assert plan.shape[0] == 50 and (plan[:, 1] >= 90).all()
    with pytest.raises(ValueError, match="exactly one"):
        WeightedSampler()
    with pytest.raises(ValueError, match="non-negative"):
        WeightedSampler(weights=[-1, 2])
    with pytest.raises(RuntimeError, match="bound"):
        WeightedSampler("ct").plan([10], chunk_size=2, seed=0, epoch=0)
    with pytest.raises(ValueError, match="got 100 weights"):
        from annshard.samplers import SamplerContext

        WeightedSampler(weights=w).bind(SamplerContext(n_obs=(50,), obs=lambda n: None))


def test_get_sampler():
    assert isinstance(get_sampler("random"), RandomSampler)
    assert isinstance(get_sampler("sequential"), SequentialSampler)
    s = RandomSampler()
    assert get_sampler(s) is s
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("nope")
    with pytest.raises(TypeError):
        get_sampler(3)


def test_custom_sampler_subclass():
    class Reverse(Sampler):
        name = "reverse"

        def plan(self, n_obs, *, chunk_size, seed, epoch):
            return chunk_grid(n_obs, chunk_size)[::-1].copy()

    check_sampler(Reverse(), reshuffles=False)
    assert repr(Reverse()) == "Reverse()"
