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
