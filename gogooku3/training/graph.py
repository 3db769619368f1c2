"""The day graph: each code's most correlated peers by trailing return correlation, past data only.

For day t the graph over a batch's codes links each code to its ``k`` peers with the highest
correlation of daily returns over the ``window`` trading days ending at t (t included: the return
of day t is known at its close, when the forecast is made). Nothing after t is read, and the
returns are a feature column (``ret_1d``), never a forward-return target. Edge attributes are
(correlation, same Sector33 flag). A code with fewer than ``min_periods`` returns in the window gets
no peers (the model still adds a self loop). The selection is
:func:`gogooku3.features.peers.correlated_peers`, which the peer features read too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gogooku3.features.peers import PEER_K, PEER_MIN_PERIODS, PEER_WINDOW, correlated_peers

EDGE_DIM = 2


@dataclass(frozen=True)
class GraphConfig:
    k: int = PEER_K
    window: int = PEER_WINDOW
    min_periods: int = PEER_MIN_PERIODS
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
    lo = max(0, t + 1 - cfg.window)
    peers, corr = correlated_peers(returns[lo : t + 1, codes], cfg.k, cfg.min_periods)  # only days <= t
    target = np.repeat(np.arange(len(codes)), peers.shape[1])
    source, weight = peers.ravel(), corr.ravel()
    keep = np.isfinite(weight)
    target, source, weight = target[keep], source[keep], weight[keep]
    same = (sector[codes][source] == sector[codes][target]) & (sector[codes][source] >= 0)
    edge_index = np.stack([source, target]).astype(np.int64)
    edge_attr = np.stack([weight, same.astype(np.float64)], axis=1).astype(np.float32)
    return edge_index, edge_attr
