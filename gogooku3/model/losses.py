"""Training losses: the pinball (quantile) loss over horizons, weighted towards near horizons, and an
optional auxiliary that is really rank-based: the correlation between a differentiable soft rank of
the median forecast and the ranks of the targets across the day's codes (the origin's "RankIC loss"
was a Pearson correlation of raw values)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

#: Weight per horizon (trading days): near horizons count more, their targets are less noisy.
HORIZON_WEIGHTS = {1: 1.0, 5: 0.8, 10: 0.6, 20: 0.4}


def horizon_weights(horizons: Sequence[int]) -> Tensor:
    """(H,) float32 weights: :data:`HORIZON_WEIGHTS`, linear in the horizon between its entries and
    clipped to its end values (1.0 below 1 day, 0.4 beyond 20)."""
    xs = sorted(HORIZON_WEIGHTS)
    w = np.interp(np.asarray(horizons, dtype=float), xs, [HORIZON_WEIGHTS[x] for x in xs])
    return torch.tensor(np.clip(w, 0.4, 1.0), dtype=torch.float32)


def pinball_loss(pred: Tensor, target: Tensor, quantiles: Sequence[float], weights: Tensor) -> Tensor:
    """pred (B, H, Q), target (B, H) with NaN where unknown, weights (H,) -> scalar: the mean over
    known (code, horizon) entries, weighted by horizon, of the pinball loss averaged over the
    quantiles. 0 (still attached to the graph) when no target is known."""
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    known = torch.isfinite(target)
    y = torch.where(known, target, torch.zeros_like(target)).to(pred.dtype).unsqueeze(-1)
    err = y - pred
    per_entry = torch.maximum(q * err, (q - 1) * err).mean(-1)  # (B, H)
    w = weights.to(pred.device, pred.dtype).expand_as(per_entry) * known
    return (per_entry * w).sum() / w.sum().clamp(min=1e-12)


def soft_rank(x: Tensor, tau: float = 0.1) -> Tensor:
    """Differentiable 1-based ranks of a 1-D tensor: ``0.5 + sum_j sigmoid((x_i - x_j) / tau)``.

    The j = i term is sigmoid(0) = 0.5, each smaller x_j adds ~1, so for values further apart than
    tau this is the hard rank; smaller tau is sharper (and has smaller gradients far from ties).
    """
    return 0.5 + torch.sigmoid((x.unsqueeze(1) - x.unsqueeze(0)) / tau).sum(1)


def hard_rank(x: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties sharing their average rank (no gradient)."""
    diff = x.unsqueeze(1) - x.unsqueeze(0)
    return 1.0 + (diff > 0).sum(1).to(x.dtype) + 0.5 * ((diff == 0).sum(1) - 1).to(x.dtype)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12)


def soft_rank_correlation(pred: Tensor, target: Tensor, tau: float = 0.1) -> Tensor:
    """Differentiable Spearman-like correlation across codes: Pearson correlation of the soft ranks
    of ``pred`` (n,) with the hard ranks of ``target`` (n,). NaN targets are dropped; with fewer than
    3 pairs left the result is 0 (attached to the graph).

    ``pred`` is divided by its own (detached) std first, so ``tau`` is a fraction of the predictions'
    spread: the value does not depend on their scale (forecasts of daily returns are small numbers,
    and at a fixed tau their soft ranks would be nearly linear in them, i.e. a Pearson correlation).
    """
    known = torch.isfinite(target)
    if int(known.sum()) < 3:
        return pred.sum() * 0.0
    p, t = pred[known], target[known]
    scale = p.detach().std().clamp(min=1e-12)
    return _pearson(soft_rank(p / scale, tau), hard_rank(t).to(p.dtype))


def training_loss(
    pred: Tensor,
    target: Tensor,
    quantiles: Sequence[float],
    weights: Tensor,
    *,
    rank_weight: float = 0.0,
    median_index: int,
    tau: float = 0.1,
) -> Tensor:
    """``pinball + rank_weight * (1 - mean soft-rank correlation)``, the correlation being the mean over
    horizons with at least 3 known targets of the median forecast ``pred[:, h, median_index]`` against
    ``target[:, h]``. With ``rank_weight`` 0 (the default) the correlation is not computed at all: its
    (n, n) soft-rank matrices per horizon cost more than the pinball loss.
    """
    pinball = pinball_loss(pred, target, quantiles, weights)
    if rank_weight <= 0:
        return pinball
    known = torch.isfinite(target).sum(0).tolist()
    corrs = [
        soft_rank_correlation(pred[:, h, median_index], target[:, h], tau)
        for h, n in enumerate(known)
        if n >= 3
    ]
    corr = torch.stack(corrs).mean() if corrs else pred.sum() * 0.0
    return pinball + rank_weight * (1 - corr)
