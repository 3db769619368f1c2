"""Async J-Quants client (v2 and v1) returning canonical Polars frames.

::

    async with JQuantsClient(settings.jquants) as client:
        bars = await client.fetch("daily_quotes", date=date(2024, 1, 4))       # whole market, all pages
        frames = await client.fetch_many([Query("topix", from_=d0, to=d1), Query("statements", date=d0)])

What it guarantees
------------------
* **Paging**: a query's pages are fetched in order, following ``pagination_key`` until it is absent.
  Pages of one query are sequential by nature; parallelism is across queries (:meth:`fetch_many`):
  at most ``settings.concurrency`` (default 8) queries active and as many requests in flight, over
  one ``ClientSession``.
* **Rate**: every HTTP request (token calls and retries included) first takes a slot from the
  shared :class:`~gogooku3.jquants.pacer.RatePacer`, so the process - and every other process
  pacing against the same account on this host - stays under ``settings.rate_per_minute``.
  (One exception outside our control: aiohttp itself re-sends an idempotent request once when a
  reused keep-alive connection turns out to be closed; such a re-send is not paced.)
* **Retries**: exponential backoff with full jitter (``uniform(0, min(cap, base * 2**n))``) on 429
  (never sooner than ``Retry-After``), 5xx, timeouts, dropped connections and pages that are not
  JSON or lack their data key. The same page is retried (same ``pagination_key``), so no row is lost
  or duplicated. After ``settings.max_retries`` retries it raises :class:`RequestFailedError` naming
  the endpoint, the params (secrets masked) and the page number.
* **Auth**: v2 sends ``x-api-key``; a 401 (bad key) or 403 raises :class:`AuthError` at once. v1
  keeps an id token fresh (see :mod:`gogooku3.jquants.auth`); a 401 refreshes it (once for all
  requests that carried the same token) and retries the same page. When ``max_auth_refreshes``
  (default 3) refreshes in a row were each answered 401 with no authenticated request succeeding
  in between, the account itself is refused and :class:`AuthError` is raised. (Not "the second
  401": a token can be revoked while requests carrying it are in flight - the emulator's
  ``token_expiry`` fault does exactly that to fresh tokens - and one unlucky page must not fail
  a backfill; a run of refused fresh tokens with no success anywhere cannot be luck.)
* **Schema**: rows are normalised by :func:`gogooku3.jquants.normalize.to_frame` into the dataset's
  canonical schema, identical for v1 and v2.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import polars as pl

from gogooku3.config import JQuantsSettings
from gogooku3.jquants.auth import ApiKeyAuth, Auth, IdTokenAuth
from gogooku3.jquants.datasets import Dataset, get_dataset
from gogooku3.jquants.errors import AuthError, JQuantsError, RequestFailedError, safe_params
from gogooku3.jquants.normalize import to_frame
from gogooku3.jquants.pacer import RatePacer, fingerprint
from gogooku3.redaction import library_logger, scrub

log = library_logger(__name__)

#: Failures worth another try: the server or the path to it was briefly unwell.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
    aiohttp.ServerConnectionError,
    aiohttp.ClientConnectionError,
)


def _date_param(value: dt.date | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class Query:
    """One logical request of a dataset (possibly several pages)."""

    dataset: str
    date: dt.date | str | None = None
    code: str | None = None
    from_: dt.date | str | None = None
    to: dt.date | str | None = None
    section: str | None = None

    def params(self) -> dict[str, str]:
        """Query-string parameters; the names are the same in v1 and v2."""
        raw = {
            "code": self.code,
            "date": _date_param(self.date),
            "from": _date_param(self.from_),
            "to": _date_param(self.to),
            "section": self.section,
        }
        return {k: v for k, v in raw.items() if v is not None}


@dataclass
class FetchOutcome:
    """A query's canonical frame plus what it cost."""

    query: Query
    frame: pl.DataFrame
    pages: int
    requests: int


