"""Authentication for both J-Quants protocols.

* **v2**: a static API key sent as ``x-api-key``. A 401 means the key is wrong; nothing to refresh.
* **v1**: e-mail + password -> refresh token (``POST /token/auth_user``, valid about a week);
  refresh token -> id token (``POST /token/auth_refresh?refreshtoken=...``, valid 24 h) sent as
  ``Authorization: Bearer <idToken>``. :class:`IdTokenAuth` refreshes the id token *before* it
  expires (lifetime minus a margin, both configurable) and on demand after a 401; when the refresh
  token itself is refused it logs in again with e-mail/password if those are configured.

The HTTP calls are delegated to a ``post`` callable supplied by the client, so retries, pacing and
error handling are the client's and this module holds only the token state machine. Tokens live
in :class:`~gogooku3.config.Secret` and never reach a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gogooku3.config import JQuantsSettings, Secret
from gogooku3.jquants.errors import AuthError
from gogooku3.redaction import library_logger

log = library_logger(__name__)

#: id tokens live 24 h (J-Quants v1 spec).
ID_TOKEN_LIFETIME_S = 24 * 3600.0
#: Refresh this long before the id token's nominal expiry (clock skew, long paged queries).
ID_TOKEN_REFRESH_MARGIN_S = 15 * 60.0

#: ``post(path, params, json_body) -> parsed JSON`` supplied by the client. It raises
#: :class:`AuthError` on 400/401/403 from a token endpoint and retries transient failures itself.
Post = Callable[[str, dict[str, str], dict[str, Any] | None], Awaitable[dict[str, Any]]]


class Auth(Protocol):
    async def headers(self) -> dict[str, str]:
        """Headers that authenticate the next request."""

    async def on_unauthorized(self, sent_headers: dict[str, str]) -> bool:
        """A request sent with ``sent_headers`` got 401: refresh (True), note that another request
        already refreshed that token (False), or raise :class:`AuthError`."""


class ApiKeyAuth:
    """v2: ``x-api-key``. A 401 is final: the key is wrong or revoked."""

    def __init__(self, api_key: Secret) -> None:
        if not api_key:
            raise AuthError("JQUANTS_API_KEY is empty (needed for J-Quants v2)")
        self._key = api_key

    async def headers(self) -> dict[str, str]:
        return {"x-api-key": self._key.get()}

    async def on_unauthorized(self, sent_headers: dict[str, str]) -> bool:
        raise AuthError("J-Quants v2 refused the API key (401): check JQUANTS_API_KEY")


class IdTokenAuth:
    """v1: id token from a refresh token, itself from e-mail/password; refreshed before expiry."""

    def __init__(
        self,
        settings: JQuantsSettings,
        post: Post,
        *,
        id_token_lifetime_s: float = ID_TOKEN_LIFETIME_S,
        refresh_margin_s: float = ID_TOKEN_REFRESH_MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.refresh_token and not (settings.email and settings.password):
            raise AuthError(
                "J-Quants v1 needs JQUANTS_REFRESH_TOKEN or JQUANTS_AUTH_EMAIL and JQUANTS_AUTH_PASSWORD"
            )
        self._settings = settings
        self._post = post
        self._usable_s = max(id_token_lifetime_s - refresh_margin_s, 0.0)
        self._clock = clock
        self._refresh_token: Secret = settings.refresh_token
        self._id_token: Secret | None = None
        self._obtained_at = 0.0
        self._lock = asyncio.Lock()
        #: how many id tokens were obtained (observable in tests and benchmarks)
        self.id_token_count = 0
        self.login_count = 0

    def _fresh(self) -> bool:
        return self._id_token is not None and self._clock() - self._obtained_at < self._usable_s

    async def headers(self) -> dict[str, str]:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    await self._obtain_id_token()
        assert self._id_token is not None
        return {"Authorization": f"Bearer {self._id_token.get()}"}

    async def on_unauthorized(self, sent_headers: dict[str, str]) -> bool:
        sent = sent_headers.get("Authorization", "")
        async with self._lock:
            # Several requests may hit 401 with the same stale token; refresh once for all of them.
            if self._id_token is not None and sent != f"Bearer {self._id_token.get()}":
                return False
            await self._obtain_id_token()
            return True

    async def _login(self) -> None:
        if not (self._settings.email and self._settings.password):
            raise AuthError("J-Quants v1 refresh token was refused and no e-mail/password is configured")
        body = {"mailaddress": self._settings.email.get(), "password": self._settings.password.get()}
        answer = await self._post("/token/auth_user", {}, body)
        token = answer.get("refreshToken")
        if not isinstance(token, str) or not token:
            raise AuthError("J-Quants v1 /token/auth_user answered without a refreshToken")
        self._refresh_token = Secret(token)
        self.login_count += 1

    async def _obtain_id_token(self) -> None:
        if not self._refresh_token:
            await self._login()
        try:
            answer = await self._post(
                "/token/auth_refresh", {"refreshtoken": self._refresh_token.get()}, None
            )
        except AuthError:
            if not (self._settings.email and self._settings.password):
                raise
            # The refresh token (a week's lifetime) expired or was revoked: log in again once.
            log.info("J-Quants v1 refresh token refused; logging in again with e-mail/password")
            await self._login()
            answer = await self._post(
                "/token/auth_refresh", {"refreshtoken": self._refresh_token.get()}, None
            )
        token = answer.get("idToken")
        if not isinstance(token, str) or not token:
            raise AuthError("J-Quants v1 /token/auth_refresh answered without an idToken")
        self._id_token = Secret(token)
        self._obtained_at = self._clock()
        self.id_token_count += 1
        log.debug("J-Quants v1 id token obtained (#%d)", self.id_token_count)
