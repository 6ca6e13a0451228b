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
    """

    X: Any
    obs: dict[str, Any] = field(default_factory=dict)
    index: Any = None

    def __getitem__(self, key: str) -> Any:
        if key in ("X", "obs", "index"):
            return getattr(self, key)
        raise KeyError(key)

    def keys(self) -> Iterator[str]:
        """Return the keys ``batch[...]`` accepts."""
        return iter(("X", "obs", "index"))

    @property
    def n_obs(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        return f"Batch(X={type(self.X).__name__}{tuple(self.X.shape)}, obs={sorted(self.obs)}, n_obs={self.n_obs})"
