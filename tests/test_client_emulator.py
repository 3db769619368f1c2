"""The client against the real emulator over HTTP on 127.0.0.1, compared with the generator's truth.

Plans stay at Premium and pages small so paging is exercised in a few seconds. Each emulator
gets its own pacer directory so concurrently running test files never share a schedule.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.calendar import trading_days
from gogooku3.config import JQuantsSettings, Secret
from gogooku3.emulator.server import EmulatorConfig
from gogooku3.emulator.testing import running_emulator
from gogooku3.jquants.client import JQuantsClient, Query
from gogooku3.jquants.datasets import DATASET_NAMES, get_dataset

pytestmark = pytest.mark.integration

START, END = dt.date(2024, 1, 1), dt.date(2024, 3, 29)
#: Requests per minute enforced by the emulator (a Premium account with a raised limit, so the
#: suite stays fast) and paced by the client.
RATE = 3000
FAULTS = ["429", "5xx", "drop", "malformed", "token_expiry"]


def _cfg(**kw) -> EmulatorConfig:
    base = dict(
        seed=11,
        codes=120,
        start=START,
        end=END,
        plan="premium",
        signal=1.0,
        page_size=40,
        latency_s=0.0,
        fault_rate=0.0,
        faults=FAULTS,
        rate_per_minute=RATE,
    )
    base.update(kw)
    return EmulatorConfig.build(**base)


def settings_for(handle, version: str, pacer_dir, **kw) -> JQuantsSettings:
    common = dict(
        api_version=version,
        plan="premium",
        rate_per_minute=float(RATE),
        concurrency=8,
        timeout_s=10.0,
        max_retries=8,
        pacer_dir=str(pacer_dir),
    )
    if version == "v2":
        creds = dict(base_url=handle.base_url_v2, api_key=Secret(handle.api_key))
    else:
        creds = dict(
            base_url=handle.base_url_v1, email=Secret(handle.email), password=Secret(handle.password)
        )
    return JQuantsSettings(**(common | creds | kw))


def _client(settings: JQuantsSettings) -> JQuantsClient:
    # Short backoff so injected faults cost milliseconds; Retry-After still sets the floor.
    return JQuantsClient(settings, backoff_base_s=0.02, backoff_cap_s=0.5)


def same_rows(got: pl.DataFrame, truth: pl.DataFrame, dataset: str) -> None:
    """Equal as sets of rows with the exact canonical schema; no row lost, none duplicated."""
    key = list(get_dataset(dataset).key)
    assert got.schema == truth.schema, dataset
    assert got.height == truth.height, f"{dataset}: {got.height} rows, truth {truth.height}"
    assert not got.select(key).is_duplicated().any(), f"{dataset}: duplicated keys"
    assert got.sort(key).equals(truth.sort(key)), dataset


def _query(name: str, day: dt.date) -> Query:
    if name in ("trades_spec", "topix"):
        return Query(name, from_=day, to=day)
    return Query(name, date=day)


@pytest.fixture(scope="module")
def clean():
    with running_emulator(_cfg()) as handle:
        yield handle


@pytest.fixture(scope="module")
def faulty():
    with running_emulator(_cfg(fault_rate=0.2, seed=12)) as handle:
        yield handle


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_paging_returns_exactly_the_ground_truth(clean, version, tmp_path):
    day = dt.date(2024, 2, 1)
    async with _client(settings_for(clean, version, tmp_path)) as client:
        out = await client.fetch_query(Query("daily_quotes", date=day))
        listed = await client.fetch("listed_info", date=day)
    truth = clean.market.frame("daily_quotes", day)
    assert truth.height > 2 * 40  # the answer needs at least three pages
    assert out.pages == -(-truth.height // 40)
    same_rows(out.frame, truth, "daily_quotes")
    same_rows(listed, clean.market.frame("listed_info", day), "listed_info")


async def test_v1_and_v2_frames_are_identical(clean, tmp_path):
    day = dt.date(2024, 3, 1)
    frames = {}
    for version in ("v1", "v2"):
        async with _client(settings_for(clean, version, tmp_path)) as client:
            frames[version] = await client.fetch_many([_query(n, day) for n in DATASET_NAMES])
    for name, f1, f2 in zip(DATASET_NAMES, frames["v1"], frames["v2"], strict=True):
        key = list(get_dataset(name).key)
        assert f1.sort(key).equals(f2.sort(key)), name


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_twenty_percent_faults_lose_no_row_and_duplicate_none(faulty, version, tmp_path):
    days = [d for d in trading_days(dt.date(2024, 2, 1), dt.date(2024, 2, 29))][:10]
    # statements/trades_spec are sparse: add the days that actually have some
    published = [d for d in trading_days(START, END) if faulty.market.frame("trades_spec", d).height][:2]
    disclosed = [d for d in trading_days(START, END) if faulty.market.frame("statements", d).height][:2]
    queries = [_query(n, d) for d in days for n in ("daily_quotes", "listed_info", "topix")]
    queries += [_query("trades_spec", d) for d in published] + [_query("statements", d) for d in disclosed]
    # the datasets derived from the simulation: daily ones on five days, sparse ones where present
    queries += [_query(n, d) for d in days[:5] for n in ("indices", "short_selling", "futures")]
    queries += [_query("index_option", d) for d in days[:2]]
    for sparse in (
        "weekly_margin_interest",
        "earnings_calendar",
        "dividends",
        "daily_margin_interest",
        "short_selling_positions",
    ):
        present = [d for d in days if faulty.market.frame(sparse, d).height][:2]
        assert present, sparse
        queries += [_query(sparse, d) for d in present]

    faulty.reset_stats()
    async with _client(settings_for(faulty, version, tmp_path)) as client:
        outcomes = await client.fetch_queries(queries)
        stats = client.stats
        refreshes = getattr(client.auth, "id_token_count", 0)
    served = faulty.stats

    for q, out in zip(queries, outcomes, strict=True):
        day = q.date or q.from_
        same_rows(out.frame, faulty.market.frame(q.dataset, day), q.dataset)
    # the faults really happened (several kinds) and were absorbed by retries and refreshes
    assert served["faults_total"] >= 10 and len(served["faults"]) >= 3, served["faults"]
    assert stats.retries >= served["faults_total"] - served["faults"].get("drop", 0) - served["faults"].get(
        "token_expiry", 0
    )
    if version == "v1":
        # a revocation can hit a token another request already replaced: at most one refresh each
        assert 1 <= refreshes - 1 <= served["faults"]["token_expiry"]


@pytest.mark.parametrize(
    ("version", "kind"),
    [("v2", k) for k in FAULTS if k != "token_expiry"] + [("v1", k) for k in FAULTS],
)
async def test_each_fault_kind_alone_loses_nothing(faulty, version, kind, tmp_path):
    """Every fault kind on its own, at a high rate, on a multi-page answer."""
    faulty.set_faults(0.5, (kind,))
    faulty.reset_stats()
    day = dt.date(2024, 2, 13)
    try:
        async with _client(settings_for(faulty, version, tmp_path)) as client:
            got = await client.fetch_many([_query("daily_quotes", day), _query("topix", day)])
    finally:
        faulty.set_faults(0.2, tuple(FAULTS))
    same_rows(got[0], faulty.market.frame("daily_quotes", day), "daily_quotes")
    same_rows(got[1], faulty.market.frame("topix", day), "topix")
    assert faulty.stats["faults"].get(kind, 0) >= 1


async def test_v1_token_expiry_refreshes_and_keeps_the_page(tmp_path):
    with running_emulator(_cfg(fault_rate=0.5, faults=["token_expiry"], seed=13)) as handle:
        day = dt.date(2024, 2, 5)
        async with _client(settings_for(handle, "v1", tmp_path)) as client:
            got = await client.fetch("daily_quotes", date=day)
            minted = client.auth.id_token_count
        same_rows(got, handle.market.frame("daily_quotes", day), "daily_quotes")
        assert minted >= 2  # at least one refresh after an expiry


async def test_v1_expired_id_token_between_queries_is_refreshed(clean, tmp_path):
    day = dt.date(2024, 2, 6)
    async with _client(settings_for(clean, "v1", tmp_path)) as client:
        first = await client.fetch("topix", from_=day, to=day)
        clean.expire_id_tokens()  # every issued id token is now expired server-side
        second = await client.fetch("daily_quotes", date=day)
        assert client.auth.id_token_count == 2 and client.auth.login_count == 1
    same_rows(first, clean.market.frame("topix", day), "topix")
    same_rows(second, clean.market.frame("daily_quotes", day), "daily_quotes")


async def test_v2_wrong_api_key_fails_at_once(clean, tmp_path):
    from gogooku3.jquants.errors import AuthError

    settings = settings_for(clean, "v2", tmp_path, api_key=Secret("not-the-key"))
    async with _client(settings) as client:
        with pytest.raises(AuthError, match="401"):
            await client.fetch("topix", from_=START, to=END)
        assert client.stats.requests == 1
