"""Champion/challenger: whether a newly trained network (the challenger) replaces the live one (the
champion). Pure: the figures come in, a :class:`Decision` goes out; the registry shell
(:mod:`gogooku3.tracking.registry`) fetches the figures and applies the decision.

Both networks are scored on the same days: the challenger's most recent test folds, minus any day
the champion could have learnt from (its validation end plus the embargo, since a validation
day's targets reach that far), by their mean daily RankIC@1d against the lake's targets. The
challenger is promoted only if its RankIC is positive, it beats the champion by ``margin`` and it is
not below the ridge baseline on those days; with no champion yet it must beat ridge. A challenger
that cannot be compared fairly (no such day) is never promoted. (The positive RankIC is what keeps a
noise model from going live where ridge does worse than chance: a retrain on a market without
signal once became the first champion with RankIC@1d -0.0039 against ridge's -0.0107.)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import polars as pl

from gogooku3.calendar import trading_days

#: Default: the challenger must beat the champion's RankIC@1d by this much (absolute).
DEFAULT_MARGIN = 0.002
#: Default: how many of the challenger's most recent test folds the comparison scores.
DEFAULT_EVAL_FOLDS = 2


@dataclass(frozen=True)
class PromotionPolicy:
    margin: float = DEFAULT_MARGIN
    eval_folds: int = DEFAULT_EVAL_FOLDS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"promotion margin must be a finite number >= 0, got {self.margin}")
        if self.eval_folds < 1:
            raise ValueError(f"promotion eval_folds must be >= 1, got {self.eval_folds}")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger_rank_ic: float
    ridge_rank_ic: float
    champion_rank_ic: float | None
    days: int
    first_day: str | None
    last_day: str | None
    margin: float

    def to_dict(self) -> dict:
        return asdict(self)


def evaluation_days(
    summary: dict, eval_folds: int, embargo: int, champion_seen_through: dt.date | None = None
) -> list[dt.date]:
    """The test days of the challenger's last ``eval_folds`` folds (from its run ``summary``), after
    ``champion_seen_through`` plus ``embargo`` trading days when there is a champion."""
    folds = summary["folds"][-eval_folds:]
    start = dt.date.fromisoformat(folds[0]["test_start"])
    end = dt.date.fromisoformat(folds[-1]["test_end"])
    days = list(trading_days(start, end))
    if champion_seen_through is not None:
        after = trading_days(
            champion_seen_through, champion_seen_through + dt.timedelta(days=3 * embargo + 30)
        )
        cutoff = after[min(embargo, len(after) - 1)]  # embargo trading days after it
        days = [d for d in days if d > cutoff]
    return days


def mean_daily_rank_ic(
    preds: pl.DataFrame, targets: pl.DataFrame, days: Sequence[dt.date], horizon: int = 1
) -> float:
    """Mean over ``days`` of the daily RankIC of ``pred_ret_{h}d`` against ``target_ret_{h}d``
    (joined on Date, Code; the metrics' own rules for a valid day)."""
    from gogooku3.training.metrics import mean_rank_ic

    pred, target = f"pred_ret_{horizon}d", f"target_ret_{horizon}d"
    keep = pl.col("Date").is_in(list(days))
    joined = (
        preds.filter(keep)
        .select("Date", "Code", pred)
        .join(targets.filter(keep).select("Date", "Code", target), on=["Date", "Code"], how="inner")
    )
    return mean_rank_ic(joined, pred, target)[0]


def decide(
    challenger: float,
    ridge: float,
    champion: float | None,
    policy: PromotionPolicy,
    days: Sequence[dt.date],
) -> Decision:
    """The decision and its reason, in words a Slack reader understands."""

    def made(promote: bool, reason: str) -> Decision:
        return Decision(
            promote=promote,
            reason=reason,
            challenger_rank_ic=challenger,
            ridge_rank_ic=ridge,
            champion_rank_ic=champion,
            days=len(days),
            first_day=min(days).isoformat() if days else None,
            last_day=max(days).isoformat() if days else None,
            margin=policy.margin,
        )

    if not days:
        return made(False, "no test day after the champion's last training day: no fair comparison")
    if not math.isfinite(challenger):
        return made(False, "the challenger has no valid RankIC@1d on the evaluation days")
    if challenger <= 0:
        return made(
            False, f"challenger RankIC@1d {challenger:.4f} is not positive: it ranks no better than chance"
        )
    if not math.isfinite(ridge) or challenger < ridge:
        return made(False, f"challenger RankIC@1d {challenger:.4f} is below the ridge baseline's {ridge:.4f}")
    if champion is None:
        if challenger <= ridge:
            return made(False, f"challenger RankIC@1d {challenger:.4f} does not beat ridge's {ridge:.4f}")
        return made(True, f"first champion: RankIC@1d {challenger:.4f} beats ridge's {ridge:.4f}")
    if not math.isfinite(champion):
        return made(True, f"the champion has no valid RankIC@1d on these days; challenger {challenger:.4f}")
    if challenger > champion + policy.margin:
        return made(
            True,
            f"challenger RankIC@1d {challenger:.4f} beats champion {champion:.4f} by more than "
            f"{policy.margin:g} (ridge {ridge:.4f})",
        )
    return made(
        False,
        f"challenger RankIC@1d {challenger:.4f} does not beat champion {champion:.4f} by more than {policy.margin:g}",
    )
