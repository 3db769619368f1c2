"""Open a lake from its URI: a local path, ``file://`` or ``s3://bucket/prefix``."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from gogooku3.config import S3Settings
from gogooku3.lake.errors import LakeURIError
from gogooku3.lake.lake import Lake, LocalLake, S3Lake

#: The embedded default: a directory under the working directory.
DEFAULT_LAKE_URI = "./data/lake"

# S3 bucket naming rules (3-63 chars, lowercase letters, digits, '.', '-'; letter/digit at both ends).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def is_s3_uri(uri: str) -> bool:
    """Whether ``uri`` names S3 (``s3://``, any case, as :func:`open_lake` reads it) rather than a
    local directory."""
    m = _SCHEME.match(uri.strip())
    return m is not None and m.group(1).lower() == "s3"


def open_lake(uri: str | os.PathLike[str] = DEFAULT_LAKE_URI, s3: S3Settings | None = None) -> Lake:
    """Open the lake at ``uri``.

    * ``./data/lake``, ``/srv/lake`` or ``file:///srv/lake``: :class:`LocalLake` (relative paths
      are resolved against the current directory now, so a later ``chdir`` does not move the lake).
    * ``s3://bucket`` or ``s3://bucket/prefix``: :class:`S3Lake`, endpoint and credentials from ``s3``
      (default: :meth:`S3Settings.from_env`, then boto3's default credential chain).

    Nothing is contacted here; the first read or write is. Anything else raises
    :class:`LakeURIError` naming the URI.
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise LakeURIError(f"lake URI {uri!r} is empty; use a path, file:///path or s3://bucket/prefix")
    uri = uri.strip()
    m = _SCHEME.match(uri)
    if m is None:
        return LocalLake(_check_local_path(uri, uri))
    scheme = m.group(1).lower()
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise LakeURIError(
                f"lake URI {uri!r}: file URIs need an absolute path (file:///path), not host {parts.netloc!r}"
            )
        if parts.query or parts.fragment:
            raise LakeURIError(f"lake URI {uri!r}: query strings and fragments are not allowed")
        return LocalLake(_check_local_path(unquote(parts.path), uri))
    if scheme == "s3":
        bucket, prefix = _parse_s3(uri)
        return S3Lake(bucket, prefix, s3)
    raise LakeURIError(
        f"lake URI {uri!r}: unsupported scheme {scheme!r} (use a local path, file:// or s3://)"
    )


def _check_local_path(path: str, uri: str) -> str:
    if not path:
        raise LakeURIError(f"lake URI {uri!r} has no path")
    if "\x00" in path:
        raise LakeURIError(f"lake URI {uri!r} contains a NUL byte")
    return os.path.abspath(os.path.expanduser(path))


def _parse_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise LakeURIError(
            f"lake URI {uri!r}: {bucket!r} is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, '.' or '-')"
        )
    if "?" in prefix or "#" in prefix:
        raise LakeURIError(f"lake URI {uri!r}: query strings and fragments are not allowed")
    segments = [s for s in prefix.split("/") if s]
    bad = [s for s in segments if s in (".", "..")]
    if bad:
        raise LakeURIError(f"lake URI {uri!r}: prefix may not contain '.' or '..' segments")
    return bucket, "/".join(segments)
