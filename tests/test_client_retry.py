"""Client behaviour against a scripted aiohttp server on 127.0.0.1 (retries, auth, paging, errors).

The server here is a few lines per scenario so each test controls exactly which response comes next;
the full emulator is exercised in test_client_emulator.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gogooku3.config import JQuantsSettings, Secret
from gogooku3.jquants.client import JQuantsClient, Query
from gogooku3.jquants.errors import AuthError, RequestFailedError

API_KEY = "k-123-very-secret"
PASSWORD = "pw-very-secret"

ROWS = [
    {"Date": "2024-01-04", "Code": f"{1300 + i}0", "O": 1.0 + i, "H": 2.0, "L": 0.5, "C": 1.5, "Vo": 10.0}
    | {"Va": 15.0, "AdjFactor": 1.0, "AdjC": 1.5}
    for i in range(7)
]


def _paged(rows: list[dict], page_size: int, request: web.Request, key: str = "data") -> web.Response:
    start = int(request.query.get("pagination_key", "0"))
    body: dict = {key: rows[start : start + page_size]}
    if start + page_size < len(rows):
        body["pagination_key"] = str(start + page_size)
    return web.json_response(body)


class Scripted:
    """A server whose next responses are scripted per request number; records what it saw."""

    def __init__(self, script: Callable[[int, web.Request], web.StreamResponse | None]) -> None:
        self.script = script
        self.seen: list[tuple[str, dict, dict]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        n = len(self.seen)
        self.seen.append((request.path, dict(request.query), dict(request.headers)))
        out = self.script(n, request)
        if out is None:
            return _paged(ROWS, 3, request)
        return out


async def _serve(scripted: Scripted) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def _settings(server: TestServer, tmp_path, **kw) -> JQuantsSettings:
    base = dict(
        api_version="v2",
        base_url=str(server.make_url("/v2")),
        api_key=Secret(API_KEY),
        rate_per_minute=float("inf"),
        concurrency=4,
        timeout_s=2.0,
        max_retries=4,
        pacer_dir=str(tmp_path),
    )
    base.update(kw)
    return JQuantsSettings(**base)


def _client(settings: JQuantsSettings, **kw) -> JQuantsClient:
    return JQuantsClient(settings, backoff_base_s=0.001, backoff_cap_s=0.01, rng=random.Random(0), **kw)


async def test_follows_pagination_key_in_order(tmp_path):
    s = Scripted(lambda n, r: None)
    server = await _serve(s)
    try:
        async with _client(_settings(server, tmp_path)) as c:
            out = await c.fetch_query(Query("daily_quotes", date=dt.date(2024, 1, 4)))
        assert out.frame["Code"].to_list() == [r["Code"] for r in ROWS]
        assert (out.pages, out.requests) == (3, 3)
        assert [q.get("pagination_key") for _, q, _ in s.seen] == [None, "3", "6"]
        assert all(q["date"] == "2024-01-04" for _, q, _ in s.seen)
        assert all(h["x-api-key"] == API_KEY for _, _, h in s.seen)
        assert s.seen[0][0] == "/v2/equities/bars/daily"
    finally:
        await server.close()


#: fault -> (the client's recorded reason, its retries) when the second page fails twice. A dropped
#: connection costs one retry, not two: aiohttp re-sends an idempotent request once by itself after
#: ServerDisconnectedError (RFC 9112 9.3.1.1), so the first drop never reaches the client and the
#: second does.
FAULTS = {
    "429": ("429 rate limited", 2),
    "500": ("500 server error", 2),
    "503": ("503 server error", 2),
    "not_json": ("answer is not valid JSON", 2),
    "no_data_key": ("answer lacks its 'data' list", 2),
    "drop": ("ServerDisconnectedError", 1),
    "slow": ("TimeoutError", 2),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_transient_faults_on_a_middle_page_are_retried_without_loss(tmp_path, fault):
    injected: list[int] = []

    def script(n: int, request: web.Request):
        if n in (1, 2):  # the second page fails twice, then succeeds
            injected.append(n)
            if fault == "429":
                return web.json_response({"message": "Rate limit"}, status=429, headers={"Retry-After": "0"})
            if fault in ("500", "503"):
                return web.json_response({"message": "boom"}, status=int(fault))
            if fault == "not_json":
                return web.Response(text='{"data": [{"Date": ', content_type="application/json")
            if fault == "no_data_key":
                return web.json_response({"message": "partial"})
            if fault == "drop":
                request.transport.close()
                return web.Response(text="")
            if fault == "slow":
                return _Slow()
        return None

    reason, retries = FAULTS[fault]
    s = Scripted(script)
    server = await _serve(s)
    try:
        async with _client(_settings(server, tmp_path, timeout_s=0.3)) as c:
            out = await c.fetch_query(Query("daily_quotes", date="2024-01-04"))
            # the fault was served twice and is what the client retried, exactly as often as it failed
            assert injected == [1, 2]
            assert dict(c.stats.errors) == {reason: retries}
            assert c.stats.retries == retries
            assert c.stats.throttled == (2 if fault == "429" else 0)
            # the script serves every later request: the same three pages, fault-free
            clean = await c.fetch_query(Query("daily_quotes", date="2024-01-04"))
        assert (clean.pages, clean.requests) == (3, 3)
        assert out.frame.equals(clean.frame)  # every column of every row, in order
        assert out.frame["Code"].to_list() == [r["Code"] for r in ROWS]
        assert out.frame["Open"].to_list() == [r["O"] for r in ROWS]
        assert out.requests == 3 + retries and out.pages == 3
        # the server saw both faulted requests (a drop included) and every retry carried the failed
        # page's pagination_key
        assert [q.get("pagination_key") for _, q, _ in s.seen[:5]] == [None, "3", "3", "3", "6"]
        assert len(s.seen) == 5 + 3
    finally:
        await server.close()


class _Slow(web.Response):
    async def prepare(self, request):  # type: ignore[override]
        await asyncio.sleep(1.0)
        return await super().prepare(request)


async def test_gives_up_after_max_retries_naming_endpoint_params_and_page(tmp_path, caplog):
    s = Scripted(lambda n, r: None if n == 0 else web.json_response({"message": "down"}, status=502))
    server = await _serve(s)
    try:
        async with _client(_settings(server, tmp_path, max_retries=3)) as c:
            with pytest.raises(RequestFailedError) as err, caplog.at_level(logging.WARNING):
                await c.fetch("daily_quotes", date=dt.date(2024, 1, 4))
        msg = str(err.value)
        assert "/equities/bars/daily" in msg and "2024-01-04" in msg and "page=2" in msg
        assert "502" in msg and err.value.attempts == 4
        assert len(s.seen) == 1 + 4
        assert API_KEY not in msg and API_KEY not in caplog.text
    finally:
        await server.close()


async def test_retry_after_is_honoured(tmp_path, monkeypatch):
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds, *a, **k):
        waits.append(seconds)
        await real_sleep(0)

    s = Scripted(
        lambda n, r: web.json_response({}, status=429, headers={"Retry-After": "7"}) if n == 0 else None
    )
    server = await _serve(s)
    try:
        async with _client(_settings(server, tmp_path)) as c:
            monkeypatch.setattr("gogooku3.jquants.client.asyncio.sleep", recording_sleep)
            await c.fetch("daily_quotes", date="2024-01-04")
        assert waits and waits[0] >= 7.0
    finally:
        await server.close()


@pytest.mark.parametrize("status", [401, 403])
async def test_v2_bad_key_or_forbidden_fails_at_once(tmp_path, status):
    s = Scripted(lambda n, r: web.json_response({"message": "nope"}, status=status))
    server = await _serve(s)
    try:
        async with _client(_settings(server, tmp_path)) as c:
            with pytest.raises(AuthError) as err:
                await c.fetch("daily_quotes", date="2024-01-04")
        assert len(s.seen) == 1
        assert str(status) in str(err.value)
        assert API_KEY not in str(err.value)
    finally:
        await server.close()


async def test_other_4xx_is_fatal_with_context(tmp_path):
    s = Scripted(lambda n, r: web.json_response({"message": "bad date"}, status=400))
    server = await _serve(s)
    try:
        async with _client(_settings(server, tmp_path)) as c:
            with pytest.raises(RequestFailedError, match=r"400: bad date.*page=1"):
                await c.fetch("daily_quotes", date="2024-01-04")
        assert len(s.seen) == 1
    finally:
        await server.close()


def _v1_rows(rows):
    from gogooku3.jquants.datasets import get_dataset

    by_v2 = get_dataset("daily_quotes").field_by_source("v2")
    return [{by_v2[k].name: v for k, v in r.items()} for r in rows]


class V1Server:
    """Minimal v1 token flow: one refresh token, id tokens minted per refresh, revocable."""

    def __init__(self) -> None:
        self.rows = _v1_rows(ROWS)
        self.valid_ids: set[str] = set()
        self.minted = 0
        self.logins = 0
        self.expire_next_use = False
        self.always_401 = False
        self.seen_auth: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/token/auth_user":
            body = await request.json()
            if body != {"mailaddress": "q@example.com", "password": PASSWORD}:
                return web.json_response({"message": "bad login"}, status=400)
            self.logins += 1
            return web.json_response({"refreshToken": "refresh-xyz"})
        if request.path == "/v1/token/auth_refresh":
            if request.query.get("refreshtoken") != "refresh-xyz":
                return web.json_response({"message": "bad refresh token"}, status=400)
            self.minted += 1
            token = f"id-{self.minted}"
            self.valid_ids.add(token)
            return web.json_response({"idToken": token})
        auth = request.headers.get("Authorization", "")
        self.seen_auth.append(auth)
        token = auth.removeprefix("Bearer ")
        if self.always_401 or token not in self.valid_ids:
            return web.json_response({"message": "The incoming token is invalid or expired."}, status=401)
        if self.expire_next_use:
            self.expire_next_use = False
            self.valid_ids.discard(token)
            return web.json_response({"message": "The incoming token is invalid or expired."}, status=401)
        return _paged(self.rows, 3, request, key="daily_quotes")


async def _serve_v1(v1: V1Server) -> TestServer:
    async def route(request: web.Request) -> web.StreamResponse:
        return await v1.handle(request)  # looked up per request so a test can wrap it

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", route)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def _v1_settings(server: TestServer, tmp_path, **kw) -> JQuantsSettings:
    v1 = dict(
        api_version="v1",
        base_url=str(server.make_url("/v1")),
        api_key=Secret(""),
        email=Secret("q@example.com"),
        password=Secret(PASSWORD),
    )
    return _settings(server, tmp_path, **(v1 | kw))


async def test_v1_login_refresh_and_401_mid_query_refreshes_once_and_keeps_the_page(tmp_path, monkeypatch):
    v1 = V1Server()
    server = await _serve_v1(v1)
    try:
        async with _client(_v1_settings(server, tmp_path)) as c:
            first = await c.fetch("daily_quotes", date="2024-01-04")
            v1.expire_next_use = True  # the id token dies between queries
            second = await c.fetch("daily_quotes", date="2024-01-04")
        assert first.equals(second) and first.height == len(ROWS)
        assert v1.logins == 1 and v1.minted == 2
        # 3 pages + (401, retry of page 1 with the new token) + 2 more pages
        assert v1.seen_auth == ["Bearer id-1"] * 4 + ["Bearer id-2"] * 3
    finally:
        await server.close()


async def test_v1_refreshes_before_expiry(tmp_path, monkeypatch):
    v1 = V1Server()
    server = await _serve_v1(v1)
    try:
        # a lifetime shorter than the margin: every request needs a fresh id token
        async with _client(
            _v1_settings(server, tmp_path), id_token_lifetime_s=1.0, refresh_margin_s=5.0
        ) as c:
            await c.fetch("daily_quotes", date="2024-01-04")
        assert v1.minted == 3 and v1.logins == 1
        assert v1.seen_auth == ["Bearer id-1", "Bearer id-2", "Bearer id-3"]
    finally:
        await server.close()


@pytest.mark.parametrize("max_refreshes", [1, 3])
async def test_v1_401_persisting_after_refreshes_is_fatal(tmp_path, max_refreshes):
    v1 = V1Server()
    v1.always_401 = True
    server = await _serve_v1(v1)
    try:
        async with _client(_v1_settings(server, tmp_path), max_auth_refreshes=max_refreshes) as c:
            with pytest.raises(AuthError, match=f"401 again right after {max_refreshes} id-token") as err:
                await c.fetch("daily_quotes", date="2024-01-04")
        # the first token plus one per refresh; every token was tried exactly once
        assert v1.minted == 1 + max_refreshes
        assert v1.seen_auth == [f"Bearer id-{i}" for i in range(1, max_refreshes + 2)]
        assert PASSWORD not in str(err.value) and "refresh-xyz" not in str(err.value)
    finally:
        await server.close()


async def test_v1_fresh_token_revoked_again_is_refreshed_again(tmp_path):
    """Two revocations in a row on one page (a race, or the emulator's token_expiry twice)."""
    v1 = V1Server()
    server = await _serve_v1(v1)
    real = v1.handle
    revoked = 0

    async def revoke_first_two(request):
        nonlocal revoked
        if request.path.endswith("daily_quotes") and revoked < 2:
            revoked += 1
            v1.expire_next_use = True
        return await real(request)

    v1.handle = revoke_first_two  # type: ignore[method-assign]
    try:
        async with _client(_v1_settings(server, tmp_path)) as c:
            got = await c.fetch("daily_quotes", date="2024-01-04")
        assert got.height == len(ROWS)
        assert v1.seen_auth[:3] == ["Bearer id-1", "Bearer id-2", "Bearer id-3"]
    finally:
        await server.close()


async def test_v1_bad_password_is_an_auth_error_without_the_password(tmp_path, caplog):
    v1 = V1Server()
    server = await _serve_v1(v1)
    try:
        settings = _v1_settings(server, tmp_path, password=Secret("wrong-secret-pw"))
        async with _client(settings) as c:
            with pytest.raises(AuthError) as err, caplog.at_level(logging.DEBUG):
                await c.fetch("daily_quotes", date="2024-01-04")
        assert "wrong-secret-pw" not in str(err.value) and "wrong-secret-pw" not in caplog.text
        assert "wrong-secret-pw" not in repr(settings) and "wrong-secret-pw" not in repr(c)
    finally:
        await server.close()


async def test_fetch_many_runs_queries_concurrently_within_the_bound(tmp_path):
    in_flight, peak = 0, 0

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        day = request.query["date"]
        return web.json_response({"data": [dict(ROWS[0], Date=day)]})

    app = web.Application()
    app.router.add_get("/v2/equities/bars/daily", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        days = [dt.date(2024, 1, d) for d in range(4, 20)]
        async with _client(_settings(server, tmp_path, concurrency=3)) as c:
            frames = await c.fetch_many([Query("daily_quotes", date=d) for d in days])
        assert [f["Date"].item() for f in frames] == days
        assert 1 < peak <= 3
    finally:
        await server.close()


def test_query_params_use_the_wire_names():
    q = Query("trades_spec", from_=dt.date(2024, 1, 4), to="2024-01-11", section="TSEPrime")
    assert q.params() == {"from": "2024-01-04", "to": "2024-01-11", "section": "TSEPrime"}
    assert json.dumps(Query("listed_info", code="1301").params()) == '{"code": "1301"}'


async def test_fetch_many_failure_cancels_the_other_queries(tmp_path):
    started: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        day = request.query["date"]
        started.append(day)
        if day == "2024-01-04":
            return web.json_response({"message": "bad date"}, status=400)
        await asyncio.sleep(0.3)
        return web.json_response({"data": [dict(ROWS[0], Date=day)]})

    app = web.Application()
    app.router.add_get("/v2/equities/bars/daily", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        days = [dt.date(2024, 1, 4)] + [dt.date(2024, 2, d) for d in range(1, 21)]
        async with _client(_settings(server, tmp_path, concurrency=2)) as c:
            with pytest.raises(RequestFailedError, match="2024-01-04"):
                await c.fetch_many([Query("daily_quotes", date=d) for d in days])
        await asyncio.sleep(0.4)
        assert len(started) < len(days)  # the queued queries never went out
    finally:
        await server.close()
