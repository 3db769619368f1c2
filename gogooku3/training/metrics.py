"""Evaluation metrics of walk-forward out-of-sample predictions of daily stock returns.

Every metric is cross-sectional: it is computed **per day first** (over the codes of that day) and
only then aggregated over days. Pooling all (day, code) pairs would reward a model for calling the
market's daily level, which is not its job (the targets it ranks are returns against each other), and
one day-level offset shared by predictions and targets can fake a strong pooled correlation with no
within-day skill at all.

Inputs
------
``preds``: ``Date`` (date), ``Code`` (str), ``model`` (str), ``fold`` (int) and ``pred_ret_{h}d``
(float) per horizon ``h``. ``targets``: ``Date``, ``Code`` and ``target_ret_{h}d`` (float, null when
unknown), one row per (Date, Code). Predictions are joined to targets on (Date, Code).

Valid pairs and days
--------------------
A (day, code) pair counts only when both its prediction and its target are finite (null, NaN and
inf are dropped pair by pair, before anything else). A day counts only when it has at least
:data:`MIN_PAIRS` valid pairs and neither its predictions nor its targets are constant: otherwise the
correlations are undefined. Dropped days take no part in any metric.

Definitions (for one model, one horizon, over its valid days)
--------------------------------------------------------------
* ``ic``: mean over days of the daily Pearson correlation of prediction and target.
* ``rank_ic``: mean over days of the daily Spearman correlation, i.e. the Pearson correlation of the
  average ranks (tied values share the mean of the ranks they span; the same as polars'
  ``pl.corr(..., method="spearman")``). ``rank_ic_std`` is the std (ddof=1) of the daily RankIC and
  ``rank_ic_se`` = ``rank_ic_std / sqrt(n_days)`` the standard error of its mean.
* ``icir``: mean daily RankIC / its std - a RankIC-based information ratio per day, **not
  annualised**.
* ``hit_rate``: a *cross-sectional* hit rate. On each day, a pair hits when
  ``sign(pred - median(pred)) == sign(target - median(target))``, medians taken over that day's valid
  pairs: the model is asked whether a name beats the day's typical name, not where the market goes.
  Pairs with either side exactly on its day's median carry no direction and are left out of both the
  hits and the count (so a perfect predictor scores exactly 1 and its negation exactly 0 whatever the
  number of names). ``hit_rate`` = total hits / total counted pairs over all valid days.
* deciles: on a day with ``n`` valid pairs, names are ranked by prediction with
  ``rank("ordinal")`` (1 = lowest; ties broken by ``Code`` order), ``k = n // 10`` (>= 1, as n >= 10);
  the **top decile** is the names with ordinal rank ``> n - k``, the **bottom decile** those with rank
  ``<= k``. The daily spread is mean target of the top decile minus mean target of the bottom.
  ``decile_spread`` is its mean over days.
* ``spread_sharpe``: mean / std (ddof=1) of the daily spread, times ``sqrt(ANNUALISATION)``. For an
  h-day horizon the daily spreads are h-day returns of overlapping holding periods, so this is an
  overlapping-horizon figure: comparable across models at one horizon, not a tradable Sharpe ratio.
* ``turnover``: mean over consecutive valid days t-1, t (consecutive in the series of valid days, even
  across a dropped day or a fold boundary) of ``1 - |top_t & top_{t-1}| / |top_t|``, the fraction of
  today's top-decile names that were not in the previous day's top decile.
* ``n_days``: valid days; ``n_obs``: valid pairs on them.

Ratios whose denominator is 0 (a single day, a zero std) are NaN; :meth:`Metrics.to_dict` writes every
non-finite float as ``None`` so that the result is strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from gogooku3.training.dataset import target_column

ANNUALISATION = 252
N_QUANTILES = 10
MIN_PAIRS = 10

DAY = ["model", "horizon", "Date"]
DAILY_COLUMNS = ["model", "horizon", "Date", "n", "ic", "rank_ic", "spread", "hits", "hit_n"]


def pred_column(horizon: int) -> str:
    """The predictions' column for ``horizon`` trading days (the targets' is ``target_column``)."""
    return f"pred_ret_{horizon}d"


@dataclass(frozen=True)
class Metrics:
    """One model's metrics at one horizon over a set of days; see the module docstring."""

    ic: float
    rank_ic: float
    rank_ic_std: float
    rank_ic_se: float
    icir: float
    hit_rate: float
    decile_spread: float
    spread_sharpe: float
    turnover: float
    n_days: int
    n_obs: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The fields as a JSON-safe dict: NaN and inf become ``None``."""
        return {k: _json_number(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DayMetrics:
    """One day's cross-sectional figures: the reference definitions, array by array."""

    n: int
    ic: float
    rank_ic: float
    spread: float
    hits: int
    hit_n: int


