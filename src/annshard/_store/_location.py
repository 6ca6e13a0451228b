"""Where a collection lives: a local directory, or a URL (``s3://bucket/prefix``) plus storage options.

A :class:`Location` is the one way the store layer reads a collection's bytes: small metadata reads
(:meth:`Location.read_json`), the zarr store its shards open from (:meth:`Location.zarr_store`), and for a URL
the object-store calls a writer needs (:meth:`Location.put`, conditional on an e-tag; :meth:`Location.list`,
:meth:`Location.delete`). Remote locations read through obstore, wrapped in zarr's
:class:`zarr.storage.ObjectStore`, so zarrs' Rust pipeline reads the shards (over fsspec it would silently fall
back to zarr-python's pipeline).

Storage options use the fsspec/s3fs spelling (``endpoint_url``, ``key``, ``secret``, ``token``, ``anon``,
``region``/``region_name``, ``client_kwargs={"region_name": ...}``) and are mapped to obstore's configuration by
:func:`obstore_options`, the only place that knows both spellings. A URL may carry them as a query string, the
form lamindb stores for S3-compatible servers (``s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000``). What is
not given comes from the standard environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``), which obstore reads itself.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from annshard._errors import CollectionFormatError

from ._validate import MAX_JSON_BYTES, read_json_file

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import zarr

__all__ = ["Location", "is_url", "location", "obstore_options"]

_URL_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "azure", "http", "https", "memory")
_TRUE = {"1", "true", "yes", "on"}
_REBUILT = "Successfully reconstructed a store defined in another Python module"


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL read through an object store (``s3://...``; not a local path or ``file://``)."""
    if not isinstance(path, str) or "://" not in path:
        return False
    return path.split("://", 1)[0].lower() in _URL_SCHEMES


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE


