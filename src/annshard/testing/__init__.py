"""Test helpers and synthetic data users can run in their own tests.

- :func:`make_adata`: one realistic synthetic AnnData (lognormal non-zeros per cell,
  skewed gene popularity, negative-binomial counts, categorical and numeric obs).
- :func:`write_h5ads`: several such datasets written as ``.h5ad`` files.
- :func:`check_sampler`: the :class:`~annshard.samplers.Sampler` contract (well-formed,
  deterministic plans; exact coverage; disjoint, equal distributed parts).
- :func:`check_resume`: a loader restored from a mid-epoch ``state_dict`` yields exactly
  the rest of the epoch and then continues as an uninterrupted run.
- :func:`assert_identical_collections`: two collections hold the same bytes (apart from creation
  metadata): the same sources and seed give the same collection whatever the engine.
- :func:`forbid_network`: an audit hook that flags any attempt to reach another machine.
"""

from __future__ import annotations

from ._compare import assert_identical_collections
from ._data import make_adata, write_h5ads
from ._network import forbid_network, is_local_address
from ._resume import check_resume
from ._samplers import check_sampler, plan_rows

__all__ = [
    "assert_identical_collections",
    "check_resume",
    "check_sampler",
    "forbid_network",
    "is_local_address",
    "make_adata",
    "plan_rows",
    "write_h5ads",
]
