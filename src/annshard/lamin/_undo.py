"""Taking back a failed registration: the files (or bucket objects) it created or overwrote, and its lamindb records.

Every step of :func:`annshard.lamin.register` that writes records what it did in
one :class:`_Undo` journal (the shard copies and folders of
:mod:`~annshard.lamin._storage`, the manifest snapshot of
:mod:`~annshard.lamin._snapshot`, the artifacts saved through :func:`_save_new`).
When the registration fails, :func:`_roll_back` deletes the records newest first,
then removes the files and restores what was overwritten, so the storage root is
as before.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annshard._store._atomic import write_atomic

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["_Undo", "_roll_back", "_save_new"]


class _Undo:
    """What a registration created or overwrote on disk, to remove or restore if it fails."""

    def __init__(self) -> None:
        self.created: list[Path] = []
        self.overwritten: dict[Path, bytes] = {}
        self.records: list[Any] = []
        self.actions: list[Callable[[], object]] = []  # taking back what was put on a bucket, newest last

    def on_undo(self, action: Callable[[], object]) -> None:
        """Run ``action`` when the registration is taken back (e.g. delete the objects it put on a bucket)."""
        self.actions.append(action)

    def mkdir(self, path: Path) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        self.created.extend(reversed(missing))  # outermost first

    def will_write(self, path: Path) -> None:
        if path.exists():
            if path not in self.overwritten and path not in self.created:
                self.overwritten[path] = path.read_bytes()
        else:
            self.created.append(path)

    def undo(self) -> None:
        for action in reversed(self.actions):
            try:
                action()
            except Exception as e:  # noqa: BLE001 - go on taking back the rest; say what is left
                import warnings

                warnings.warn(
                    f"annshard: could not take back a bucket object after a failed registration ({e})", stacklevel=3
                )
        for path, content in self.overwritten.items():
            write_atomic(path, content)
        for path in reversed(self.created):  # innermost first
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _save_new(record: Any, run: Any, undo: _Undo) -> Any:
    """Save an artifact; one this registration's run created is deleted again if the registration fails.

    (For content it already has, lamindb returns the existing artifact, made by an earlier run.)
    """
    record = record.save()
    if record.run_id == run.id:
        undo.records.append(record)
    return record


def _roll_back(undo: _Undo) -> None:
    """Delete the records a failed registration created (newest first), then its files."""
    import lamindb as ln

    verbosity = ln.settings.verbosity
    ln.settings.verbosity = "error"  # lamindb says "a file/folder remains here" of each: annshard removes it next
    try:
        _delete_records(undo.records)
    finally:
        ln.settings.verbosity = verbosity
    undo.undo()


def _delete_records(records: list[Any]) -> None:
    for record in reversed(records):
        try:
            record.delete(permanent=True, storage=False)
        except Exception as e:  # noqa: BLE001 - the first error is the one to report; say what is left
            import warnings

            warnings.warn(
                f"annshard: could not delete lamindb record {record.uid} after a failed registration ({e})",
                stacklevel=4,
            )
