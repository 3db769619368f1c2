"""S3 (and S3-compatible: MinIO, moto, Ceph ...) storage backend for the lake.

Each object is written with one PUT, which S3 applies atomically: readers see the old object or the
new one. Credentials come from :class:`gogooku3.config.S3Settings` when both keys are set there,
otherwise from boto3's default chain (env, profile, instance role). They never appear in reprs or
error messages.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
from typing import Any

from gogooku3.config import S3Settings
from gogooku3.lake.errors import LakeStorageError
from gogooku3.lake.storage import _check_key

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


_SESSION_LOCK = threading.Lock()
_SESSION: Any = None


def _parse_timestamp(value: Any) -> dt.datetime:
    """botocore's timestamp parser, with the two forms S3 answers read by the standard library:
    ISO 8601 in listings (``LastModified`` of every key) and RFC 1123 in headers (every GET's
    ``Last-Modified``). botocore parses each with dateutil: the 12,498 timestamps of one feature
    build's listings and GETs took 7.7 of its 120 s (cProfile, moto server). Anything else goes to
    botocore's own parser."""
    from botocore.utils import parse_timestamp

    if isinstance(value, str):
        try:
            if value.endswith("Z") and "T" in value:
                return dt.datetime.fromisoformat(value)
            if value.endswith("GMT"):
                return email.utils.parsedate_to_datetime(value)
        except (ValueError, TypeError):
            pass
    return parse_timestamp(value)


def _new_session() -> Any:
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_parse_timestamp)
    return boto3.session.Session(botocore_session=core)


def make_s3_client(s3: S3Settings) -> Any:
    """A boto3 S3 client for ``s3`` (path-style addressing when a custom endpoint is set)."""
    from botocore.config import Config

    has_id, has_secret = bool(s3.access_key_id), bool(s3.secret_access_key)
    if has_id != has_secret:
        missing = "secret access key" if has_id else "access key id"
        raise LakeStorageError(
            f"S3 settings give only half a credential: the {missing} is missing "
            "(set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither to use boto3's default chain)"
        )
    kwargs: dict[str, Any] = {"region_name": s3.region}
    if s3.endpoint_url:
        kwargs["endpoint_url"] = s3.endpoint_url
    if has_id:
        kwargs["aws_access_key_id"] = s3.access_key_id.get()
        kwargs["aws_secret_access_key"] = s3.secret_access_key.get()
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # Bucket-in-hostname needs DNS that local S3-compatible servers do not have.
        s3={"addressing_style": "path"} if s3.endpoint_url else {},
    )
    if not has_id:
        # A fresh session resolves the default credential chain now, not from an earlier cache.
        return _new_session().client("s3", config=config, **kwargs)
    global _SESSION
    # With explicit keys a shared session is safe and saves reloading botocore's service models
    # (~0.3 s per lake). Sessions are not thread-safe, so creating clients is serialised; the
    # clients themselves are thread-safe.
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = _new_session()
        return _SESSION.client("s3", config=config, **kwargs)


class S3Storage:
    """Objects under ``s3://bucket/prefix/``."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    def __repr__(self) -> str:
        return f"S3Storage({self.root_uri!r})"

    @property
    def root_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _fail(self, op: str, key: str, e: Exception) -> LakeStorageError:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(e, NoCredentialsError):
            return LakeStorageError(
                f"S3 {op} {self.uri(key)}: no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "the s3_lake connection, or an instance role)"
            )
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            return LakeStorageError(
                f"S3 {op} {self.uri(key)} failed: {err.get('Code', '?')} {err.get('Message', '')}".rstrip()
            )
        return LakeStorageError(f"S3 {op} {self.uri(key)} failed: {type(e).__name__}: {e}")

    @staticmethod
    def _code(e: Exception) -> str | None:
        from botocore.exceptions import ClientError

        if isinstance(e, ClientError):
            return str(e.response.get("Error", {}).get("Code"))
        return None

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            )
        except (ClientError, BotoCoreError) as e:
            raise self._fail("put", key, e) from e

    def get_bytes(self, key: str) -> bytes:
        found = self.get_versioned(key)
        if found is None:
            raise FileNotFoundError(self.uri(key))
        return found[0]

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return answer["Body"].read(), str(answer["ETag"])
        except (ClientError, BotoCoreError) as e:
            if self._code(e) in _NOT_FOUND:
                return None
            raise self._fail("get", key, e) from e

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except (ClientError, BotoCoreError) as e:
            if self._code(e) in _NOT_FOUND:
                return False
            raise self._fail("head", key, e) from e

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", ()))
        except (ClientError, BotoCoreError) as e:
            raise self._fail("list", prefix, e) from e
        return sorted(keys)

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as e:
            raise self._fail("delete", key, e) from e

    def delete_prefix(self, prefix: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        keys = self.list(prefix)
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            try:
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (ClientError, BotoCoreError) as e:
                raise self._fail("delete", prefix, e) from e
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise LakeStorageError(
                    f"S3 delete under {self.uri(prefix)} failed for {len(answer['Errors'])} objects, "
                    f"first {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"
                )

    def put_if(
        self,
        key: str,
        data: bytes,
        *,
        expected: str | None,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Conditional PUT (``If-Match``/``If-None-Match: *``), supported by S3 since 2024 and by moto.

        A server that ignores the condition degrades this to last-writer-wins.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        condition = {"IfMatch": expected} if expected is not None else {"IfNoneMatch": "*"}
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type, **condition
            )
            return True
        except (ClientError, BotoCoreError) as e:
            if self._code(e) in _PRECONDITION:
                return False
            # If-Match on an object deleted meanwhile answers 404: someone else changed it first.
            if expected is not None and self._code(e) in _NOT_FOUND:
                return False
            raise self._fail("put", key, e) from e