def obstore_options(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Map fsspec/s3fs-style storage options (and any in ``url``'s query string) to obstore ``from_url`` arguments.

    Parameters
    ----------
    url
        ``scheme://bucket/prefix``, optionally with ``?endpoint_url=...&anon=true`` (lamindb's form).
    storage_options
        ``endpoint_url``, ``key``, ``secret``, ``token``, ``anon``, ``region`` (or ``region_name``, or
        ``client_kwargs={"region_name": ...}``); any other key is passed to obstore's config unchanged
        (e.g. ``aws_virtual_hosted_style_request``, or GCS/Azure keys). Given options win over the query string.

    Returns
    -------
    ``{"config": {...}, "client_options": {...}}`` for :func:`obstore.store.from_url`.

    Raises
    ------
    ValueError
        If an option has the wrong type (``client_kwargs`` not a mapping).
    """
    opts: dict[str, Any] = dict(parse_qsl(urlsplit(url).query))
    opts.update(storage_options or {})
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    kwargs = opts.pop("client_kwargs", None) or {}
    if not isinstance(kwargs, dict):
        msg = f"storage_options['client_kwargs'] for {url}: a {type(kwargs).__name__}, expected a dict"
        raise ValueError(msg)
    if "endpoint_url" in kwargs:
        opts.setdefault("endpoint_url", kwargs["endpoint_url"])
    if "region_name" in kwargs:
        opts.setdefault("region", kwargs["region_name"])
    s3 = url.split("://", 1)[0].lower() in ("s3", "s3a")
    endpoint = opts.pop("endpoint_url", None) or opts.pop("endpoint", None)
    if endpoint is None and s3:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        config["endpoint"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            client["allow_http"] = True
    for ours, theirs in (("key", "access_key_id"), ("secret", "secret_access_key"), ("token", "session_token")):
        if opts.get(ours) is not None:
            config[theirs] = str(opts.pop(ours))
        opts.pop(ours, None)
    if _flag(opts.pop("anon", False)):
        config["skip_signature"] = True
    region = opts.pop("region", None) or opts.pop("region_name", None)
    if region is None and s3:
        region = (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ("us-east-1" if endpoint else None)
        )
    if region:
        config["region"] = str(region)
    for key in ("use_ssl", "version_aware", "default_fill_cache", "cache_regions"):  # s3fs-only, nothing to map
        opts.pop(key, None)
    config.update(opts)
    return {"config": config, "client_options": client}


@dataclass(frozen=True, eq=False)
class Location:
    """A collection's place: a local directory (``path``) or an object-store URL (``url`` + ``options``).

    Build one with :func:`location`. It pickles without its (lazily built) object-store client.
    """

    path: Path | None = None
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        """Whether it is an object-store URL."""
        return self.url is not None

    def __str__(self) -> str:
        return self.url if self.url is not None else str(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "url": self.url, "options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def child(self, name: str) -> Location:
        """Return the location of ``name`` under this one (a plain child name)."""
        if self.url is None:
            assert self.path is not None
            return Location(path=self.path / name)
        return Location(url=f"{self.url}/{name}", options=self.options)

    # -- the object store --------------------------------------------------------------------------------
    def obstore(self) -> Any:
        """Return the obstore store rooted at this URL (built once per process)."""
        store = self.__dict__.get("_store")
        if store is None or self.__dict__.get("_pid") != os.getpid():
            from obstore.store import from_url

            # zarrs rebuilds the store in its own extension module and warns on every array it opens: expected
            warnings.filterwarnings("ignore", message=_REBUILT, category=RuntimeWarning)
            assert self.url is not None
            store = from_url(self.url, **obstore_options(self.url, self.options))
            object.__setattr__(self, "_store", store)
            object.__setattr__(self, "_pid", os.getpid())
        return store

    def zarr_store(self, *, read_only: bool = True) -> zarr.abc.store.Store:
        """Return a zarr store rooted here: :class:`zarr.storage.ObjectStore` for a URL, a local store otherwise."""
        import zarr.storage

        if self.url is None:
            return zarr.storage.LocalStore(self.path, read_only=read_only)
        return zarr.storage.ObjectStore(self.obstore(), read_only=read_only)

    def get(self, key: str) -> bytes | None:
        """Return the bytes of ``key`` under this location, or ``None`` when there is none."""
        if self.url is None:
            assert self.path is not None
            p = self.path / key
            return p.read_bytes() if p.is_file() else None
        got = self.get_with_etag(key)
        return None if got is None else got[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str | None] | None:
        """Return the bytes of ``key`` and their e-tag (``None`` for a local file), or ``None`` when missing."""
        if self.url is None:
            data = self.get(key)
            return None if data is None else (data, None)
        import obstore

        try:
            res = obstore.get(self.obstore(), key)
            return bytes(res.bytes()), res.meta.get("e_tag")
        except FileNotFoundError as e:
            if "NoSuchBucket" in str(e):
                raise self._error("read", key, e, "the bucket does not exist") from e
            return None
        except Exception as e:
            raise self._error("read", key, e) from e

    def read_json(self, key: str, *, what: str = "collection") -> dict[str, Any] | None:
        """Read the JSON object at ``key`` without trusting it (see :func:`~._validate.read_json_file`); ``None`` if missing.

        Raises
        ------
        CollectionFormatError
            If it is too large, not UTF-8, not JSON or not an object.
        """
        if self.url is None:
            assert self.path is not None
            p = self.path / key
            return read_json_file(p, what=what) if p.is_file() else None
        raw = self.get(key)
        if raw is None:
            return None
        where = f"{self.url}/{key}"
        if len(raw) > MAX_JSON_BYTES:
            msg = f"{where}: {len(raw)} bytes, more than any {what} metadata file can be; the {what} is damaged"
            raise CollectionFormatError(msg)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            msg = f"{where}: cannot be read as JSON ({type(e).__name__}: {str(e)[:200]}); the {what} is damaged, restore or rewrite it"
            raise CollectionFormatError(msg) from e
        if not isinstance(doc, dict):
            msg = f"{where}: holds a JSON {type(doc).__name__}, not an object; the {what} is damaged, restore or rewrite it"
            raise CollectionFormatError(msg)
        return doc

    def exists(self) -> bool:
        """Whether anything is stored here (a directory, or any object under the URL's prefix)."""
        if self.url is None:
            assert self.path is not None
            return self.path.exists()
        return bool(self.list(limit=1))

    def list(self, prefix: str = "", *, limit: int | None = None) -> list[str]:
        """Keys under ``prefix`` (relative to this location); at most ``limit`` of them."""
        import obstore

        out: list[str] = []
        try:
            for batch in obstore.list(self.obstore(), prefix or None, chunk_size=1000):
                out.extend(m["path"] for m in batch)
                if limit is not None and len(out) >= limit:
                    return out[:limit]
        except Exception as e:
            raise self._error("list", prefix, e) from e
        return out

    def put(self, key: str, data: bytes, *, if_match: str | None = None, create: bool = False) -> str | None:
        """Store ``data`` at ``key``; conditional on its current e-tag (``if_match``) or on its absence (``create``).

        Returns the new e-tag. Raises obstore's ``PreconditionError`` / ``AlreadyExistsError`` when the condition
        fails (the caller names the conflict).
        """
        import obstore

        mode: Any = {"e_tag": if_match} if if_match is not None else ("create" if create else "overwrite")
        return obstore.put(self.obstore(), key, data, mode=mode).get("e_tag")

    def upload(self, key: str, file: Path, *, create: bool = False) -> None:
        """Upload a local file to ``key``; with ``create``, only if nothing is there yet (one PUT, no multipart).

        Raises obstore's ``AlreadyExistsError`` when ``create`` and the object exists.
        """
        import obstore

        if create:
            obstore.put(self.obstore(), key, file, mode="create", use_multipart=False)
        else:
            obstore.put(self.obstore(), key, file)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (missing ones are ignored)."""
        import obstore

        keys = list(keys)
        for i in range(0, len(keys), 1000):
            obstore.delete(self.obstore(), keys[i : i + 1000])

    def _error(self, op: str, key: str, e: Exception, why: str | None = None) -> OSError:
        why = why or f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        msg = (
            f"{self.url}: cannot {op} {key!r} ({why}); check the URL, that the bucket exists, and the "
            "credentials/endpoint in storage_options or the AWS_* environment variables"
        )
        return FileNotFoundError(msg) if why == "the bucket does not exist" else OSError(msg)


def location(path: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None = None) -> Location:
    """Parse a collection's path or URL (a URL's query string is kept as storage options, given ones win).

    Raises
    ------
    ValueError
        If ``storage_options`` is given for a local path.
    """
    if isinstance(path, Location):
        return path
    if is_url(path):
        assert isinstance(path, str)
        parts = urlsplit(path)
        options = dict(parse_qsl(parts.query))
        options.update(storage_options or {})
        url = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
        return Location(url=url, options=options)
    if storage_options:
        msg = f"storage_options were given for the local path {os.fspath(path)!r}; they apply to URLs (s3://...) only"
        raise ValueError(msg)
    text = os.fspath(path)
    if isinstance(text, str) and text.startswith("file://"):
        text = text[len("file://") :]
    return Location(path=Path(text))
