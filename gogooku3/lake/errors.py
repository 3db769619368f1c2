"""The lake's exceptions. Every message names the partition (layer/dataset/date) and the lake URI."""

from __future__ import annotations

from gogooku3.redaction import ScrubbedMessage


class LakeError(ScrubbedMessage, Exception):
    """Base class of everything the lake raises on purpose; its message is scrubbed of secrets (a
    storage error can quote a URL or an answer that carries a credential)."""


class LakeURIError(LakeError, ValueError):
    """A lake URI that cannot be opened (unknown scheme, bad bucket, traversal in the path)."""


class InvalidNameError(LakeError, ValueError):
    """A layer, dataset, date or artifact name that is not allowed (unknown layer, path traversal ...)."""


class MissingPartitionError(LakeError, FileNotFoundError):
    """The partition (or the artifact, or a date of a required range) is not in the lake."""


class CorruptPartitionError(LakeError):
    """The partition's data does not match its manifest (e.g. a writer died between its two writes).

    Rewriting the partition heals it.
    """


class LakeStorageError(LakeError):
    """The storage backend failed (S3 error, permission denied ...); the message names the object."""