@dataclass
class ClientStats:
    """Counters over the client's lifetime (for logs, FetchResult and the benchmark)."""

    requests: int = 0
    pages: int = 0
    retries: int = 0
    throttled: int = 0  # 429s received
    auth_refreshes: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class _Retry(Exception):
    """Internal: this attempt failed transiently; ``wait_at_least`` honours Retry-After."""

    def __init__(self, reason: str, *, status: int | None = None, wait_at_least: float = 0.0) -> None:
        super().__init__(reason)
        self.reason, self.status, self.wait_at_least = reason, status, wait_at_least


class _Unauthorized(Exception):
    """Internal: 401; carries the headers that were refused so auth can tell stale from fresh."""

    def __init__(self, sent_headers: dict[str, str]) -> None:
        super().__init__("401")
        self.sent_headers = sent_headers


class _Fatal(Exception):
    """Internal: a status that retrying cannot fix (404, 400 ...)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 0.0  # an HTTP-date Retry-After: fall back to our own backoff


class JQuantsClient:
    """Async J-Quants client; use as ``async with JQuantsClient(settings) as client``.

    ``backoff_base_s``/``backoff_cap_s`` shape the retry delays; ``id_token_lifetime_s`` and
    ``refresh_margin_s`` the v1 proactive refresh. ``pacer`` may be injected (tests, benchmarks).
    """

    def __init__(
        self,
        settings: JQuantsSettings,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        id_token_lifetime_s: float | None = None,
        refresh_margin_s: float | None = None,
        pacer: RatePacer | None = None,
        rng: random.Random | None = None,
        max_auth_refreshes: int = 3,
    ) -> None:
        self.settings = settings
        self.version = settings.api_version
        self.base_url = settings.base_url.rstrip("/")
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.max_auth_refreshes = max_auth_refreshes
        #: refreshes answered by a 401 again, with no authenticated success since (see docstring)
        self._refreshes_without_success = 0
        self.stats = ClientStats()
        self._rng = rng or random.Random()
        credential = (
            settings.api_key.get()
            if self.version == "v2"
            else (settings.email.get() or settings.refresh_token.get())
        )
        self.pacer = pacer or RatePacer(
            settings.rate_per_minute,
            key=fingerprint(self.base_url, self.version, credential),
            state_dir=settings.pacer_dir or None,
            redis_url=settings.pacer_url or None,
        )
        self._semaphore = asyncio.Semaphore(max(settings.concurrency, 1))
        self._query_slots = asyncio.Semaphore(max(settings.concurrency, 1))
        self._session: aiohttp.ClientSession | None = None
        auth_kwargs: dict[str, float] = {}
        if id_token_lifetime_s is not None:
            auth_kwargs["id_token_lifetime_s"] = id_token_lifetime_s
        if refresh_margin_s is not None:
            auth_kwargs["refresh_margin_s"] = refresh_margin_s
        self.auth: Auth = (
            ApiKeyAuth(settings.api_key)
            if self.version == "v2"
            else IdTokenAuth(settings, self._post_token, **auth_kwargs)
        )

    def __repr__(self) -> str:  # never show credentials
        return f"JQuantsClient(version={self.version!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> JQuantsClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            connector=aiohttp.TCPConnector(limit=max(self.settings.concurrency, 1) * 2),
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ public API

    async def fetch(
        self,
        dataset_name: str,
        *,
        date: dt.date | str | None = None,
        code: str | None = None,
        from_: dt.date | str | None = None,
        to: dt.date | str | None = None,
        section: str | None = None,
    ) -> pl.DataFrame:
        """All pages of one query as the dataset's canonical frame."""
        query = Query(dataset_name, date=date, code=code, from_=from_, to=to, section=section)
        return (await self.fetch_query(query)).frame

    async def fetch_many(self, queries: Iterable[Query]) -> list[pl.DataFrame]:
        """Several queries concurrently (bounded by ``settings.concurrency``); frames in input order."""
        outcomes = await self.fetch_queries(queries)
        return [o.frame for o in outcomes]

    async def fetch_queries(self, queries: Iterable[Query]) -> list[FetchOutcome]:
        """Like :meth:`fetch_many` but with each query's page/request counts.

        At most ``concurrency`` queries are active at a time, so each one runs through its pages
        and is released (frame built, records dropped) instead of all queries holding partial
        pages at once. If one query fails, the others are cancelled and the error is raised.
        """

        async def one(query: Query) -> FetchOutcome:
            async with self._query_slots:
                return await self.fetch_query(query)

        tasks = [asyncio.ensure_future(one(q)) for q in queries]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def fetch_query(self, query: Query) -> FetchOutcome:
        """Fetch every page of ``query``; returns the canonical frame and its cost."""
        dataset = get_dataset(query.dataset)
        params = query.params()
        if "date" in params:  # the dataset's own name for it (the short-sale reports: disclosed_date)
            params[dataset.date_param_name(self.version)] = params.pop("date")
        records, pages, requests = await self._fetch_records(dataset, params)
        return FetchOutcome(query, to_frame(dataset, self.version, records), pages, requests)

    async def fetch_records(self, dataset_name: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Raw wire records of every page (protocol field names), for callers that need them."""
        dataset = get_dataset(dataset_name)
        records, _, _ = await self._fetch_records(dataset, params)
        return records

    # ------------------------------------------------------------------ paging

    async def _fetch_records(
        self, dataset: Dataset, params: dict[str, str]
    ) -> tuple[list[dict[str, Any]], int, int]:
        path = dataset.path(self.version)
        key = dataset.data_key(self.version)
        records: list[dict[str, Any]] = []
        seen_keys: set[str] = set()
        page, requests = 0, 0
        pagination_key: str | None = None
        while True:
            page += 1
            page_params = dict(params)
            if pagination_key is not None:
                page_params["pagination_key"] = pagination_key
            payload, tries = await self._get_page(path, page_params, key, page)
            requests += tries
            rows = payload[key]
            records.extend(rows)
            next_key = payload.get("pagination_key")
            if not next_key:
                break
            if next_key in seen_keys:  # a server bug would otherwise loop forever
                raise RequestFailedError(
                    f"pagination_key repeated ({dataset.name})",
                    endpoint=path,
                    params=page_params,
                    page=page,
                    attempts=tries,
                )
            seen_keys.add(next_key)
            pagination_key = str(next_key)
        self.stats.pages += page
        return records, page, requests

    async def _get_page(
        self, path: str, params: dict[str, str], data_key: str, page: int
    ) -> tuple[dict[str, Any], int]:
        """One page with retries; returns the parsed payload and the number of HTTP requests."""

        def check(payload: Any) -> None:
            if not isinstance(payload, dict) or not isinstance(payload.get(data_key), list):
                raise _Retry(f"answer lacks its {data_key!r} list", status=200)

        return await self._request("GET", path, params, None, page=page, check=check, authed=True)

    async def _post_token(
        self, path: str, params: dict[str, str], body: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Token endpoints (v1): retried like pages; 400/401/403 mean refused credentials."""

        def check(payload: Any) -> None:
            if not isinstance(payload, dict):
                raise _Retry("token answer is not a JSON object", status=200)

        payload, _ = await self._request("POST", path, params, body, page=1, check=check, authed=False)
        self.stats.auth_refreshes += path.endswith("auth_refresh")
        return payload

    # ------------------------------------------------------------------ one HTTP exchange with retries

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: dict[str, Any] | None,
        *,
        page: int,
        check: Any,
        authed: bool,
    ) -> tuple[Any, int]:
        if self._session is None:
            raise JQuantsError("JQuantsClient used outside 'async with'")
        url = f"{self.base_url}{path}"
        attempts = 0
        retries = 0
        while True:
            attempts += 1
            try:
                payload = await self._send_once(method, url, params, body, authed=authed)
                check(payload)
                if authed:
                    self._refreshes_without_success = 0
                return payload, attempts
            except _Unauthorized as unauthorized:
                if not authed:
                    raise AuthError(
                        f"J-Quants refused the credentials at {path} (401): check JQUANTS_AUTH_EMAIL/"
                        "JQUANTS_AUTH_PASSWORD/JQUANTS_REFRESH_TOKEN"
                    ) from None
                if self._refreshes_without_success >= self.max_auth_refreshes:
                    raise AuthError(
                        f"J-Quants answered 401 again right after {self._refreshes_without_success} "
                        f"id-token refreshes [endpoint={path} params={safe_params(params)} page={page}]"
                    ) from None
                # v2 raises AuthError here; v1 refreshes unless another request already did
                if await self.auth.on_unauthorized(unauthorized.sent_headers):
                    self._refreshes_without_success += 1
                continue
            except _Retry as exc:
                reason, status, floor = exc.reason, exc.status, exc.wait_at_least
            except _Fatal as exc:
                raise RequestFailedError(
                    f"J-Quants answered {exc.status}: {exc.detail}",
                    endpoint=path,
                    params=params,
                    page=page,
                    attempts=attempts,
                    status=exc.status,
                ) from None
            except TRANSIENT_EXCEPTIONS as exc:
                reason, status, floor = scrub(f"{type(exc).__name__}: {exc}").rstrip(": "), None, 0.0
            self.stats.errors[reason.split(":")[0]] += 1
            if retries >= self.settings.max_retries:
                raise RequestFailedError(
                    f"J-Quants request failed after {retries} retries: {reason}",
                    endpoint=path,
                    params=params,
                    page=page,
                    attempts=attempts,
                    status=status,
                )
            delay = max(floor, self._backoff(retries))
            retries += 1
            self.stats.retries += 1
            log.warning(
                "J-Quants %s %s page %d: %s; retry %d/%d in %.2fs",
                path,
                safe_params(params),
                page,
                reason,
                retries,
                self.settings.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    def _backoff(self, retry: int) -> float:
        """Full jitter: uniform over [0, min(cap, base * 2**retry)]."""
        return self._rng.uniform(0.0, min(self.backoff_cap_s, self.backoff_base_s * (2**retry)))

    async def _send_once(
        self,
        method: str,
        url: str,
        params: dict[str, str],
        body: dict[str, Any] | None,
        *,
        authed: bool,
    ) -> Any:
        assert self._session is not None
        if not authed:
            # Token calls skip the semaphore: they run while data requests hold its slots waiting
            # for the very token being fetched, so queueing them there could deadlock.
            return await self._exchange(method, url, params, body, {})
        async with self._semaphore:
            # Headers are taken once a slot is held, right before sending, so queued requests
            # never go out with a token that was refreshed while they waited.
            headers = await self.auth.headers()
            return await self._exchange(method, url, params, body, headers)

    async def _exchange(
        self,
        method: str,
        url: str,
        params: dict[str, str],
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> Any:
        assert self._session is not None
        await self.pacer.acquire()
        self.stats.requests += 1
        async with self._session.request(method, url, params=params, json=body, headers=headers) as resp:
            status = resp.status
            self.stats.statuses[status] += 1
            retry_after = resp.headers.get("Retry-After")
            raw = await resp.read()
        if status == 200:
            try:
                return json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise _Retry("answer is not valid JSON", status=200) from None
        detail = _message(raw)
        if status == 401:
            raise _Unauthorized(headers)
        if status == 403:
            raise AuthError(f"J-Quants refused access (403) to {url.removeprefix(self.base_url)}: {detail}")
        if status == 429:
            self.stats.throttled += 1
            raise _Retry("429 rate limited", status=429, wait_at_least=_retry_after(retry_after))
        if status >= 500:
            raise _Retry(f"{status} server error: {detail}", status=status)
        if status == 400 and url.endswith(("/token/auth_user", "/token/auth_refresh")):
            raise AuthError(
                f"J-Quants refused the credentials at {url.removeprefix(self.base_url)} (400): {detail}"
            )
        raise _Fatal(status, detail)


def _message(raw: bytes) -> str:
    """The server's error message (J-Quants answers ``{"message": ...}``), shortened."""
    try:
        payload = json.loads(raw)
        if isinstance(payload, dict) and "message" in payload:
            return scrub(str(payload["message"]))[:200]
    except (ValueError, UnicodeDecodeError):
        pass
    return scrub(raw.decode("utf-8", "replace"))[:200]


async def fetch_frames(settings: JQuantsSettings, queries: Sequence[Query]) -> list[pl.DataFrame]:
    """Convenience: open a client, run ``queries`` concurrently, close."""
    async with JQuantsClient(settings) as client:
        return await client.fetch_many(queries)
