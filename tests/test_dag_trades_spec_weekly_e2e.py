"""``airflow dags test trades_spec_weekly <publication day>`` end to end, as a subprocess on a
throwaway AIRFLOW_HOME against the J-Quants emulator (v2, premium plan) and a local lake.

The lake is seeded with the raw partitions earlier weekly runs would have written; the run for
2023-12-07 (a publication day whose window holds a revision of an earlier week) must then:

* write ``raw/trades_spec/date=d`` for every calendar day of its window, equal to the emulator's
  ground truth of records published on d (empty partitions on days without any), in one ranged
  request (plus its pages);
* write ``interim/trades_spec_daily`` for the trading days from the window's first usable day
  through the next publication day, equal to ``expand_trades_spec`` over the ground truth;
* record an asset event for ``interim/trades_spec_daily`` with the range and rows;
* rewrite identical partitions on a rerun (manifest checksums equal), and on a manual
  re-expansion (``--conf '{"start": ..., "end": ...}'``), which fetches nothing.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest
from airflow_harness import asset_events, dags_test, tail
from polars.testing import assert_frame_equal

from gogooku3.calendar import trading_days
from gogooku3.emulator.testing import running_emulator, small_config
from gogooku3.flows import expand_trades_spec
from gogooku3.jquants.datasets import TRADES_SPEC
from gogooku3.lake import open_lake

pytestmark = pytest.mark.integration

MARKET_START = dt.date(2023, 9, 1)
DAY = dt.date(2023, 12, 7)  # Thursday publication; the week of 2023-10-30 is revised on it
WINDOW = (dt.date(2023, 12, 1), DAY)  # the days after the previous publication (2023-11-30)
EXPAND = (dt.date(2023, 12, 4), dt.date(2023, 12, 14))  # usable_date(2023-12-01) .. next publication
PAGE_SIZE = 3


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


@pytest.fixture(scope="module")
def emulator():
    cfg = small_config(codes=20, start=MARKET_START, end=DAY, page_size=PAGE_SIZE, plan="premium")
    with running_emulator(cfg) as emu:
        yield emu


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, airflow_env_factory, emulator) -> dict[str, str]:
    return airflow_env_factory(tmp_path_factory.mktemp("airflow_home"), emulator=emulator)


def _truth(market, day: dt.date) -> pl.DataFrame:
    return market.frame("trades_spec", day)


def _seed_earlier_runs(lake, market) -> None:
    """The raw partitions the runs before DAY wrote (every calendar day up to its window)."""
    for d in _days(MARKET_START, WINDOW[0] - dt.timedelta(days=1)):
        lake.write_partition(
            "raw",
            "trades_spec",
            d,
            _truth(market, d),
            source="seed",
            sort_by=TRADES_SPEC.key,
            date_column="PublishedDate",
        )


def _checksums(lake, layer: str, dataset: str) -> dict[dt.date, tuple[int, str]]:
    return {
        d: (m.rows, m.checksum)
        for d in lake.list_partitions(layer, dataset)
        for m in [lake.read_manifest(layer, dataset, d)]
    }


def test_publication_run_writes_ground_truth_and_rerun_is_identical(airflow_env, emulator, tmp_path) -> None:
    market = emulator.market
    window_truth = pl.concat([_truth(market, d) for d in _days(*WINDOW)])
    revised = window_truth.filter(pl.col("StartDate") < WINDOW[0] - dt.timedelta(days=7))
    assert revised.height > 0, "the window must hold a revision of an earlier week for this test to bite"

    lake_dir = tmp_path / "lake"
    lake = open_lake(str(lake_dir))
    _seed_earlier_runs(lake, market)
    emulator.reset_stats()

    first = dags_test(airflow_env, "trades_spec_weekly", DAY, GOGOOKU3_LAKE_URI=str(lake_dir))
    assert first.returncode == 0, tail(first)

    # raw: every calendar day of the window, each equal to the records published that day.
    for d in _days(*WINDOW):
        got, truth = lake.read_partition("raw", "trades_spec", d), _truth(market, d)
        assert_frame_equal(got.sort(TRADES_SPEC.key), truth.sort(TRADES_SPEC.key), check_column_order=False)
    assert lake.list_partitions("raw", "trades_spec")[-1] == DAY
    # one ranged request for the whole window: exactly its pages
    stats = emulator.stats
    trades = {p: n for p, n in stats["requests"].items() if "investor-types" in p}
    assert sum(trades.values()) == max(1, math.ceil(window_truth.height / PAGE_SIZE)), stats["requests"]

    # interim: each trading day of the range equals the expansion of every record published by DAY.
    all_truth = pl.concat([_truth(market, d) for d in _days(MARKET_START, DAY)])
    expected = expand_trades_spec(all_truth, *EXPAND)
    written = [d for d in lake.list_partitions("interim", "trades_spec_daily")]
    assert written == list(trading_days(*EXPAND))
    got = lake.read_range("interim", "trades_spec_daily", *EXPAND)
    assert_frame_equal(
        got.sort("Date", "Section"), expected.sort("Date", "Section"), check_column_order=False
    )
    assert got.filter(pl.col("Date") == dt.date(2023, 12, 8))["is_fresh"].all()

    # publish: one event for the interim asset carrying the range and rows.
    events = [
        extra
        for uri, extra in asset_events(airflow_env)
        if uri == "gogooku3://lake/interim/trades_spec_daily"
    ]
    assert events, "no asset event for interim/trades_spec_daily"
    extra = events[-1]
    assert (extra["start"], extra["end"]) == (EXPAND[0].isoformat(), EXPAND[1].isoformat())
    assert extra["final_through"] == "2023-12-08"
    assert extra["rows"] == expected.height and extra["days"] == len(written)

    before = (_checksums(lake, "raw", "trades_spec"), _checksums(lake, "interim", "trades_spec_daily"))
    again = dags_test(airflow_env, "trades_spec_weekly", DAY, GOGOOKU3_LAKE_URI=str(lake_dir))
    assert again.returncode == 0, tail(again)
    after = (_checksums(lake, "raw", "trades_spec"), _checksums(lake, "interim", "trades_spec_daily"))
    assert after == before
    assert emulator.api_key not in first.stdout + first.stderr

    # A manual re-expansion (dag_run.conf) fetches nothing and rewrites the same partitions.
    emulator.reset_stats()
    conf = {"start": "2023-12-05", "end": "2023-12-12"}
    manual = dags_test(airflow_env, "trades_spec_weekly", DAY, conf=conf, GOGOOKU3_LAKE_URI=str(lake_dir))
    assert manual.returncode == 0, tail(manual)
    assert emulator.stats["requests_total"] == 0
    assert (
        _checksums(lake, "raw", "trades_spec"),
        _checksums(lake, "interim", "trades_spec_daily"),
    ) == before
    extra = [e for uri, e in asset_events(airflow_env) if uri == "gogooku3://lake/interim/trades_spec_daily"][
        -1
    ]
    assert (extra["start"], extra["end"], extra["final_through"]) == (
        "2023-12-05",
        "2023-12-12",
        "2023-12-08",
    )
    assert extra["days"] == len(trading_days(dt.date(2023, 12, 5), dt.date(2023, 12, 12)))
