"""Array RankIC for the training loops (early stopping, model selection): the mean over days of the
cross-sectional Spearman correlation. The reported metrics live in :mod:`gogooku3.training.metrics`."""

from __future__ import annotations

import numpy as np

from gogooku3.training.metrics import MIN_PAIRS
from gogooku3.training.metrics import pearson as corr


def daily_rank_ic(score: np.ndarray, target: np.ndarray, sizes: list[int]) -> float:
    """Mean over days of the Spearman correlation, rows grouped in consecutive days of ``sizes``."""
    out, start = [], 0
    for n in sizes:
        s, y = score[start : start + n], target[start : start + n]
        start += n
        ok = np.isfinite(s) & np.isfinite(y)
        if ok.sum() < MIN_PAIRS:
            continue
        r = corr(rank(s[ok]), rank(y[ok]))
        if np.isfinite(r):
            out.append(r)
    return float(np.mean(out)) if out else float("nan")


def rank(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=0)


def columns_rank_corr(x: np.ndarray, y: np.ndarray, min_pairs: int = MIN_PAIRS) -> np.ndarray:
    """Per column of ``x`` (n x F, NaN = missing), the Spearman correlation with ``y`` (n, finite)
    over the rows where that column is present, both sides ranked on those rows only (average
    ties); NaN for a column with under ``min_pairs`` present rows or a constant side.

    The same figure as ranking each column's present rows on their own, but in one pass: ``y``'s
    rank among a column's rows is counted from ``y``'s sorted tie groups, for every column at once."""
    from scipy.stats import rankdata

    present = np.isfinite(x)
    rx = rankdata(x, axis=0, nan_policy="omit")
    order = np.argsort(y, kind="stable")
    ys = y[order]
    starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])  # first row of each tie group of y
    group = np.cumsum(np.r_[True, ys[1:] != ys[:-1]]) - 1  # sorted row -> its tie group
    in_group = np.add.reduceat(present[order].astype(np.float64), starts, axis=0)  # groups x F
    below = np.cumsum(in_group, axis=0) - in_group
    ry = np.empty_like(rx)
    ry[order] = (below + (in_group + 1) / 2)[group]
    n = present.sum(axis=0)
    rx, ry = np.where(present, rx, 0.0), np.where(present, ry, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = rx.sum(axis=0) / n, ry.sum(axis=0) / n
        dx, dy = np.where(present, rx - mx, 0.0), np.where(present, ry - my, 0.0)
        den = np.sqrt((dx * dx).sum(axis=0) * (dy * dy).sum(axis=0))
        r = (dx * dy).sum(axis=0) / den
    return np.where((n >= min_pairs) & (den > 0), r, np.nan)
