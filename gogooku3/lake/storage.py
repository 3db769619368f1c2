"""Byte-level storage under the lake: the only part that differs between a local path and S3.

A backend stores whole objects under ``/``-separated keys relative to the lake root. Everything
else (layout, manifests, checksums, the latest-good marker) lives once, in :mod:`gogooku3.lake.lake`.

Guarantees every backend gives:

* ``put_bytes`` is atomic: a reader sees the old object or the new one, never a mix or a prefix.
  (Local: hidden temp file in the same directory, fsync, ``os.replace``, fsync of the directory.
  S3: a single PUT, which S3 applies atomically.)
* ``get_bytes`` raises :class:`FileNotFoundError` for a missing object.
* ``list`` never returns a backend's own bookkeeping (the local backend's hidden temp/lock files).
* ``get_versioned``/``put_if`` give compare-and-swap on one small object (the latest-good marker), so
  parallel gate tasks of a backfill cannot move it backwards by racing each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote

from gogooku3.lake.errors import LakeStorageError


@runtime_checkable
class Storage(Protocol):
    """Whole-object storage under ``/``-separated keys relative to the lake root."""

    @property
    def root_uri(self) -> str:
        """URI of the lake root (``file:///...`` or ``s3://bucket/prefix``)."""
        ...

    def uri(self, key: str) -> str:
        """URI of one key, for logs and Airflow Assets."""
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous object."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; :class:`FileNotFoundError` if absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Every key below ``prefix/`` (recursively), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove one object; a missing one is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object below ``prefix/``."""
        ...

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """``(bytes, version token)`` of the object, or None when absent."""
        ...

    def put_if(
        self,
        key: str,
        data: bytes,
        *,
        expected: str | None,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Store ``data`` only if the object is still at version ``expected`` (None: still absent).

        Returns False, writing nothing, when someone else changed it first.
        """
        ...


def _check_key(key: str) -> str:
    # Keys are built by gogooku3.lake.layout from validated names; this is a last line of defence.
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise LakeStorageError(f"refusing unsafe storage key {key!r}")
    return key


class LocalStorage:
    """A directory on the local filesystem (or a mounted volume)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    @property
    def root_uri(self) -> str:
        return _file_uri(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    def uri(self, key: str) -> str:
        return _file_uri(self._path(key))

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LakeStorageError(f"cannot create directory for {self.uri(key)}: {e}") from e
        # Same directory as the target so os.replace is a rename on one filesystem (atomic); the
        # leading dot hides a temp file left by a killed writer from listings and Hive readers.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(e, OSError):
                raise LakeStorageError(f"cannot write {self.uri(key)}: {e}") from e
            raise
        _fsync_dir(path.parent)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(self.uri(key)) from None
        except OSError as e:
            raise LakeStorageError(f"cannot read {self.uri(key)}: {e}") from e

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            keys.extend(f"{rel}/{name}" for name in filenames if not name.startswith("."))
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise LakeStorageError(f"cannot delete {self.uri(key)}: {e}") from e

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.get_bytes(key)
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def put_if(
        self,
        key: str,
        data: bytes,
        *,
        expected: str | None,
        content_type: str = "application/octet-stream",
    ) -> bool:
        with self._locked(key):
            current = self.get_versioned(key)
            token = current[1] if current is not None else None
            if token != expected:
                return False
            self.put_bytes(key, data, content_type=content_type)
            return True

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """An exclusive advisory lock on ``key`` across processes of this host (hidden lock file)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_name(f".{path.name}.lock")
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _file_uri(path: Path) -> str:
    """``file:///abs/path`` keeping ``=`` readable (``date=2024-01-04``; RFC 3986 allows it in paths)."""
    return "file://" + quote(path.as_posix(), safe="/=:@!$&'()*+,;-._~")


def _fsync_dir(path: Path) -> None:
    """Persist the rename itself (the directory entry), not only the file's bytes."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and platforms) cannot fsync a directory; the data is still synced
    finally:
        os.close(fd)
