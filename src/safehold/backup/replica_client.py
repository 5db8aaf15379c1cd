"""One object-store prefix, through obstore (one library for local folders, S3,
GCS and Azure). Objects are written once: segments, blobs and snapshots are never
overwritten (only the manifest is)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import obstore
from obstore.store import from_url

from safehold.errors import SafeholdError


RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=20),
         "backoff": {"init_backoff": timedelta(milliseconds=100),
                     "max_backoff": timedelta(seconds=2), "base": 2}}
try:  # obstore (pyo3) reports some configuration errors as a panic, a BaseException
    from pyo3_runtime import PanicException as _Panic  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the binding's build
    class _Panic(Exception):  # type: ignore[no-redef]
        pass


def _missing(exc: BaseException) -> bool:
    """Not found, also when a path runs through an existing object (ENOTDIR on a
    folder replica): S3 calls that missing too, and so must every backend."""
    text = str(exc).lower()
    return (isinstance(exc, (FileNotFoundError, NotADirectoryError))
            or type(exc).__name__ == "NotFoundError" or "not found" in text
            or "os error 20" in text or "not a directory" in text)


class ReplicaError(SafeholdError):
    """The replica could not be reached or answered wrongly."""


class ObjectMissing(ReplicaError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size: int


class ReplicaClient(Protocol):
    url: str

    def put_once(self, path: str, data: bytes) -> bool: ...
    def put(self, path: str, data: bytes) -> None: ...
    def get(self, path: str) -> bytes: ...
    def exists(self, path: str) -> bool: ...
    def list(self, prefix: str, after: str | None = None) -> Iterator[ObjectInfo]: ...
    def delete(self, path: str) -> None: ...


class ObjectStoreReplica:
    """``file:///abs/path`` or ``s3://bucket/prefix?endpoint=http://host:port``
    (credentials from the usual AWS_* environment variables), or any other URL
    obstore understands (gs://, az://, ...)."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        options: dict[str, Any] = {}
        # Fail within seconds when a replica is down: the shipper retries on its own.
        client: dict[str, Any] = {"connect_timeout": "5s", "timeout": "120s"}
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        base = url.split("?", 1)[0]
        try:
            if parts.scheme == "file":
                import os
                os.makedirs(parts.path, exist_ok=True)
                self._store = from_url(base)
            elif parts.scheme == "s3":
                if "endpoint" in query:
                    options["endpoint"] = query["endpoint"]
                    options["virtual_hosted_style_request"] = False
                    client["allow_http"] = query["endpoint"].startswith("http://")
                if "region" in query:
                    options["region"] = query["region"]
                options.setdefault("region", "us-east-1")
                self._store = from_url(base, client_options=client,  # type: ignore[call-overload]
                                       retry_config=RETRY,
                                       **options)
            else:
                self._store = from_url(base)
        except (Exception, _Panic) as exc:  # noqa: BLE001 - obstore raises many kinds
            raise ReplicaError(f"cannot open replica {url}: {exc}") from exc
        self._conditional = parts.scheme != "s3"

    def put_once(self, path: str, data: bytes) -> bool:
        """Write ``path`` unless it exists; False if it already did."""
        try:
            if self._conditional:
                obstore.put(self._store, path, data, mode="create")
                return True
            # Not every S3 implementation honours If-None-Match; a single shipper
            # writes at a time, so check-then-put is enough there.
            if self.exists(path):
                return False
            obstore.put(self._store, path, data)
            return True
        except obstore.exceptions.AlreadyExistsError:
            return False
        except Exception as exc:  # noqa: BLE001
            raise ReplicaError(f"writing {path} to {self.url} failed: {exc}") from exc

    def put(self, path: str, data: bytes) -> None:
        try:
            obstore.put(self._store, path, data)
        except Exception as exc:  # noqa: BLE001
            raise ReplicaError(f"writing {path} to {self.url} failed: {exc}") from exc

    def get(self, path: str) -> bytes:
        try:
            return bytes(obstore.get(self._store, path).bytes())
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                raise ObjectMissing(f"{path} is missing from {self.url}") from exc
            raise ReplicaError(f"reading {path} from {self.url} failed: {exc}") from exc

    def exists(self, path: str) -> bool:
        try:
            obstore.head(self._store, path)
            return True
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return False
            raise ReplicaError(f"checking {path} on {self.url} failed: {exc}") from exc

    def list(self, prefix: str, after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects under the folder ``prefix`` (whole path segments: "segments/" lists
        the segments, "segments/0001-" nothing), only names sorting after ``after``
        if given (one cheap request on S3: ListObjectsV2 start-after)."""
        try:
            for batch in (obstore.list(self._store, prefix=prefix) if after is None else
                          obstore.list(self._store, prefix=prefix, offset=after)):
                for meta in batch:
                    yield ObjectInfo(str(meta["path"]), int(meta["size"]))
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return
            raise ReplicaError(f"listing {prefix} on {self.url} failed: {exc}") from exc

    def delete(self, path: str) -> None:
        try:
            obstore.delete(self._store, path)
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return  # deleting what is gone is done (a re-run after a crash)
            raise ReplicaError(f"deleting {path} on {self.url} failed: {exc}") from exc


def open_replica(url: str) -> ReplicaClient:
    if not any(url.startswith(s) for s in ("file:///", "s3://", "gs://", "az://", "abfs://",
                                           "memory://")):
        raise ReplicaError(f"unsupported replica URL {url!r}: use file:///ABS/PATH or "
                           "s3://bucket/prefix?endpoint=http://host:port")
    return ObjectStoreReplica(url)
