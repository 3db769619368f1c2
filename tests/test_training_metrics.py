"""Evaluation metrics (gogooku3.training.metrics) and plots (gogooku3.training.plots) of walk-forward
out-of-sample predictions: each definition pinned by a case that only it passes."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from gogooku3.training.metrics import (
    ANNUALISATION,
    MIN_PAIRS,
    Metrics,
    average_ranks,
    daily_frame,
    daily_metrics,
    evaluate,
    mean_rank_ic,
    rank_ic_by_day,
)
from gogooku3.training.plots import decile_means, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DAY0 = dt.date(2021, 1, 4)


def _dates(n_days: int) -> list[dt.date]:
    return [DAY0 + dt.timedelta(days=i) for i in range(n_days)]


def _frames(
    target: np.ndarray, preds: dict[str, np.ndarray], horizon: int = 1, folds: np.ndarray | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(preds, targets) from (days, codes) arrays; NaN targets become nulls, ``folds`` per day."""
    n_days, n_codes = target.shape
    dates = pl.Series([d for d in _dates(n_days) for _ in range(n_codes)], dtype=pl.Date)
    codes = [f"c{i:03d}" for i in range(n_codes)] * n_days
    fold = np.repeat(np.zeros(n_days, dtype=np.int64) if folds is None else folds, n_codes)
    targets = pl.DataFrame(
        {
            "Date": dates,
            "Code": codes,
            f"target_ret_{horizon}d": pl.Series(target.ravel(), dtype=pl.Float64, nan_to_null=True),
        }
    )
    frames = [
        pl.DataFrame(
            {
                "Date": dates,
                "Code": codes,
                "model": [model] * len(codes),
                "fold": fold,
                f"pred_ret_{horizon}d": p.ravel().astype(np.float64),
            }
        )
        for model, p in preds.items()
    ]
    return pl.concat(frames), targets


def _one(target: np.ndarray, pred: np.ndarray, horizon: int = 1) -> dict:
    preds, targets = _frames(target, {"m": pred}, horizon)
    return evaluate(preds, targets, [horizon])["m"][f"{horizon}d"]


@pytest.fixture(scope="module")
def normal_target() -> np.ndarray:
    # An odd number of codes: one name per day sits exactly on the median.
    return np.random.default_rng(1).normal(size=(30, 51))


