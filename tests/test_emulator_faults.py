"""Rate limiting and fault injection of the emulator (real HTTP on 127.0.0.1) and its config."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import aiohttp
import pytest

from gogooku3.emulator import EmulatorConfig
from gogooku3.emulator.ratelimit import SlidingWindowLimiter, retry_after_header
from gogooku3.emulator.testing import running_emulator, small_config
from gogooku3.market import ConfigFieldError, MarketConfig

DAY = "2024-02-14"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("limit", [5, 60, 120, 500])
def test_evenly_spaced_client_at_the_plan_rate_is_never_refused(limit):
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit, clock)
    interval = 60.0 / limit
    for k in range(3 * limit):
        jitter = 0.45 * interval * ((k * 7919) % 3) / 2  # each arrival up to 0.45 interval late
        clock.now = 1000.0 + k * interval + jitter
        assert limiter.check("key") is None, k


def test_burst_over_the_limit_is_refused_until_the_window_frees():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, clock)
    for _ in range(60):
        assert limiter.check("key") is None
    wait = limiter.check("key")
    assert wait is not None and 59.0 < wait <= 60.0
    assert limiter.check("other") is None  # per credential
    clock.now += wait + 1e-6
    assert limiter.check("key") is None
    assert retry_after_header(0.2) == "1" and retry_after_header(59.3) == "60"


def test_refused_requests_do_not_count():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(5, clock)
    for _ in range(5):
        limiter.check("key")
    for _ in range(50):
        assert limiter.check("key") is not None
    clock.now += limiter.window
    assert limiter.check("key") is None


@pytest.mark.integration
async def test_rate_limit_429_with_retry_after():
    with running_emulator(small_config(codes=10, plan="free")) as emu:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(6):
                async with session.get(
                    emu.base_url_v2 + "/indices/bars/daily/topix", headers={"x-api-key": emu.api_key}
                ) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        retry_after = int(r.headers["Retry-After"])
                        message = (await r.json())["message"]
        assert statuses == [200] * 5 + [429]
        assert 1 <= retry_after <= 60 and "5 requests per minute" in message
        assert emu.stats["rate_limited"] == 1
        emu.reset_stats(rate_limits=True)
        async with aiohttp.ClientSession() as session:
            async with session.get(
                emu.base_url_v2 + "/indices/bars/daily/topix", headers={"x-api-key": emu.api_key}
            ) as r:
                assert r.status == 200


async def _id_token(session, emu) -> str:
    async with session.post(
        f"{emu.base_url_v1}/token/auth_user", json={"mailaddress": emu.email, "password": emu.password}
    ) as r:
        refresh = (await r.json())["refreshToken"]
    async with session.post(f"{emu.base_url_v1}/token/auth_refresh", params={"refreshtoken": refresh}) as r:
        return (await r.json())["idToken"]


async def _attempt(session, url, params, headers) -> tuple[str, object]:
    """One request: ('ok', body) | ('status', code) | ('malformed', text) | ('dropped', exc)."""
    try:
        async with session.get(url, params=params, headers=headers) as r:
            text = await r.text()
            if r.status != 200:
                return "status", (r.status, r.headers.get("Retry-After"))
            try:
                body = json.loads(text)
            except json.JSONDecodeError:
                return "malformed", text
            return ("ok", body) if "data" in body or "daily_quotes" in body else ("malformed", text)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
        return "dropped", exc


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["429", "5xx", "drop", "malformed"])
async def test_each_fault_kind_is_observable_and_a_retry_gets_the_right_page(kind):
    cfg = small_config(codes=40, page_size=15, fault_rate=1.0, faults=(kind,), max_consecutive_faults=2)
    with running_emulator(cfg) as emu:
        url = emu.base_url_v2 + "/equities/bars/daily"
        headers = {"x-api-key": emu.api_key}
        # a fresh connection per request (aiohttp still re-sends once after a dropped connection)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            outcomes = []
            while not outcomes or outcomes[-1][0] != "ok":
                outcomes.append(await _attempt(session, url, {"date": DAY}, headers))
                assert len(outcomes) <= 3, outcomes  # at most max_consecutive_faults faults in a row
        kinds = [o[0] for o in outcomes]
        if kind == "429":
            assert outcomes[0] == ("status", (429, "1"))
        elif kind == "5xx":
            assert outcomes[0][0] == "status" and outcomes[0][1][0] in (500, 502, 503)
        elif kind == "drop":
            assert kinds[0] == "dropped"
        else:
            assert kinds[:2] == ["malformed", "malformed"]
        assert emu.stats["faults"] == {kind: 2}
        truth = emu.market.frame("daily_quotes", dt.date.fromisoformat(DAY))
        assert [r["Code"] for r in outcomes[-1][1]["data"]] == truth["Code"].head(15).to_list()


@pytest.mark.integration
async def test_token_expiry_fault_forces_a_refresh_in_v1():
    cfg = small_config(codes=20, fault_rate=1.0, faults=("token_expiry",), max_consecutive_faults=1)
    with running_emulator(cfg) as emu:
        url = emu.base_url_v1 + "/prices/daily_quotes"
        async with aiohttp.ClientSession() as session:
            token = await _id_token(session, emu)
            first = await _attempt(session, url, {"date": DAY}, {"Authorization": f"Bearer {token}"})
            assert first == ("status", (401, None))
            # the old token stays dead (no fault this time: the limit of consecutive faults is 1)
            again = await _attempt(session, url, {"date": DAY}, {"Authorization": f"Bearer {token}"})
            assert again == ("status", (401, None))
            fresh = await _id_token(session, emu)
            ok = await _attempt(session, url, {"date": DAY}, {"Authorization": f"Bearer {fresh}"})
            assert ok[0] == "ok"
        assert emu.stats["faults"] == {"token_expiry": 1}
        # v2 has no tokens: the kind never applies there
        async with aiohttp.ClientSession() as session:
            v2 = await _attempt(
                session, emu.base_url_v2 + "/equities/bars/daily", {"date": DAY}, {"x-api-key": emu.api_key}
            )
        assert v2[0] == "ok"


async def _retrying_fetch(session, emu, params) -> tuple[list[dict], list[str]]:
    url = emu.base_url_v2 + "/equities/bars/daily"
    rows, log, query = [], [], dict(params)
    while True:
        for _ in range(10):
            kind, body = await _attempt(session, url, query, {"x-api-key": emu.api_key})
            log.append(kind if kind != "status" else str(body[0]))
            if kind == "ok":
                break
            await asyncio.sleep(0)
        rows.extend(body["data"])
        if "pagination_key" not in body:
            return rows, log
        query["pagination_key"] = body["pagination_key"]


@pytest.mark.integration
async def test_faults_never_corrupt_data_and_are_reproducible():
    cfg = small_config(codes=60, page_size=7, fault_rate=0.3, faults=("429", "5xx", "drop", "malformed"))
    logs = []
    for _ in range(2):
        with running_emulator(cfg) as emu:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
                rows, log = await _retrying_fetch(session, emu, {"date": DAY})
            logs.append(log)
            truth = emu.market.frame("daily_quotes", dt.date.fromisoformat(DAY))
            assert [(r["Code"], r["C"]) for r in rows] == list(
                zip(truth["Code"], truth["Close"], strict=True)
            )
            # (aiohttp silently re-sends once after a drop, so the server may count more faults)
            assert emu.stats["faults_total"] >= sum(1 for k in log if k != "ok") > 0
    assert logs[0] == logs[1]


@pytest.mark.integration
async def test_latency_option_delays_answers():
    with running_emulator(small_config(codes=5, latency_s=0.2)) as emu:
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            async with session.get(
                emu.base_url_v2 + "/indices/bars/daily/topix", headers={"x-api-key": emu.api_key}
            ) as r:
                assert r.status == 200
            assert loop.time() - t0 >= 0.19  # a lower bound only: the server slept 0.2 s


def test_config_build_defaults_and_validation():
    today = dt.date(2024, 6, 13)  # injected: the test must not depend on the day it runs
    cfg = EmulatorConfig.build(
        codes=50, start=dt.date(2024, 1, 1), plan="light", faults=["429", "drop"], today=today
    )
    assert cfg.market.end == today  # end=None: the market ends today
    assert EmulatorConfig.build(
        codes=5, start=dt.date(2024, 1, 1), end=dt.date(2024, 2, 1), today=today
    ).market.end == dt.date(2024, 2, 1)
    assert cfg.limit_per_minute == 60 and cfg.faults == ("429", "drop")
    assert EmulatorConfig.build(seed=3, codes=5, fault_seed=9, id_token_ttl_s=5.0).fault_seed == 9
    assert cfg.api_key not in repr(cfg) and cfg.password not in repr(cfg) and cfg.email not in repr(cfg)
    with pytest.raises(ValueError, match="plan"):
        EmulatorConfig(plan="gold")
    with pytest.raises(ValueError, match="faults"):
        EmulatorConfig(faults=("teapot",))
    with pytest.raises(ValueError, match="fault_rate"):
        EmulatorConfig(fault_rate=1.5)
    with pytest.raises(ValueError, match="page_size"):
        EmulatorConfig(page_size=0)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latency_s", NAN),
        ("latency_s", INF),
        ("fault_rate", NAN),
        ("id_token_ttl_s", NAN),
        ("id_token_ttl_s", INF),
        ("refresh_token_ttl_s", NAN),
        ("refresh_token_ttl_s", INF),
    ],
)
def test_config_refuses_nan_and_inf_naming_the_field(field, value):
    """NaN passes every < / > check, so each float is checked for being finite first."""
    with pytest.raises(ConfigFieldError, match=f"EmulatorConfig.{field}=") as info:
        EmulatorConfig(**{field: value})
    assert info.value.field == field


@pytest.mark.parametrize("signal", [NAN, INF, -1.0])
def test_market_config_refuses_a_signal_that_is_not_a_finite_number_ge_0(signal):
    with pytest.raises(ConfigFieldError, match="MarketConfig.signal=") as info:
        MarketConfig(signal=signal)
    assert (info.value.field, info.value.problem) == ("signal", "must be a finite number >= 0")


@pytest.mark.integration
def test_stats_count_and_reset_also_over_http():
    import urllib.request

    with running_emulator(small_config(codes=5)) as emu:
        req = urllib.request.Request(
            emu.base_url_v2 + "/indices/bars/daily/topix", headers={"x-api-key": emu.api_key}
        )
        with urllib.request.urlopen(req) as r:
            assert r.status == 200
        with urllib.request.urlopen(emu.base_url + "/_stats") as r:
            remote = json.loads(r.read())
        assert remote["requests"] == {"/v2/indices/bars/daily/topix": 1} == emu.stats["requests"]
        assert remote["responses"] == {"200": 1}
        emu.reset_stats()
        with urllib.request.urlopen(emu.base_url + "/_stats") as r:
            assert json.loads(r.read())["requests_total"] == 0
