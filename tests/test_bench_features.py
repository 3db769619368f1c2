"""The feature bench's per-family rows (``make bench``): every output feature counted once, under
its own family, each family computed for real."""

from __future__ import annotations

import datetime as dt

import polars as pl

from gogooku3.bench.features_build import daily_rows, family_rows
from gogooku3.features import BuildTimings, build_features
from gogooku3.features.catalogue import FEATURES, OUTPUT_FEATURES
from gogooku3.features.checkpoint import LOOKBACK_ROWS
from gogooku3.features.prepare import prepare_panel
from gogooku3.features.testing import market_inputs


def test_family_rows_time_every_family_of_the_catalogue_once() -> None:
    mi = market_inputs(12, dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    panel = prepare_panel(mi.daily_quotes, **mi.kwargs())
    rows = family_rows(panel, features_s=1.0)
    families = {
        f.group: sum(1 for g in FEATURES if g.output and g.group == f.group) for f in FEATURES if f.output
    }
    assert {r["case"].split()[1].rstrip(":"): r["features"] for r in rows} == families
    assert sum(r["features"] for r in rows) == len(OUTPUT_FEATURES)
    assert [r["wall_s"] for r in rows] == sorted((r["wall_s"] for r in rows), reverse=True)
    assert all(r["rows"] == panel.height for r in rows)


def test_the_daily_rows_build_the_last_day_alone_from_the_history_and_from_checkpoints() -> None:
    """The daily-run rows (run in a fresh process) output the last day's rows only: one having read
    every row of the market, one the look-back after the checkpoint; each reports the peer table's
    share of prepare."""
    start, end = dt.date(2024, 1, 1), dt.date(2024, 5, 31)
    quotes = market_inputs(12, start, end).daily_quotes
    days = quotes.get_column("Date").unique().sort()
    last_day = quotes.filter(pl.col("Date") == days[-1]).height
    window = quotes.filter(pl.col("Date") >= days[-1 - LOOKBACK_ROWS]).height
    whole, resumed = daily_rows(12, start, end, full_build_s=1.0)
    for row, read in ((whole, quotes.height), (resumed, window)):
        assert row["rows"] == last_day and row["features"] == len(OUTPUT_FEATURES)
        assert f"{last_day} rows out of {read:,} read" in row["notes"]
        assert "peer table" in row["notes"] and row["peak_rss_gb"] > 0
    assert "resumed from checkpoints" in resumed["case"]


def test_a_build_reports_the_peer_tables_share_of_prepare() -> None:
    """The bench's stage split: ``prepare_s`` includes the peer table's own seconds."""
    mi = market_inputs(12, dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    timings = BuildTimings()
    build_features(mi.daily_quotes, **mi.kwargs(), timings=timings)
    assert 0 < timings.extra["peers_s"] <= timings.prepare_s
