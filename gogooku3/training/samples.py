"""Samples of a fold: which (day, code) pairs exist, the targets models learn, and day batches.

A sample on day t is a code with a full L-day input window at t (:meth:`Panel.eligible`). Models
learn the day's cross-sectional *excess* forward return: ``target_ret_{h}d`` minus that day's mean
over its samples, divided by the horizon's training-fold standard deviation. The day mean is
common to every code of a day, so it changes no ranking, but a model that has to predict it spends
its capacity on the market's move, which no cross-section of one day can tell; the per-horizon
scale lets the horizon weights mean what they say. Predictions are scaled back to excess-return
units. Both statistics read only a day's own targets, or the training days'.

A batch is one trading day's cross-section, split into chunks of at most ``batch_codes`` codes
(the graph is built within a chunk); a batch never spans two days, hence never a fold boundary.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gogooku3.training.dataset import SEQ_LEN, Panel
from gogooku3.training.folds import Block
from gogooku3.training.graph import GraphConfig, day_graph
from gogooku3.training.normalise import Normaliser

BATCH_CODES = 2048

Rows = list[tuple[int, np.ndarray]]


@dataclass
class DayBatch:
    t: int
    codes: np.ndarray  # (n,) code indices into the panel
    x: np.ndarray  # (n, L, F) normalised, missing -> 0
    missing: np.ndarray  # (n, L, F) 1.0 where missing
    edge_index: np.ndarray  # (2, E)
    edge_attr: np.ndarray  # (E, 2)
    target: np.ndarray  # (n, H) scaled excess targets, NaN unknown


class Samples:
    """The panel seen through one fold's normaliser and target scale."""

    def __init__(
        self,
        panel: Panel,
        normaliser: Normaliser,
        graph: GraphConfig,
        seq_len: int = SEQ_LEN,
        batch_codes: int = BATCH_CODES,
    ) -> None:
        self.panel, self.normaliser, self.graph = panel, normaliser, graph
        self.seq_len, self.batch_codes = seq_len, batch_codes
        self.excess = excess_targets(panel, seq_len)
        self.returns = panel.x[:, :, panel.feature_index(graph.return_feature)]
        self.target_scale = np.ones(len(panel.horizons), dtype=np.float32)
        # (day, chunk codes) -> its graph: the same every epoch (returns are data and a day's chunks
        # are fixed per seed), so each is built once per fold.
        self._graphs: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}

    def fit_target_scale(self, train: Block) -> None:
        """Per-horizon standard deviation of the excess targets over the training days only."""
        sd = np.nanstd(self.excess[train.start : train.stop].reshape(-1, len(self.panel.horizons)), axis=0)
        self.target_scale = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0).astype(np.float32)

    def rows(self, block: Block) -> Rows:
        return sample_rows(self.panel, block, self.seq_len)

    def chunks(self, t: int, codes: np.ndarray, seed: int) -> list[np.ndarray]:
        """Split a day's codes into near-equal chunks of at most ``batch_codes`` (a fixed permutation
        per (seed, day), so a chunk is a random slice of the market, not a range of codes)."""
        n_chunks = -(-len(codes) // self.batch_codes)
        if n_chunks <= 1:
            return [codes]
        order = np.random.default_rng([seed, t]).permutation(len(codes))
        return [np.sort(codes[part]) for part in np.array_split(order, n_chunks)]

    def batch(self, t: int, codes: np.ndarray) -> DayBatch:
        window = self.panel.window(t, self.seq_len)[:, codes]  # (L, n, F) gather of one day's codes
        z, missing = self.normaliser.transform(window)
        edge_index, edge_attr = self.day_graph(t, codes)
        return DayBatch(
            t=t,
            codes=codes,
            x=np.ascontiguousarray(z.transpose(1, 0, 2)),
            missing=np.ascontiguousarray(missing.transpose(1, 0, 2)),
            edge_index=edge_index,
            edge_attr=edge_attr,
            target=self.excess[t, codes] / self.target_scale,
        )

    def day_graph(self, t: int, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = (t, codes.tobytes())
        if key not in self._graphs:
            self._graphs[key] = day_graph(self.returns, t, codes, self.panel.sector, self.graph)
        return self._graphs[key]

    def batches(self, rows: Rows, seed: int) -> Iterator[DayBatch]:
        for t, codes in rows:
            for chunk in self.chunks(t, codes, seed):
                yield self.batch(t, chunk)

    def last_day(self, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """(raw features (n, F) with NaN, scaled excess targets (n, H)) of the rows' own day: the
        tabular view the baselines learn from."""
        x = np.concatenate([self.panel.x[t, c] for t, c in rows])
        y = np.concatenate([self.excess[t, c] for t, c in rows]) / self.target_scale
        return x, y


def sample_rows(panel: Panel, block: Block, seq_len: int = SEQ_LEN) -> Rows:
    """(t, sample codes) for every day of ``block`` that has a sample."""
    out = []
    for t in block.range():
        codes = panel.eligible(t, seq_len)
        if len(codes):
            out.append((t, codes))
    return out


def excess_targets(panel: Panel, seq_len: int = SEQ_LEN) -> np.ndarray:
    """(T, N, H) ``targets`` minus each day's mean over its samples (NaN off-sample or unknown)."""
    sample = panel.run >= seq_len
    y = np.where(sample[:, :, None], panel.targets, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a day without any known target: NaN, as meant
        mean = np.nanmean(y, axis=1, keepdims=True)
    return (y - mean).astype(np.float32)