def test_perfect_and_negated_predictors(normal_target):
    perfect = _one(normal_target, normal_target)
    assert perfect["rank_ic"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["ic"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["hit_rate"] == 1.0
    assert perfect["decile_spread"] > 0
    assert perfect["n_days"] == 30 and perfect["n_obs"] == 30 * 51

    negated = _one(normal_target, -normal_target)
    assert negated["rank_ic"] == pytest.approx(-1.0, abs=1e-12)
    assert negated["ic"] == pytest.approx(-1.0, abs=1e-12)
    assert negated["hit_rate"] == 0.0
    assert negated["decile_spread"] == pytest.approx(-perfect["decile_spread"])


def test_monotone_transform_keeps_rank_ic_not_ic(normal_target):
    m = _one(normal_target, normal_target**3)
    assert m["rank_ic"] == pytest.approx(1.0, abs=1e-12)
    assert m["ic"] < 0.95
    assert m["hit_rate"] == 1.0


def test_metrics_are_per_day_not_pooled():
    """Day-level offsets shared by predictions and targets give a pooled correlation near 1; within
    each day the two are independent, so the daily RankIC and IC average to about 0."""
    rng = np.random.default_rng(2)
    n_days, n_codes = 40, 200
    offset = 10.0 * np.arange(n_days)[:, None]
    target = rng.normal(size=(n_days, n_codes)) + offset
    pred = rng.normal(size=(n_days, n_codes)) + offset
    assert np.corrcoef(pred.ravel(), target.ravel())[0, 1] > 0.99
    m = _one(target, pred)
    assert abs(m["rank_ic"]) < 4 * m["rank_ic_se"]
    assert abs(m["rank_ic"]) < 0.05 and abs(m["ic"]) < 0.05
    assert 0.4 < m["hit_rate"] < 0.6


def test_spearman_uses_average_ranks_for_ties():
    pred = np.array([1, 1, 2, 3, 3, 3, 4, 5, 6, 7], dtype=float)
    target = np.array([2, 1, 1, 4, 4, 5, 6, 6, 9, 8], dtype=float)
    # By hand: tied values share the mean of the ranks they span.
    pred_ranks = np.array([1.5, 1.5, 3, 5, 5, 5, 7, 8, 9, 10])
    target_ranks = np.array([3, 1.5, 1.5, 4.5, 4.5, 6, 7.5, 7.5, 10, 9])
    expected = float(np.corrcoef(pred_ranks, target_ranks)[0, 1])
    # Neither Pearson on the values nor ordinal ranks give it.
    assert abs(expected - np.corrcoef(pred, target)[0, 1]) > 1e-3
    ordinal = np.argsort(np.argsort(pred, kind="stable"), kind="stable")
    ordinal_t = np.argsort(np.argsort(target, kind="stable"), kind="stable")
    assert abs(expected - np.corrcoef(ordinal, ordinal_t)[0, 1]) > 1e-3

    np.testing.assert_array_equal(average_ranks(pred), pred_ranks)
    np.testing.assert_array_equal(average_ranks(target), target_ranks)
    assert daily_metrics(pred, target).rank_ic == pytest.approx(expected, abs=1e-12)
    assert _one(target[None, :], pred[None, :])["rank_ic"] == pytest.approx(expected, abs=1e-12)
    frame = pl.DataFrame({"Date": [DAY0] * 10, "s": pred, "y": target})
    assert rank_ic_by_day(frame, "s", "y")["rank_ic"].to_list() == [pytest.approx(expected, abs=1e-12)]


def test_decile_spread_sharpe_and_turnover_by_hand():
    """20 codes, 3 days, so the top and bottom deciles are 2 names each.

    day 1: pred = index -> top {c18, c19}, bottom {c00, c01}
    day 2: c17 and c19 swap predictions -> top {c17, c18}: one name of two changed
    day 3: pred = -index -> top {c00, c01}: both changed
    """
    idx = np.arange(20, dtype=float)
    day2 = idx.copy()
    day2[[17, 19]] = [19.0, 17.0]
    pred = np.stack([idx, day2, -idx])
    day1_target = np.zeros(20)
    day1_target[[19, 18, 0, 1]] = [4.0, 2.0, -1.0, -3.0]
    target = np.stack([day1_target, idx, idx])
    # Spreads: (4+2)/2 - (-1-3)/2 = 5; (17+18)/2 - (0+1)/2 = 17; (0+1)/2 - (18+19)/2 = -18.
    spreads = np.array([5.0, 17.0, -18.0])

    m = _one(target, pred)
    daily = daily_frame(*_frames(target, {"m": pred}), [1])
    assert daily["spread"].to_list() == pytest.approx(spreads.tolist())
    assert m["decile_spread"] == pytest.approx(4.0 / 3.0)
    assert m["spread_sharpe"] == pytest.approx(
        spreads.mean() / spreads.std(ddof=1) * math.sqrt(ANNUALISATION)
    )
    assert m["turnover"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["n_days"] == 3 and m["n_obs"] == 60


def test_random_predictions_within_standard_error():
    rng = np.random.default_rng(3)
    n_days, n_codes = 300, 200
    target = rng.normal(size=(n_days, n_codes))
    m = _one(target, rng.normal(size=(n_days, n_codes)))
    assert m["n_days"] == n_days
    assert abs(m["rank_ic"]) < 4 * m["rank_ic_se"]
    # The daily RankIC of independent columns has std about 1 / sqrt(n - 1).
    assert m["rank_ic_std"] == pytest.approx(1 / math.sqrt(n_codes - 1), rel=0.2)
    assert m["rank_ic_se"] == pytest.approx(m["rank_ic_std"] / math.sqrt(n_days))
    assert m["icir"] == pytest.approx(m["rank_ic"] / m["rank_ic_std"])
    assert 0.45 < m["hit_rate"] < 0.55
    assert 0.8 < m["turnover"] < 1.0


def test_daily_frame_matches_the_numpy_reference():
    rng = np.random.default_rng(4)
    # Rounded values: ties in both columns.
    target = np.round(rng.normal(size=(5, 37)), 1)
    pred = np.round(target + rng.normal(size=(5, 37)), 0)
    daily = daily_frame(*_frames(target, {"m": pred}), [1])
    assert daily.height == 5
    for t, row in enumerate(daily.iter_rows(named=True)):
        ref = daily_metrics(pred[t], target[t])
        assert row["n"] == ref.n and row["hits"] == ref.hits and row["hit_n"] == ref.hit_n
        for key in ("ic", "rank_ic", "spread"):
            assert row[key] == pytest.approx(getattr(ref, key), abs=1e-12)


def test_null_pairs_and_thin_or_constant_days_are_dropped():
    rng = np.random.default_rng(5)
    target = rng.normal(size=(4, 15))
    pred = target + rng.normal(size=(4, 15))
    target[0, [2, 5, 9]] = np.nan  # 12 pairs left: kept
    target[1, :6] = np.nan  # 9 pairs left: dropped
    pred[2, 0] = np.nan  # 14 pairs left: kept
    pred[3, :] = 1.0  # constant predictions: dropped
    daily = daily_frame(*_frames(target, {"m": pred}), [1])
    assert daily["Date"].to_list() == [DAY0, DAY0 + dt.timedelta(days=2)]
    assert daily["n"].to_list() == [12, 14]
    ok = ~np.isnan(target[0])
    assert daily["rank_ic"][0] == pytest.approx(daily_metrics(pred[0, ok], target[0, ok]).rank_ic)
    assert daily_metrics(pred[1], target[1]) is None
    assert MIN_PAIRS == 10
    m = _one(target, pred)
    assert m["n_days"] == 2 and m["n_obs"] == 26


def test_evaluate_keys_by_fold_and_json_safe():
    rng = np.random.default_rng(6)
    n_days, n_codes = 6, 30
    folds = np.array([0, 0, 0, 1, 1, 1])
    t1 = rng.normal(size=(n_days, n_codes))
    preds, targets = _frames(t1, {"a": t1, "b": rng.normal(size=(n_days, n_codes))}, 1, folds)
    p5, tg5 = _frames(-t1, {"a": t1, "b": t1}, 5, folds)
    preds = preds.join(p5.select("Date", "Code", "model", "pred_ret_5d"), on=["Date", "Code", "model"])
    targets = targets.join(tg5, on=["Date", "Code"])

    overall = evaluate(preds, targets, [1, 5])
    assert set(overall) == {"a", "b"}
    assert all(set(v) == {"1d", "5d"} for v in overall.values())
    assert set(overall["a"]["1d"]) == set(Metrics.__dataclass_fields__)
    assert overall["a"]["1d"]["rank_ic"] == pytest.approx(1.0)
    assert overall["a"]["5d"]["rank_ic"] == pytest.approx(-1.0)
    assert overall["a"]["1d"]["n_days"] == n_days

    by_fold = evaluate(preds, targets, [1, 5], by_fold=True)
    assert set(by_fold) == {0, 1}
    for fold in (0, 1):
        assert set(by_fold[fold]) == {"a", "b"}
        assert by_fold[fold]["a"]["1d"]["n_days"] == 3
    # A fold's figures are its own days'.
    fold0 = evaluate(preds.filter(pl.col("fold") == 0), targets, [1, 5])
    assert by_fold[0]["b"]["1d"] == fold0["b"]["1d"]
    json.dumps(overall, allow_nan=False)
    json.dumps({str(k): v for k, v in by_fold.items()}, allow_nan=False)


def test_to_dict_writes_nan_as_none():
    # One valid day: no std, so the ratios are NaN.
    t = np.random.default_rng(7).normal(size=(1, 20))
    m = _one(t, t)
    assert m["n_days"] == 1
    assert m["rank_ic_std"] is None and m["rank_ic_se"] is None and m["icir"] is None
    assert m["spread_sharpe"] is None and m["turnover"] is None
    assert m["rank_ic"] == pytest.approx(1.0)
    nan = float("nan")
    d = Metrics(nan, nan, nan, nan, nan, nan, nan, float("inf"), nan, 0, 0).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False))["spread_sharpe"] is None
    assert d["n_days"] == 0


def test_model_without_valid_days_has_empty_metrics():
    t = np.random.default_rng(8).normal(size=(3, 20))
    preds, targets = _frames(t, {"flat": np.ones_like(t), "good": t})
    out = evaluate(preds, targets, [1])
    assert out["flat"]["1d"]["n_days"] == 0 and out["flat"]["1d"]["rank_ic"] is None
    assert out["good"]["1d"]["n_days"] == 3
    json.dumps(out, allow_nan=False)


def test_mean_rank_ic_of_an_oracle_column():
    rng = np.random.default_rng(9)
    n_days, n_codes = 50, 40
    alpha = rng.normal(size=(n_days, n_codes))
    target = alpha + rng.normal(size=(n_days, n_codes))
    preds, targets = _frames(target, {"oracle": alpha})
    frame = targets.join(preds.select("Date", "Code", "pred_ret_1d"), on=["Date", "Code"])
    by_day = rank_ic_by_day(frame, "pred_ret_1d", "target_ret_1d")
    assert by_day.columns == ["Date", "rank_ic"] and by_day.height == n_days
    mean, se, n = mean_rank_ic(frame, "pred_ret_1d", "target_ret_1d")
    m = evaluate(preds, targets, [1])["oracle"]["1d"]
    assert n == n_days
    assert mean == pytest.approx(m["rank_ic"]) and se == pytest.approx(m["rank_ic_se"])
    assert mean > 0.5
    assert math.isnan(mean_rank_ic(frame.head(5), "pred_ret_1d", "target_ret_1d")[0])


def test_decile_means_increase_for_a_perfect_predictor(normal_target):
    preds, targets = _frames(normal_target, {"perfect": normal_target, "negated": -normal_target})
    means = decile_means(preds, targets, 1)
    assert means.columns == ["model", "decile", "mean_target"]
    perfect = means.filter(pl.col("model") == "perfect")
    assert perfect["decile"].to_list() == list(range(1, 11))
    assert np.all(np.diff(perfect["mean_target"].to_numpy()) > 0)
    negated = means.filter(pl.col("model") == "negated")["mean_target"].to_numpy()
    assert np.all(np.diff(negated) < 0)


def test_write_plots_writes_three_pngs(tmp_path, normal_target):
    rng = np.random.default_rng(10)
    preds, targets = _frames(normal_target, {"perfect": normal_target, "noise": rng.normal(size=(30, 51))})
    daily = daily_frame(preds, targets, [1])
    out = tmp_path / "plots"
    paths = write_plots(daily, preds, targets, out, horizon=1)
    assert sorted(p.name for p in paths) == ["cumulative_rank_ic.png", "decile_bars.png", "long_short.png"]
    for p in paths:
        assert p.parent == out
        data = p.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC


def test_same_predictions_in_any_row_order_give_the_same_bits():
    """A rerun must reproduce its metrics exactly, yet joins and parallel group-bys fix no row order:
    every figure is the same float whatever order the rows of both frames come in."""
    rng = np.random.default_rng(5)
    target = rng.normal(size=(250, 300))
    preds, targets = _frames(
        target,
        {m: target * w + rng.normal(size=target.shape) for m, w in (("a", 0.1), ("b", 0.3), ("c", 0.0))},
        folds=np.repeat(np.arange(5), 50),
    )
    for by_fold in (False, True):
        reference = json.dumps(evaluate(preds, targets, [1], by_fold=by_fold))
        for seed in range(8):
            shuffled = evaluate(
                preds.sample(fraction=1.0, shuffle=True, seed=seed),
                targets.sample(fraction=1.0, shuffle=True, seed=seed + 50),
                [1],
                by_fold=by_fold,
            )
            assert json.dumps(shuffled) == reference
