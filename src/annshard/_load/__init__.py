"""Loading collections: chunked random minibatches (:class:`Loader`).

- :mod:`._loader` holds the :class:`Loader` iterable: argument checks, properties, ``iter`` / ``len``, pickling;
- :mod:`._union` reads several collections as one (shard references, offsets, var / layer / matrix checks);
- :mod:`._cursor` is where the loader stands in its epochs (``state_dict``, DataLoader worker counters);
- :mod:`._world` does the rank / DataLoader-worker arithmetic;
- :mod:`._assemble` defines an epoch as a row stream of blocks and cuts batches from it;
- :mod:`._fetch` reads blocks of chunks (zarrs) and alone decides their read order;
- :mod:`._pipeline` runs an epoch's two background stages (:mod:`._prefetch` threads, :mod:`._pool` buffers);
- :mod:`._output` turns gathered batches into what the user receives (output types, obs, index);
  :mod:`._batch` is the :class:`Batch` yielded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._loader import Loader

__all__ = ["Loader"]


def __getattr__(name: str) -> Any:
    # lazy, so that importing one of the loader's modules (``annshard.testing`` imports ``_assemble``) does not
    # import the Loader and everything it ties together
    if name == "Loader":
        from ._loader import Loader

        return Loader
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
