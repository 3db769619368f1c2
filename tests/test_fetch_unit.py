"""gogooku3.fetch against a small scripted v2 server on 127.0.0.1 and a real local lake."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gogooku3.config import JQuantsSettings, Secret, Settings
from gogooku3.fetch import EmptyAnswerError, PartitionMismatchError, fetch_to_lake, query_for
from gogooku3.jquants.datasets import get_dataset
from gogooku3.jquants.normalize import to_frame
from gogooku3.lake import MissingPartitionError, open_lake

TRADING = dt.date(2024, 1, 4)  # Thursday, first session of 2024
SATURDAY = dt.date(2024, 1, 6)


def bar(day: str, code: str) -> dict:
    return {"Date": day, "Code": code, "O": 1.0, "H": 2.0, "L": 0.5, "C": 1.5, "Vo": 10.0}.__or__(
        {"Va": 15.0, "AdjFactor": 1.0, "AdjC": 1.5, "UL": "0", "LL": "0"}
    )


def topix(day: str) -> dict:
    return {"Date": day, "O": 2400.0, "H": 2410.0, "L": 2390.0, "C": 2405.0}


def master(day: str, code: str) -> dict:
    return {"Date": day, "Code": code, "CoName": "X", "S17": "1", "S33": "0050", "Mkt": "0111"}


def trades(pub: str, start: str, end: str, section: str) -> dict:
    ds = get_dataset("trades_spec")
    rec = {f.v2: 1.0 for f in ds.fields if f.dtype == pl.Float64}
    return rec | {"PubDate": pub, "StDate": start, "EnDate": end, "Section": section}


class Api:
    def __init__(self, answers: dict[str, list[dict]]) -> None:
        self.answers = answers
        self.queries: list[tuple[str, dict]] = []

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.removeprefix("/v2")
        self.queries.append((path, dict(request.query)))
        rows = self.answers.get(path, [])
        start = int(request.query.get("pagination_key", "0"))
        body: dict = {"data": rows[start : start + 2]}
        if start + 2 < len(rows):
            body["pagination_key"] = str(start + 2)
        return web.json_response(body)


@pytest.fixture
async def api_factory(tmp_path):
    servers = []

    async def make(answers):
        api = Api(answers)
        app = web.Application()
        app.router.add_get("/{tail:.*}", api.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        jq = JQuantsSettings(
            base_url=str(server.make_url("/v2")),
            api_key=Secret("k"),
            rate_per_minute=float("inf"),
            pacer_dir=str(tmp_path / "pacer"),
        )
        return api, Settings(lake_uri=str(tmp_path / "lake"), jquants=jq)

    yield make
    for s in servers:
        await s.close()


async def test_writes_each_dataset_for_its_day_with_paging(api_factory, tmp_path):
    bars = [bar("2024-01-04", f"{1300 + i}0") for i in range(5)]
    api, settings = await api_factory(
        {
            "/equities/bars/daily": bars,
            "/indices/bars/daily/topix": [topix("2024-01-04")],
            # a range query may return rows of other publication dates: those are not this day's
            "/equities/investor-types": [
                trades("2024-01-04", "2023-12-25", "2023-12-29", "TSEPrime"),
                trades("2023-12-28", "2023-12-18", "2023-12-22", "TSEPrime"),
            ],
        }
    )
    lake = open_lake(settings.lake_uri)
    results = await fetch_to_lake(settings, ["daily_quotes", "topix", "trades_spec"], TRADING, lake)
    by = {r.dataset: r for r in results}
    assert [r.dataset for r in results] == ["daily_quotes", "topix", "trades_spec"]
    assert by["daily_quotes"].rows == 5 and by["daily_quotes"].pages == 3 and by["daily_quotes"].written
    assert by["trades_spec"].rows == 1
    assert "raw/daily_quotes/date=2024-01-04" in by["daily_quotes"].uri
    assert "wrote 5 rows" in by["daily_quotes"].summary()

    got = lake.read_partition("raw", "daily_quotes", TRADING)
    expected = to_frame(get_dataset("daily_quotes"), "v2", bars)
    assert got.sort("Code").equals(expected.sort("Code"))
    assert lake.read_manifest("raw", "daily_quotes", TRADING).source == "jquants-v2"
    ts = lake.read_partition("raw", "trades_spec", TRADING)
    assert ts["PublishedDate"].to_list() == [TRADING]
    # the queries were the documented ones
    qs = dict((p, q) for p, q in api.queries if "pagination_key" not in q)
    assert qs["/equities/bars/daily"] == {"date": "2024-01-04"}
    assert qs["/indices/bars/daily/topix"] == {"from": "2024-01-04", "to": "2024-01-04"}
    assert qs["/equities/investor-types"] == {"from": "2024-01-04", "to": "2024-01-04"}


async def test_non_trading_day_writes_nothing_and_says_why(api_factory):
    _, settings = await api_factory({})
    lake = open_lake(settings.lake_uri)
    results = await fetch_to_lake(settings, ["daily_quotes", "topix", "listed_info"], SATURDAY, lake)
    assert all(not r.written and r.rows == 0 for r in results)
    assert all("not a JPX trading day" in r.summary() for r in results)
    with pytest.raises(MissingPartitionError):
        lake.read_partition("raw", "daily_quotes", SATURDAY)


async def test_empty_daily_answer_on_a_trading_day_fails_and_writes_nothing(api_factory):
    _, settings = await api_factory({"/equities/master": [master("2024-01-04", "13010")]})
    lake = open_lake(settings.lake_uri)
    with pytest.raises(EmptyAnswerError, match="daily_quotes.*2024-01-04"):
        await fetch_to_lake(settings, ["listed_info", "daily_quotes"], TRADING, lake)
    assert not lake.has_partition("raw", "listed_info", TRADING)


async def test_quiet_day_for_statements_writes_an_empty_partition(api_factory):
    _, settings = await api_factory({})
    lake = open_lake(settings.lake_uri)
    (r,) = await fetch_to_lake(settings, ["statements"], TRADING, lake)
    assert r.written and r.rows == 0
    got = lake.read_partition("raw", "statements", TRADING)
    assert got.height == 0 and got.schema == pl.Schema(get_dataset("statements").schema)


async def test_answer_for_another_date_is_refused(api_factory):
    _, settings = await api_factory({"/equities/bars/daily": [bar("2024-01-05", "13010")]})
    lake = open_lake(settings.lake_uri)
    with pytest.raises(PartitionMismatchError, match="2024-01-05"):
        await fetch_to_lake(settings, ["daily_quotes"], TRADING, lake)


async def test_duplicate_keys_are_refused(api_factory):
    rows = [bar("2024-01-04", "13010"), bar("2024-01-04", "13010")]
    _, settings = await api_factory({"/equities/bars/daily": rows})
    lake = open_lake(settings.lake_uri)
    with pytest.raises(PartitionMismatchError, match="share a key"):
        await fetch_to_lake(settings, ["daily_quotes"], TRADING, lake)
    assert not lake.has_partition("raw", "daily_quotes", TRADING)


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="'quotes'"):
        query_for("quotes", TRADING)


@pytest.mark.parametrize(
    ("dataset", "written_jst", "complete"),
    [
        ("daily_quotes", dt.datetime(2024, 1, 4, 19, 0), True),
        ("daily_quotes", dt.datetime(2024, 1, 4, 18, 59), False),
        # the 24:30 statements batch: a partition written by the 19:00 run of the day is not final
        ("statements", dt.datetime(2024, 1, 4, 19, 0), False),
        ("statements", dt.datetime(2024, 1, 5, 1, 0), True),
        ("trades_spec", dt.datetime(2024, 1, 4, 18, 0), True),
    ],
)
def test_a_partition_is_complete_once_written_after_its_last_publication(
    tmp_path, dataset, written_jst, complete
) -> None:
    from gogooku3.calendar import JST
    from gogooku3.fetch import complete_partition
    from gogooku3.lake import LocalLake

    written = written_jst.replace(tzinfo=JST)
    lake = LocalLake(tmp_path / "lake", clock=lambda: written.astimezone(dt.UTC))
    frame = pl.DataFrame({"Date": [TRADING], "DisclosedDate": [TRADING], "PublishedDate": [TRADING]})
    lake.write_partition("raw", dataset, TRADING, frame, source="test")
    assert (complete_partition(lake, dataset, TRADING) is not None) is complete
    assert complete_partition(lake, dataset, SATURDAY) is None  # absent


def test_a_corrupt_partition_is_not_complete(tmp_path) -> None:
    from gogooku3.fetch import complete_partition
    from gogooku3.lake import LocalLake

    lake = LocalLake(tmp_path / "lake")
    lake.write_partition("raw", "topix", TRADING, pl.DataFrame({"Date": [TRADING]}), source="test")
    data = next((tmp_path / "lake" / "raw" / "topix").glob("date=*/part-00000.parquet"))
    data.write_bytes(data.read_bytes()[:-8])
    assert complete_partition(lake, "topix", TRADING) is None
