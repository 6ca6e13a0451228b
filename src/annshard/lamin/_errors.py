"""The errors of :mod:`annshard.lamin`, and the check that a lamindb key is a key and not a path.

A key is checked before anything else happens (opening the instance, resolving
sources, copying): see :func:`check_key`.
"""

from __future__ import annotations

from annshard._errors import AnnshardError

__all__ = ["InvalidKeyError", "NotAnnshardCollectionError", "check_key"]


class NotAnnshardCollectionError(AnnshardError, ValueError):
    """A lamindb collection whose artifacts are not the shards of one annshard (or annbatch) collection."""


class InvalidKeyError(AnnshardError, ValueError):
    """A lamindb key that is not a plain relative key (it would become a path outside the storage root)."""


def check_key(key: object) -> str:
    """Validate a lamindb key before it is used for anything, a path in particular.

    A key is a relative, ``/``-separated name such as ``"pbmc/train"``: not
    empty, not absolute, no empty, ``.`` or ``..`` segments, no backslashes or
    NUL characters, no Windows drive; then lamindb's own rules
    (``lamindb.models.sqlrecord.check_key``, where this lamindb has it).

    Returns
    -------
    The key.

    Raises
    ------
    InvalidKeyError
        Naming the key and the rule it breaks.
    """
    rule = None
    if not isinstance(key, str):
        rule = f"a key is a string, got {type(key).__name__}"
    elif not key.strip():
        rule = "the key is empty"
    elif "\x00" in key:
        rule = "it contains a NUL character"
    elif "\\" in key:
        rule = "it contains a backslash (keys are separated by '/')"
    elif key.startswith("/"):
        rule = "it is an absolute path (a key is relative, e.g. 'pbmc/train')"
    elif key.startswith("~"):
        rule = "it starts with '~', a home directory (a key is relative, e.g. 'pbmc/train')"
    elif len(key) >= 2 and key[1] == ":" and key[0].isalpha():
        rule = "it starts with a drive letter (a key is relative, e.g. 'pbmc/train')"
    elif any(seg in {".", ".."} for seg in key.split("/")):
        rule = "it has a '.' or '..' segment (a key may not point outside its folder)"
    elif any(seg == "" for seg in key.split("/")):
        rule = "it has an empty segment ('//' or a trailing '/')"
    if rule is None:
        try:
            from lamindb.models.sqlrecord import check_key as lamindb_check_key
        except ImportError:  # pragma: no cover - a lamindb without it: our rules above only
            lamindb_check_key = None
        if lamindb_check_key is not None:
            try:
                lamindb_check_key(key)
            except ValueError as e:
                rule = f"lamindb rejects it: {e}"
    if rule is not None:
        msg = f"invalid lamindb key {key!r}: {rule}; use a relative key of plain names separated by '/', e.g. 'pbmc/train'"
        raise InvalidKeyError(msg)
    assert isinstance(key, str)
    return key
