"""The day graph: each code's most correlated peers by trailing return correlation, past data only.

For day t the graph over a batch's codes links each code to its ``k`` peers with the highest
correlation of daily returns over the ``window`` trading days ending at t (t included: the return
of day t is known at its close, when the forecast is made). Nothing after t is read, and the
returns are a feature column (``ret_1d``), never a forward-return target. Edge attributes are
(correlation, same Sector33 flag). A code with fewer than ``min_periods`` returns in the window gets
no peers (the model still adds a self loop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EDGE_DIM = 2


@dataclass(frozen=True)
class GraphConfig:
    k: int = 10
    window: int = 60
    min_periods: int = 20
    return_feature: str = "ret_1d"

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"graph k must be >= 0, got {self.k}")
        if not 2 <= self.min_periods <= self.window:
            raise ValueError(
                f"graph min_periods must be in 2..window ({self.window}), got {self.min_periods}"
            )
        if self.return_feature.startswith("target_"):
            raise ValueError(f"graph return feature {self.return_feature!r} is a target: it would leak")

    def to_dict(self) -> dict:
        return asdict(self)


def day_graph(
    returns: np.ndarray, t: int, codes: np.ndarray, sector: np.ndarray, cfg: GraphConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(edge_index (2, E) int64 as (source=peer, target=code) positions in ``codes``, edge_attr (E, 2)
    float32) for day index ``t`` of the (T, N) ``returns`` (NaN: no return)."""
    n = len(codes)
    lo = max(0, t + 1 - cfg.window)
    r = returns[lo : t + 1, codes].astype(np.float64)  # (W, n): only days <= t
    k = min(cfg.k, n - 1)
    if k <= 0 or r.shape[0] < cfg.min_periods:
        return np.zeros((2, 0), np.int64), np.zeros((0, EDGE_DIM), np.float32)
    ok = np.isfinite(r)
    count = ok.sum(axis=0)
    mean = np.where(count > 0, np.nansum(r, axis=0) / np.maximum(count, 1), 0.0)
    z = np.where(ok, r - mean, 0.0)
    norm = np.sqrt((z * z).sum(axis=0))
    usable = (count >= cfg.min_periods) & (norm > 0)
    z = z / np.where(norm > 0, norm, 1.0)
    corr = z.T @ z  # pairwise-complete approximation: missing returns count as the code's mean
    corr[~usable, :] = -np.inf
    corr[:, ~usable] = -np.inf
    np.fill_diagonal(corr, -np.inf)
    # The k largest per row: a partition (linear in n; a full sort of every row is n log n, ~0.25 s
    # for a 2,048-code chunk), then those k ordered by correlation, ties by position. (Which of
    # several exactly equal values at the k-th place is kept is the partition's choice, the same on
    # every run; only the -inf of unusable codes tie like that, and those edges are dropped.)
    peers = np.argpartition(corr, n - k, axis=1)[:, n - k :]
    peers = np.take_along_axis(peers, np.lexsort((peers, -np.take_along_axis(corr, peers, 1))), 1)
    target = np.repeat(np.arange(n), k)
    source = peers.ravel()
    weight = corr[target, source]
    keep = np.isfinite(weight)
    target, source, weight = target[keep], source[keep], weight[keep]
    same = (sector[codes][source] == sector[codes][target]) & (sector[codes][source] >= 0)
    edge_index = np.stack([source, target]).astype(np.int64)
    edge_attr = np.stack([weight, same.astype(np.float64)], axis=1).astype(np.float32)
    return edge_index, edge_attr
