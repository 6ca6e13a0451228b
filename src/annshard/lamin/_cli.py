"""``annshard info KEY``: what lamindb knows about a registered collection."""

from __future__ import annotations

import sys
from typing import TextIO

from ._instance import require_instance

__all__ = ["info_key"]


def info_key(key: str, *, out: TextIO | None = None) -> int:
    """Print every version of the collection registered under ``key``: rows, seed, sources and the runs that used it.

    Parameters
    ----------
    key
        The lamindb key.
    out
        Where to print (default: stdout).

    Returns
    -------
    The exit status: 0, or 1 when no collection has this key.
    """
    out = out or sys.stdout
    require_instance()
    import lamindb as ln

    versions = list(ln.Collection.filter(key=key).order_by("created_at"))
    if not versions:
        keys = sorted(set(ln.Collection.filter(key__startswith=key.split("/")[0]).values_list("key", flat=True)))
        hint = f"; similar keys: {', '.join(keys[:10])}" if keys else ""
        print(f"no lamindb collection with key {key!r} in {ln.setup.settings.instance.slug}{hint}", file=out)
        return 1
    print(
        f"{key}  ({len(versions)} version{'s' if len(versions) > 1 else ''}, {ln.setup.settings.instance.slug})",
        file=out,
    )
    for record in versions:
        latest = "  latest" if record.is_latest else ""
        values = record.meta_artifact.features.get_values() if record.meta_artifact is not None else {}
        n_art = record.artifacts.count()
        print(f"- version {record.version}  uid {record.uid}{latest}", file=out)
        if values:
            print(
                f"    {values.get('annshard_n_obs')} cells x {values.get('annshard_n_vars')} genes in {n_art} shards; "
                f"seed {values.get('annshard_seed')}, join {values.get('annshard_join')}, "
                f"layout {values.get('annshard_layout')}, format v{values.get('annshard_format_version')}",
                file=out,
            )
        else:
            print(f"    {n_art} artifacts (not registered by annshard)", file=out)
        sources = values.get("annshard_sources", {})
        for entry in sources.get("files", []):
            origin = f"artifact {entry['uid']}" if entry.get("uid") else (entry.get("path") or "in memory")
            digest = f", hash {entry['hash'][:12]}" if entry.get("hash") else ""
            print(f"    source {entry['name']}: {entry['n_obs']} cells from {origin}{digest}", file=out)
        if record.run is not None:
            print(
                f"    registered by run {record.run.uid} ({record.run.transform.key}) at {record.created_at:%Y-%m-%d %H:%M}",
                file=out,
            )
        users = list(record.input_of_runs.order_by("started_at"))
        print(f"    used by {len(users)} run{'s' if len(users) != 1 else ''}", file=out)
        for run in users:
            settings = (run.params or {}).get("annshard_loader", {})
            brief = ", ".join(
                f"{k}={settings[k]}" for k in ("batch_size", "chunk_size", "sampler", "seed") if k in settings
            )
            print(f"      run {run.uid} of {run.transform.key} at {run.started_at:%Y-%m-%d %H:%M}  {brief}", file=out)
    return 0
