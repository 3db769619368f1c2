"""Checkpoints: a build resumed from them reads only its look-back and writes the same bytes as a
build over the whole history; where it cannot be sure of that, it reads the whole history."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from gogooku3.calendar import trading_days
from gogooku3.features import build_features, build_features_to_lake
from gogooku3.features.build import CHECKPOINTS, plan_resume
from gogooku3.features.catalogue import FEATURES
from gogooku3.features.checkpoint import (
    CHECKPOINT_COLUMNS,
    LOOKBACK_ROWS,
    Resume,
    bounded_panel_problem,
    exact_from,
    lookback_rows,
    resume_problem,
    state_definition,
)
from gogooku3.features.peers import PEER_WINDOW
from gogooku3.features.spec import CatalogueError, Feature, validate
from gogooku3.features.testing import market_inputs
from gogooku3.lake import open_lake

HISTORY, END = dt.date(2022, 1, 4), dt.date(2022, 6, 30)
BACKFILL = dt.date(2022, 3, 1)
DAILY = (dt.date(2022, 6, 21), dt.date(2022, 6, 23))
BEFORE = [d for d in trading_days(HISTORY, DAILY[0]) if d < DAILY[0]]
RESUME_DAY, CHECK_DAY = BEFORE[-LOOKBACK_ROWS], BEFORE[-1]
PAUSED, GAPPED, LATE = (
    "14810",
    "15770",
    "23720",
)  # no trades on the checkpoint day and the day after; a missing row; first seen late


def _no_trades(quotes: pl.DataFrame, code: str, days: list[dt.date]) -> pl.DataFrame:
    hit = (pl.col("Code") == code) & pl.col("Date").is_in(days)
    prices = [c for c in quotes.columns if c.endswith(("Open", "High", "Low", "Close"))]
    return quotes.with_columns(
        *(pl.when(hit).then(None).otherwise(pl.col(c)).alias(c) for c in prices),
        *(pl.when(hit).then(0.0).otherwise(pl.col(c)).alias(c) for c in ("Volume", "TurnoverValue")),
    )


@pytest.fixture(scope="module")
def inputs():
    base = market_inputs(15, HISTORY, END, seed=5)
    assert PAUSED in base.daily_quotes.get_column("Code").to_list()
    after = trading_days(RESUME_DAY, END)[1]
    return replace(base, daily_quotes=_no_trades(base.daily_quotes, PAUSED, [RESUME_DAY, after]))


def _lake(tmp_path_factory, inputs, name):
    lake = open_lake(str(tmp_path_factory.mktemp(name)))
    inputs.write_to(lake)
    return lake


def _quotes_reads(lake, monkeypatch) -> list[tuple]:
    """The (start, end) of every raw/daily_quotes range the build reads."""
    calls: list[tuple] = []
    read_range = lake.read_range

    def spy(layer, dataset, start, end, **kw):
        if (layer, dataset) == ("raw", "daily_quotes"):
            calls.append((start, end))
        return read_range(layer, dataset, start, end, **kw)

    monkeypatch.setattr(lake, "read_range", spy)
    return calls


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory, inputs):
    """A lake with features and checkpoints built over BACKFILL..DAILY[1] from the whole history
    (a build's targets read no bars after its end, so the daily run ends there too)."""
    lake = _lake(tmp_path_factory, inputs, "checkpointed")
    build_features_to_lake(lake, BACKFILL, DAILY[1], "cpu")
    return lake


def _checksums(lake, dataset, days):
    return {d: lake.read_manifest("features", dataset, d).checksum for d in days}


def test_a_daily_run_resumes_from_checkpoints_and_writes_the_same_bytes(backfilled, inputs, monkeypatch):
    days = [d for d in trading_days(*DAILY)]
    features, checkpoints = (
        _checksums(backfilled, "features", days),
        _checksums(backfilled, CHECKPOINTS, days),
    )
    reads = _quotes_reads(backfilled, monkeypatch)
    manifests = build_features_to_lake(backfilled, *DAILY, "cpu")
    assert reads == [(RESUME_DAY, DAILY[1])]  # the look-back only, not the whole history
    assert [m.date for m in manifests] == days
    assert _checksums(backfilled, "features", days) == features
    assert _checksums(backfilled, CHECKPOINTS, days) == checkpoints
    # and both equal the pure build over the whole history
    pure = build_features(inputs.daily_quotes, **inputs.kwargs(), start=DAILY[0], end=DAILY[1])
    back = backfilled.read_range("features", "features", *DAILY)
    assert back.select(pure.columns).equals(pure.sort("Date", "Code"))


def test_the_planted_pause_is_in_the_checkpoint(backfilled):
    """The first test resumes a code with no trade on the checkpoint day (and the day after): its
    close is the one carried in the checkpoint."""
    state = backfilled.read_partition("features", CHECKPOINTS, RESUME_DAY).filter(pl.col("Code") == PAUSED)
    assert state.height == 1 and state.item(0, "px_close") is not None
    assert state.item(0, "obs_count") > 1


def test_without_a_checkpoint_the_build_reads_the_whole_history(tmp_path_factory, inputs, monkeypatch):
    lake = _lake(tmp_path_factory, inputs, "no_checkpoint")
    build_features_to_lake(lake, BACKFILL, DAILY[1], "cpu")
    days = list(trading_days(*DAILY))
    features = _checksums(lake, "features", days)
    lake.storage.delete(f"features/{CHECKPOINTS}/date={CHECK_DAY.isoformat()}/_manifest.json")
    assert "no checkpoint of " + CHECK_DAY.isoformat() in plan_resume(lake, DAILY[0], HISTORY, "cpu")
    reads = _quotes_reads(lake, monkeypatch)
    build_features_to_lake(lake, *DAILY, "cpu")
    assert reads == [(HISTORY, DAILY[1])]
    assert _checksums(lake, "features", days) == features


def test_a_gap_in_a_codes_rows_falls_back_to_the_whole_history(tmp_path_factory, inputs, monkeypatch, caplog):
    # a code without a row on one day between the checkpoint and the output: its windows would
    # reach before the checkpoint, so the build must not resume
    gap_day = BEFORE[-10]
    quotes = inputs.daily_quotes.filter(~((pl.col("Code") == GAPPED) & (pl.col("Date") == gap_day)))
    gapped = replace(inputs, daily_quotes=quotes)
    lake = _lake(tmp_path_factory, gapped, "gap")
    build_features_to_lake(lake, BACKFILL, DAILY[1], "cpu")
    days = list(trading_days(*DAILY))
    features = _checksums(lake, "features", days)
    reads = _quotes_reads(lake, monkeypatch)
    build_features_to_lake(lake, *DAILY, "cpu")
    assert reads == [(RESUME_DAY, DAILY[1]), (HISTORY, DAILY[1])]  # tried, then the whole history
    assert f"fewer than {LOOKBACK_ROWS} rows of their code in the panel, e.g. {GAPPED}" in caplog.text
    assert _checksums(lake, "features", days) == features


def _panel(inputs, checkpoint=None, first=HISTORY):
    from gogooku3.features.prepare import prepare_panel

    quotes = inputs.daily_quotes.filter(pl.col("Date").is_between(first, DAILY[1]))
    return prepare_panel(quotes, listed_info=inputs.listed_info, checkpoint=checkpoint, peers_since=DAILY[0])


def test_a_panel_is_refused_when_a_count_differs_from_the_check_day(backfilled, inputs):
    state = backfilled.read_partition("features", CHECKPOINTS, RESUME_DAY)
    check = backfilled.read_partition("features", CHECKPOINTS, CHECK_DAY)
    panel = _panel(inputs, state, RESUME_DAY)
    assert bounded_panel_problem(panel, DAILY[0], check) is None
    # without the checkpoint a code's count starts at 1 on the resume day: the check day disagrees
    problem = bounded_panel_problem(_panel(inputs, first=RESUME_DAY), DAILY[0], check)
    assert problem is not None and "counted differently than the checkpoint of " + str(CHECK_DAY) in problem
    assert "no checkpoint" in bounded_panel_problem(panel, DAILY[0], None)


def test_a_code_first_seen_on_an_output_day_cannot_be_verified(backfilled, inputs):
    state = backfilled.read_partition("features", CHECKPOINTS, RESUME_DAY)
    check = backfilled.read_partition("features", CHECKPOINTS, CHECK_DAY)
    # LATE missing from every row before the output days: new, or back after a pause?
    quotes = inputs.daily_quotes.filter((pl.col("Code") != LATE) | (pl.col("Date") >= DAILY[0]))
    panel = _panel(replace(inputs, daily_quotes=quotes), state.filter(pl.col("Code") != LATE), RESUME_DAY)
    problem = bounded_panel_problem(panel, DAILY[0], check.filter(pl.col("Code") != LATE))
    assert problem is not None and "first seen after the checkpoint" in problem and LATE in problem


def test_lookback_is_the_longest_exact_from_or_the_peer_window():
    exact = exact_from()
    assert LOOKBACK_ROWS == max(*exact.values(), PEER_WINDOW)
    # ret_1d-based 60-row windows: one row for the return, 59 more for the window
    assert exact["_ret_mean_60"] == 60 and exact["_ret_1d_raw"] == 1
    layers = validate(
        (
            Feature("slow", "pct_change", ("px_close",), "returns", "", 5),
            Feature("fast", "rmean", ("slow",), "returns", "", 30),
        ),
        frozenset({"px_close"}),
    )
    assert lookback_rows(layers) == max(5 + 29, PEER_WINDOW)


def test_an_ema_over_an_input_exact_only_later_is_rejected():
    layers = validate(
        (
            Feature("lagged", "shift", ("px_close",), "returns", "", 2),
            Feature("smooth", "ema", ("lagged",), "returns", "", 10),
        ),
        frozenset({"px_close"}),
    )
    with pytest.raises(CatalogueError, match="'smooth'.*exact only from row 2"):
        exact_from(layers)


def test_too_little_history_is_said_not_guessed(backfilled):
    early = trading_days(HISTORY, END)[LOOKBACK_ROWS - 1]
    assert "a checkpoint needs more than" in plan_resume(backfilled, early, HISTORY, "cpu")


def test_a_checkpoint_of_another_engine_or_definition_is_not_resumed_from(backfilled):
    state = backfilled.read_partition("features", CHECKPOINTS, RESUME_DAY)
    assert resume_problem(state, "cpu") is None
    assert "written by engine ['cpu'], this build runs on 'gpu'" in resume_problem(state, "gpu")
    stale = state.with_columns(pl.lit("0123456789abcdef").alias("definition"))
    assert "another definition of the stateful features" in resume_problem(stale, "cpu")
    assert "has no column(s) _ema_5__state" in resume_problem(state.drop("_ema_5__state"), "cpu")
    assert "was written by engine" in plan_resume(backfilled, DAILY[0], HISTORY, "gpu")


def test_the_definition_covers_the_stateful_features_and_what_they_read():
    base = state_definition()
    assert state_definition(FEATURES) == base
    by_name = {f.name: f for f in FEATURES}

    def changed(name: str, **edit) -> str:
        return state_definition([replace(f, **edit) if f.name == name else f for f in FEATURES])

    assert changed("_ema_20", window=21) != base  # an EMA's span
    assert changed("_true_range", op="add") != base  # what an EMA reads (ATR's true range)
    unrelated = next(f.name for f in FEATURES if f.op == "cs_rank")
    assert changed(unrelated, window=3) == base  # a cross-section no EMA reads
    assert by_name["_atr_14"].inputs == ("_true_range",)


def test_the_gpu_engine_resumes_the_same_way(fake_rapids, backfilled, inputs):
    """The GPU engine's logic (on the cuDF stand-in): resumed from its own checkpoints it gives its
    own whole-history bits, and its checkpoint columns are the CPU engine's within the parity
    tolerance."""
    kwargs = inputs.kwargs()
    states = build_features(
        inputs.daily_quotes, **kwargs, start=RESUME_DAY, end=CHECK_DAY, engine="gpu", states=True
    )
    resume = Resume(states.filter(pl.col("Date") == RESUME_DAY), states.filter(pl.col("Date") == CHECK_DAY))
    window = inputs.daily_quotes.filter(pl.col("Date") >= RESUME_DAY)
    resumed = build_features(window, **kwargs, start=DAILY[0], end=DAILY[1], engine="gpu", resume=resume)
    whole = build_features(inputs.daily_quotes, **kwargs, start=DAILY[0], end=DAILY[1], engine="gpu")
    assert resumed.equals(whole)
    cpu = backfilled.read_partition("features", CHECKPOINTS, CHECK_DAY).sort("Code")
    gpu = states.filter(pl.col("Date") == CHECK_DAY).sort("Code")
    for column in CHECKPOINT_COLUMNS:
        np.testing.assert_allclose(gpu[column].to_numpy(), cpu[column].to_numpy(), rtol=1e-9, equal_nan=True)
