"""Errors raised by the J-Quants client.

Every message names what went wrong (dataset, endpoint, field, page) and never carries a secret:
query parameters are passed through :func:`safe_params` before they reach a message, credentials
are only ever held in :class:`gogooku3.config.Secret`, and every message is scrubbed by
:func:`gogooku3.redaction.scrub` when the exception is created (a server may echo a key).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gogooku3.redaction import MASK, SECRET_NAMES, ScrubbedMessage


def safe_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``params`` with secret values masked, for messages and logs."""
    return {k: (MASK if k.lower() in SECRET_NAMES else v) for k, v in (params or {}).items()}


class JQuantsError(ScrubbedMessage, RuntimeError):
    """Base class for everything the client raises; its message is scrubbed of secrets."""


class AuthError(JQuantsError):
    """Credentials were refused (bad API key, 403, refresh failure); retrying cannot help."""


class SchemaError(JQuantsError, ValueError):
    """An answer does not match the dataset's declared schema (missing required field, bad value)."""

    def __init__(self, dataset: str, field: str, version: str, problem: str) -> None:
        self.dataset, self.field, self.version = dataset, field, version
        super().__init__(f"{dataset} ({version}): field {field!r} {problem}")


class RequestFailedError(JQuantsError):
    """A page could not be fetched after the allowed retries (or failed with a fatal status)."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        params: Mapping[str, Any] | None,
        page: int,
        attempts: int,
        status: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.params = safe_params(params)
        self.page = page
        self.attempts = attempts
        self.status = status
        super().__init__(
            f"{message} [endpoint={endpoint} params={self.params} page={page} attempts={attempts}"
            + (f" status={status}" if status is not None else "")
            + "]"
        )
