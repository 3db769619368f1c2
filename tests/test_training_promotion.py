"""The champion/challenger rule (gogooku3.training.promotion): which days both are scored on, and
when the challenger replaces the champion."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from gogooku3.calendar import trading_days
from gogooku3.training.promotion import PromotionPolicy, decide, evaluation_days, mean_daily_rank_ic

POLICY = PromotionPolicy(margin=0.01, eval_folds=2)
DAYS = list(trading_days(dt.date(2024, 1, 4), dt.date(2024, 3, 29)))


def _summary() -> dict:
    blocks = [("2023-10-02", "2023-11-30"), ("2024-01-04", "2024-02-15"), ("2024-02-16", "2024-03-29")]
    return {"folds": [{"fold": i, "test_start": a, "test_end": b} for i, (a, b) in enumerate(blocks)]}


def test_evaluation_days_are_the_last_folds_test_days():
    days = evaluation_days(_summary(), 2, embargo=20)
    assert days == DAYS
    assert evaluation_days(_summary(), 1, embargo=20)[0] == dt.date(2024, 2, 16)


def test_evaluation_days_leave_out_what_the_champion_saw_and_the_embargo():
    seen = dt.date(2024, 1, 31)
    days = evaluation_days(_summary(), 2, embargo=5, champion_seen_through=seen)
    # 5 trading days after 31 Jan is 7 Feb; the first scored day is the next one.
    assert days[0] == dt.date(2024, 2, 8) and days[-1] == DAYS[-1]
    assert all(d > seen for d in days) and len(days) == len([d for d in DAYS if d > dt.date(2024, 2, 7)])
    assert evaluation_days(_summary(), 2, embargo=20, champion_seen_through=dt.date(2024, 3, 28)) == []


@pytest.mark.parametrize(
    ("challenger", "ridge", "champion", "promote", "words"),
    [
        (0.08, 0.05, None, True, "first champion"),
        (0.05, 0.05, None, False, "does not beat ridge"),
        (0.04, 0.05, None, False, "below the ridge baseline"),
        (0.07, 0.05, 0.055, True, "beats champion 0.0550 by more than 0.01"),
        (0.065, 0.05, 0.055, False, "does not beat champion"),
        (0.09, 0.095, 0.02, False, "below the ridge baseline"),
        (float("nan"), 0.05, 0.02, False, "no valid RankIC"),
        (-0.0039, -0.0107, None, False, "is not positive"),  # beats ridge, but worse than chance
        (0.0, -0.01, None, False, "is not positive"),
        (-0.01, -0.05, -0.04, False, "is not positive"),  # beats a negative champion: still not live
        (0.001, -0.01, None, True, "first champion"),
    ],
)
def test_decide(challenger, ridge, champion, promote, words):
    d = decide(challenger, ridge, champion, POLICY, DAYS)
    assert d.promote is promote and words in d.reason
    assert (d.ridge_rank_ic, d.champion_rank_ic, d.margin) == (ridge, champion, 0.01)
    assert d.challenger_rank_ic == challenger or (np.isnan(challenger) and np.isnan(d.challenger_rank_ic))
    assert (d.days, d.first_day, d.last_day) == (len(DAYS), "2024-01-04", "2024-03-29")


def test_no_fair_day_never_promotes():
    d = decide(0.5, 0.0, 0.0, POLICY, [])
    assert not d.promote and "no fair comparison" in d.reason and d.first_day is None


def test_policy_is_validated():
    with pytest.raises(ValueError, match="margin"):
        PromotionPolicy(margin=-0.1)
    with pytest.raises(ValueError, match="eval_folds"):
        PromotionPolicy(eval_folds=0)


def test_mean_daily_rank_ic_scores_only_the_given_days():
    rng = np.random.default_rng(0)
    codes = [f"{1000 + i}" for i in range(50)]
    rows = []
    for k, day in enumerate(DAYS[:4]):
        target = rng.normal(size=50)
        pred = target if k < 2 else -target  # perfect on the first two days, inverted after
        rows += [(day, c, p, t) for c, p, t in zip(codes, pred, target, strict=True)]
    frame = pl.DataFrame(rows, schema=["Date", "Code", "pred_ret_1d", "target_ret_1d"], orient="row")
    preds, targets = frame.drop("target_ret_1d"), frame.drop("pred_ret_1d")
    assert mean_daily_rank_ic(preds, targets, DAYS[:2]) == pytest.approx(1.0)
    assert mean_daily_rank_ic(preds, targets, DAYS[2:4]) == pytest.approx(-1.0)
    assert mean_daily_rank_ic(preds, targets, DAYS[:4]) == pytest.approx(0.0)