def _json_number(v: float | int) -> float | int | None:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------------------------------------
# One day, numpy (reference implementation; the frame functions below compute the same with polars)


def average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a``, tied values sharing the mean of the ranks they span."""
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    # Start of each run of equal values, and its length.
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    lengths = np.diff(np.r_[starts, len(a)])
    run_rank = starts + (lengths + 1) / 2.0
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, lengths)
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays; NaN when either is constant."""
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def daily_metrics(pred: np.ndarray, target: np.ndarray) -> DayMetrics | None:
    """One day's figures from its predictions and targets (same order, one entry per code), or
    ``None`` when the day is not valid (under :data:`MIN_PAIRS` finite pairs, or a constant side).

    Ties in the decile ranking are broken by position in the arrays (pass them in ``Code`` order to
    match :func:`daily_frame`)."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    ok = np.isfinite(pred) & np.isfinite(target)
    p, y = pred[ok], target[ok]
    n = len(p)
    if n < MIN_PAIRS or p.max() == p.min() or y.max() == y.min():
        return None
    k = n // N_QUANTILES
    order = np.argsort(p, kind="stable")
    spread = float(y[order[n - k :]].mean() - y[order[:k]].mean())
    sp, sy = np.sign(p - np.median(p)), np.sign(y - np.median(y))
    counted = (sp != 0) & (sy != 0)
    return DayMetrics(
        n=n,
        ic=pearson(p, y),
        rank_ic=pearson(average_ranks(p), average_ranks(y)),
        spread=spread,
        hits=int((counted & (sp == sy)).sum()),
        hit_n=int(counted.sum()),
    )


# ---------------------------------------------------------------------------------------------------
# Frames


def valid_pairs(
    preds: pl.DataFrame, targets: pl.DataFrame, horizons: Sequence[int], keys: Sequence[str] = ()
) -> pl.LazyFrame:
    """Long (``*keys``, model, horizon, Date, Code, pred, target) of the valid pairs on valid days,
    sorted by (``*keys``, model, horizon, Date, Code), with the day's pair count ``n``, the decile
    flags ``top`` / ``bottom`` (see the module docstring) and the prediction ``decile`` 1..10 of
    :func:`~gogooku3.training.plots.decile_means`. Predictions join targets on (Date, Code); targets
    must be unique per (Date, Code) (polars raises otherwise)."""
    if not horizons:
        raise ValueError("no horizons to evaluate")
    parts = []
    for h in horizons:
        p, t = pred_column(h), target_column(h)
        if p not in preds.columns:
            raise KeyError(f"predictions have no column {p!r} (columns: {preds.columns})")
        if t not in targets.columns:
            raise KeyError(f"targets have no column {t!r} (columns: {targets.columns})")
        part = (
            preds.lazy()
            .select(*keys, "model", "Date", "Code", pl.col(p).cast(pl.Float64).alias("pred"))
            .join(
                targets.lazy().select("Date", "Code", pl.col(t).cast(pl.Float64).alias("target")),
                on=["Date", "Code"],
                how="inner",
                validate="m:1",
            )
            .with_columns(pl.lit(h, dtype=pl.Int64).alias("horizon"))
        )
        parts.append(part)
    day = [*keys, *DAY]
    pairs = pl.concat(parts).filter(pl.col("pred").is_finite() & pl.col("target").is_finite())
    pairs = (
        pairs.with_columns(
            pl.len().over(day).alias("n"),
            (pl.col("pred").max() > pl.col("pred").min()).over(day).alias("_vp"),
            (pl.col("target").max() > pl.col("target").min()).over(day).alias("_vt"),
        )
        .filter((pl.col("n") >= MIN_PAIRS) & pl.col("_vp") & pl.col("_vt"))
        .drop("_vp", "_vt")
        .sort(*day, "Code")
    )
    # Ordinal ranks break ties by row order, i.e. by Code after the sort.
    k = pl.col("n") // N_QUANTILES
    ordinal = pl.col("pred").rank("ordinal").over(day)
    return pairs.with_columns(
        (ordinal > pl.col("n") - k).alias("top"),
        (ordinal <= k).alias("bottom"),
        ((ordinal - 1) * N_QUANTILES // pl.col("n") + 1).cast(pl.Int64).alias("decile"),
    )


def _daily(pairs: pl.LazyFrame, keys: Sequence[str] = ()) -> pl.LazyFrame:
    day = [*keys, *DAY]
    sign_p = (pl.col("pred") - pl.col("pred").median()).sign()
    sign_t = (pl.col("target") - pl.col("target").median()).sign()
    counted = (sign_p != 0) & (sign_t != 0)
    target = pl.col("target")
    return (
        pairs.group_by(day)
        .agg(
            pl.len().alias("n"),
            pl.corr("pred", "target").alias("ic"),
            pl.corr(pl.col("pred").rank("average"), target.rank("average")).alias("rank_ic"),
            (target.filter(pl.col("top")).mean() - target.filter(pl.col("bottom")).mean()).alias("spread"),
            (counted & (sign_p == sign_t)).sum().cast(pl.Int64).alias("hits"),
            counted.sum().cast(pl.Int64).alias("hit_n"),
        )
        .with_columns(pl.col("n").cast(pl.Int64))
        .sort(day)
    )


def _turnover(pairs: pl.LazyFrame, keys: Sequence[str] = ()) -> pl.LazyFrame:
    """(``*keys``, model, horizon, turnover): the list, over consecutive valid days, of the fraction
    of the top decile's names that were not in the previous valid day's top decile (its mean is the
    metric, taken by :func:`_exact_mean`)."""
    series = [*keys, "model", "horizon"]
    top = (
        pairs.filter(pl.col("top"))
        .select(*series, "Date", "Code")
        .with_columns(pl.col("Date").rank("dense").over(series).cast(pl.Int64).alias("t"))
    )
    size = top.group_by(*series, "t").agg(pl.len().alias("size"))
    kept = (
        top.join(top.with_columns(pl.col("t") + 1), on=[*series, "t", "Code"], how="inner")
        .group_by(*series, "t")
        .agg(pl.len().alias("kept"))
    )
    return (
        size.filter(pl.col("t") > 1)
        .join(kept, on=[*series, "t"], how="left")
        .group_by(series)
        .agg((1.0 - pl.col("kept").fill_null(0) / pl.col("size")).alias("turnover"))
    )


def daily_frame(preds: pl.DataFrame, targets: pl.DataFrame, horizons: Sequence[int]) -> pl.DataFrame:
    """One row per (model, horizon, Date) over the valid days: ``n`` valid pairs, ``ic``, ``rank_ic``,
    the top-minus-bottom decile ``spread``, and ``hits`` / ``hit_n`` of the cross-sectional hit rate.

    The daily series behind :func:`evaluate` and the plots; days with under :data:`MIN_PAIRS` valid
    pairs or a constant side are absent (their correlations are undefined)."""
    return _daily(valid_pairs(preds, targets, horizons)).select(DAILY_COLUMNS).collect()


def _aggregate(daily: pl.DataFrame, turnover: float) -> Metrics:
    """The :class:`Metrics` of one (model, horizon) from its daily rows."""
    n_days = daily.height
    ic = daily["ic"].to_numpy()
    ric = daily["rank_ic"].to_numpy()
    spread = daily["spread"].to_numpy()
    hit_n = int(daily["hit_n"].sum()) if n_days else 0
    ric_std = _std(ric)
    spread_std = _std(spread)
    ric_mean = _mean(ric)
    spread_mean = _mean(spread)
    return Metrics(
        ic=_mean(ic),
        rank_ic=ric_mean,
        rank_ic_std=ric_std,
        rank_ic_se=ric_std / math.sqrt(n_days) if n_days else float("nan"),
        icir=_ratio(ric_mean, ric_std),
        hit_rate=int(daily["hits"].sum()) / hit_n if hit_n else float("nan"),
        decile_spread=spread_mean,
        spread_sharpe=_ratio(spread_mean, spread_std) * math.sqrt(ANNUALISATION),
        turnover=turnover,
        n_days=n_days,
        n_obs=int(daily["n"].sum()) if n_days else 0,
    )


def _exact_mean(values: Sequence[float]) -> float:
    """The correctly rounded mean: the same bits whatever order the values come in (a join or a
    parallel group-by fixes none, and a float sum depends on the order it adds in)."""
    return math.fsum(values) / len(values) if len(values) else float("nan")


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if len(a) else float("nan")


def _std(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if math.isfinite(den) and den > 0 else float("nan")


def evaluate(
    preds: pl.DataFrame, targets: pl.DataFrame, horizons: Sequence[int], *, by_fold: bool = False
) -> dict:
    """``{model: {"{h}d": Metrics.to_dict()}}`` over all days of ``preds``, or with ``by_fold``
    ``{fold: {model: {...}}}`` with each fold's days only. Every model (of the fold) and every
    horizon is present; one with no valid day has NaN (``None``) metrics and ``n_days`` 0."""
    keys = ["fold"] if by_fold else []
    pairs = valid_pairs(preds, targets, horizons, keys).cache()
    daily = _daily(pairs, keys).collect()
    turnover = _turnover(pairs, keys).collect()
    turn = {
        tuple(r[:-1]): _exact_mean(r[-1])
        for r in turnover.select(*keys, "model", "horizon", "turnover").rows()
    }
    groups = {
        tuple(key): part
        for key, part in daily.partition_by([*keys, "model", "horizon"], as_dict=True).items()
    }
    empty = daily.clear()

    def block(models: list[str], prefix: tuple) -> dict:
        out: dict = {}
        for model in models:
            out[model] = {}
            for h in horizons:
                key = (*prefix, model, h)
                t = turn.get(key)
                m = _aggregate(groups.get(key, empty), float("nan") if t is None else float(t))
                out[model][f"{h}d"] = m.to_dict()
        return out

    if not by_fold:
        return block(sorted(preds["model"].unique().to_list()), ())
    result: dict = {}
    for fold in sorted(preds["fold"].unique().to_list()):
        models = preds.filter(pl.col("fold") == fold)["model"].unique().sort().to_list()
        result[fold] = block(models, (fold,))
    return result


def rank_ic_by_day(pred_frame: pl.DataFrame, value_col: str, target_col: str) -> pl.DataFrame:
    """(Date, rank_ic): the daily Spearman correlation of any score column with a target column of
    one frame (the caller joins them on (Date, Code)), e.g. an oracle signal scored on the same days
    as the models. Same valid pairs and days as :func:`daily_frame`."""
    v, t = pl.col(value_col).cast(pl.Float64), pl.col(target_col).cast(pl.Float64)
    return (
        pred_frame.lazy()
        .select("Date", v.alias("v"), t.alias("t"))
        .filter(pl.col("v").is_finite() & pl.col("t").is_finite())
        .group_by("Date")
        .agg(
            pl.len().alias("n"),
            (pl.col("v").max() > pl.col("v").min()).alias("_vv"),
            (pl.col("t").max() > pl.col("t").min()).alias("_vt"),
            pl.corr(pl.col("v").rank("average"), pl.col("t").rank("average")).alias("rank_ic"),
        )
        .filter((pl.col("n") >= MIN_PAIRS) & pl.col("_vv") & pl.col("_vt"))
        .select("Date", "rank_ic")
        .sort("Date")
        .collect()
    )


def mean_rank_ic(frame: pl.DataFrame, score: str, target: str) -> tuple[float, float, int]:
    """(mean daily RankIC, its standard error, n_days) of ``score`` against ``target`` in a frame
    holding Date, score and target columns; NaN figures when there are too few days."""
    ric = rank_ic_by_day(frame, score, target)["rank_ic"].to_numpy()
    n = len(ric)
    std = _std(ric)
    return _mean(ric), std / math.sqrt(n) if n else float("nan"), n
