"""Loading collections: chunked random minibatches (:class:`Loader`).

- :mod:`._loader` holds the :class:`Loader` iterable;
- :mod:`._world` does the rank / DataLoader-worker arithmetic;
- :mod:`._assemble` defines an epoch as a row stream and cuts batches from it;
- :mod:`._fetch` reads blocks of chunks (zarrs), :mod:`._prefetch` and :mod:`._pool` run and feed the
  background stages;
- :mod:`._output` turns batches into the requested output type; :mod:`._batch` is the :class:`Batch` yielded.
"""

from __future__ import annotations

from ._loader import Loader

__all__ = ["Loader"]
