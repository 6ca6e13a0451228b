"""The :class:`Batch` a loader yields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batch"]


@dataclass
class Batch:
    """One minibatch.

    ``batch["X"]``, ``batch["obs"]`` and ``batch["index"]`` work too, so code
    written for annbatch's dict batches keeps working. (It is deliberately not a
    ``Mapping``: torch's DataLoader would rebuild mappings as plain dicts.)

    Attributes
    ----------
    X
        The rows' values: scipy CSR, numpy dense, torch (sparse CSR or dense) or cupy.
    obs
        The requested obs columns by name: categorical columns as integer codes
        (labels in :attr:`annshard.Loader.categories`), numeric ones as values.
    index
        Every row's global position in the loader's collection(s).
    layers
        The requested layers by name (``Loader(..., layers=[...])``), row for row with ``X``,
        in the same output type as ``X``.
    obsm
        The requested obsm arrays by name (``Loader(..., obsm=[...])``), row for row with ``X``,
        always dense (numpy, or a dense torch / cupy array).
    """

    X: Any
    obs: dict[str, Any] = field(default_factory=dict)
    index: Any = None
    layers: dict[str, Any] = field(default_factory=dict)
    obsm: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key in ("X", "obs", "index", "layers", "obsm"):
            return getattr(self, key)
        raise KeyError(key)

    def keys(self) -> Iterator[str]:
        """Return the keys ``batch[...]`` accepts (``layers`` and ``obsm`` when the loader yields some)."""
        extra = tuple(k for k in ("layers", "obsm") if getattr(self, k))
        return iter(("X", "obs", "index", *extra))

    @property
    def n_obs(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        extra = "".join(f", {k}={sorted(getattr(self, k))}" for k in ("layers", "obsm") if getattr(self, k))
        return (
            f"Batch(X={type(self.X).__name__}{tuple(self.X.shape)}, obs={sorted(self.obs)}{extra}, n_obs={self.n_obs})"
        )
