"""Correlated peers: the graph the model links codes with, and the peer features read from it.

Each day t, every code is linked to the ``k`` other codes whose daily returns correlated most with
its own over the ``window`` trading days ending at t (t included: day t's return is known at its
close, when the forecast is made). Nothing after t is read. A code with fewer than
``min_periods`` returns in the window, or a constant one, has no peers and is no one's peer.
:func:`correlated_peers` is that selection, shared by the model's day graph
(:func:`gogooku3.training.graph.day_graph`, over a batch's codes) and by :func:`peer_columns`
(over every code with a row that day), so the features describe the graph the model sees.

The returns are the catalogue's ``ret_1d`` (the 1-day return winsorised at +-5 sigma of the day's
cross-section), computed by the catalogue's own Polars expressions on the prepared panel, so the
graph here is the one the model builds from the lake's ``ret_1d`` column.

Peer base columns (``peer_*_in``), per (code, day), null when the code has no peer that day:

* ``peer_degree_in`` - in-degree: how many codes count this one among their ``k`` peers (every
  linked code has ``k`` out-links, so the in-degree is what tells a hub from a loner).
* ``peer_ret_1d_in`` - mean ``ret_1d`` of its peers that day.
* ``peer_corr_in`` - mean correlation with its peers over the window.

Cost: per output day, an (n x n) correlation product, O(n^2 * window), taken in slices of rows, and
a top-k per row; only the days a build outputs are computed (a daily run computes one day), and
the columns are null on the history rows before them, which no feature reads.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

#: Peers per code, the trailing window (trading days) and the fewest returns in it for a code to
#: be linked. The model's :class:`~gogooku3.training.graph.GraphConfig` defaults to the same.
PEER_K = 10
PEER_WINDOW = 60
PEER_MIN_PERIODS = 20

PEER_COLUMNS: dict[str, str] = {
    "peer_degree_in": "how many codes count this one among their 10 most correlated peers (60-day returns)",
    "peer_ret_1d_in": "mean ret_1d of the code's 10 most correlated peers, the same day",
    "peer_corr_in": "mean 60-day return correlation of the code with those peers",
}
#: A code is linked once it has ``PEER_MIN_PERIODS`` returns, i.e. one more row.
PEER_HISTORY = PEER_MIN_PERIODS + 1


def correlated_peers(returns: np.ndarray, k: int, min_periods: int) -> tuple[np.ndarray, np.ndarray]:
    """(peers (n, k') int64 positions, correlations (n, k') float64, computed in float32) of the
    ``(W, n)`` window of returns (NaN: no return), k' = min(k, n - 1); a row's peers are ordered by
    correlation, ties by position, and a slot without a peer has correlation -inf.

    Correlations are pairwise-complete approximations: a missing return counts as its code's mean.
    A window shorter than ``min_periods`` links nobody.
    """
    n = returns.shape[1]
    k = min(k, n - 1)
    if k <= 0 or returns.shape[0] < min_periods:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float64)
    r = returns.astype(np.float64)
    ok = np.isfinite(r)
    count = ok.sum(axis=0)
    mean = np.where(count > 0, np.nansum(r, axis=0) / np.maximum(count, 1), 0.0)
    z = np.where(ok, r - mean, 0.0)
    norm = np.sqrt((z * z).sum(axis=0))
    usable = (count >= min_periods) & (norm > 0)
    weight = np.empty((n, k), np.float32)
    # float32 halves the product's cost (the model's edge correlations are float32 anyway); the
    # columns are padded with unusable codes to whole blocks of _top_k, and the rows are taken a
    # slice at a time, so the (rows x n) products stay cache-sized instead of one n x n matrix
    width = -(-n // _BLOCK) * _BLOCK
    z_all = np.zeros((r.shape[0], width), np.float32)
    z_all[:, :n] = z / np.where(norm > 0, norm, 1.0)
    excluded = np.full(width, -np.inf, np.float32)
    excluded[:n][usable] = 0.0
    peers = np.empty((n, k), np.int64)
    for lo in range(0, n, _ROWS):
        hi = min(n, lo + _ROWS)
        corr = z_all[:, lo:hi].T @ z_all
        corr += excluded  # unusable codes are nobody's peer
        corr[~usable[lo:hi]] = -np.inf  # and have none
        corr[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # nor is a code its own
        peers[lo:hi] = _top_k(corr, k)
        weight[lo:hi] = np.take_along_axis(corr, peers[lo:hi], 1)
    # ordered by correlation, ties by position (which of several exactly equal values at the k-th
    # place is kept is the selection's choice, the same on every run; only the -inf of unusable
    # codes tie like that, and those slots hold no peer: their padding positions become n - 1)
    order = np.lexsort((peers, -weight))
    peers = np.minimum(np.take_along_axis(peers, order, 1), n - 1)
    return peers, np.take_along_axis(weight, order, 1).astype(np.float64)


#: Columns per block of :func:`_top_k`'s first pass, and rows of the correlation matrix per slice.
_BLOCK = 64
_ROWS = 256


def _block_max(blocks: np.ndarray) -> np.ndarray:
    """``blocks.max(axis=2)`` by halving the last axis (a power of two): whole-array maxima instead
    of one short reduction per block, ~1.4x faster at 4,000 codes."""
    while blocks.shape[2] > 1:
        half = blocks.shape[2] // 2
        blocks = np.maximum(blocks[:, :, :half], blocks[:, :, half:])
    return blocks[:, :, 0]


def _top_k(corr: np.ndarray, k: int) -> np.ndarray:
    """Column positions of the ``k`` largest values of each row of ``corr`` (rows, a multiple of
    :data:`_BLOCK` columns), unordered.

    A row's k largest values lie in the k blocks of :data:`_BLOCK` columns with the largest block
    maxima (a value outside them is beaten by those k maxima), so the selection partitions the
    block maxima and then only those k blocks: a fraction of the work of partitioning whole rows
    at 4,000 codes, which dominated the peer table's cost.
    """
    rows, n = corr.shape
    n_blocks = n // _BLOCK
    if n_blocks <= 2 * k:  # small universes: one partition of the rows
        return np.argpartition(corr, n - k, axis=1)[:, n - k :]
    blocks = corr.reshape(rows, n_blocks, _BLOCK)
    best = np.argpartition(_block_max(blocks), n_blocks - k, axis=1)[:, n_blocks - k :]  # (rows, k)
    candidates = np.take_along_axis(blocks, best[:, :, None], axis=1).reshape(rows, -1)
    columns = (best[:, :, None] * _BLOCK + np.arange(_BLOCK)).reshape(rows, -1)
    width = candidates.shape[1]
    pick = np.argpartition(candidates, width - k, axis=1)[:, width - k :]
    return np.take_along_axis(columns, pick, axis=1)


def peer_stats(
    returns: np.ndarray, today: np.ndarray, k: int = PEER_K, min_periods: int = PEER_MIN_PERIODS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in-degree, peers' mean return today, mean correlation with the peers), each (n,) float64 and
    NaN for a code without peers, from the ``(W, n)`` window of returns ending today and today's
    returns ``today`` (n,)."""
    n = returns.shape[1]
    peers, corr = correlated_peers(returns, k, min_periods)
    linked = np.isfinite(corr)
    n_peers = linked.sum(axis=1)
    has = n_peers > 0
    degree = np.bincount(peers[linked], minlength=n).astype(np.float64)
    peer_ret = np.where(linked, today[peers], 0.0).sum(axis=1)
    mean_corr = np.where(linked, corr, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (
            np.where(has, degree, np.nan),
            np.where(has, peer_ret / n_peers, np.nan),
            np.where(has, mean_corr / n_peers, np.nan),
        )


def daily_returns(panel: pl.DataFrame) -> pl.Series:
    """The catalogue's ``ret_1d`` of every panel row (Float64, null where undefined), computed by
    its own expressions (its raw 1-day return, then its per-day winsorisation) on the panel, which
    is sorted by (code_id, Date)."""
    from gogooku3.features.catalogue import feature
    from gogooku3.features.engine_cpu import expr

    raw, winsorised = feature("_ret_1d_raw"), feature("ret_1d")
    return (
        panel.lazy()
        .select("Date", "obs_count", *raw.inputs)
        .with_columns(expr(raw))
        .select(expr(winsorised))
        .collect()
        .to_series()
    )


def peer_columns(panel: pl.DataFrame, since: dt.date | None = None) -> pl.DataFrame:
    """The :data:`PEER_COLUMNS` of every panel row (same row order), computed for the days >= ``since``
    and null before. ``panel`` is sorted by (code_id, Date) with ``Date``, ``code_id``,
    ``obs_count`` and ``px_close``; day t reads only the panel's rows dated <= t."""
    days = panel.get_column("Date").unique().sort()
    day = days.search_sorted(panel.get_column("Date")).to_numpy()
    code = panel.get_column("code_id").to_numpy().astype(np.int64) - 1
    n_days, n_codes = len(days), int(code.max()) + 1 if panel.height else 0
    returns = np.full((n_days, n_codes), np.nan)
    returns[day, code] = daily_returns(panel).fill_null(np.nan).to_numpy()
    row = np.full((n_days, n_codes), -1, np.int64)
    row[day, code] = np.arange(panel.height)
    out = np.full((len(PEER_COLUMNS), panel.height), np.nan)
    first = 0 if since is None else int(days.search_sorted(since))
    for t in range(first, n_days):
        codes = np.flatnonzero(row[t] >= 0)
        window = returns[max(0, t + 1 - PEER_WINDOW) : t + 1, codes]
        for column, values in zip(out, peer_stats(window, returns[t, codes]), strict=True):
            column[row[t, codes]] = values
    return pl.DataFrame(
        {name: pl.Series(name, values).fill_nan(None) for name, values in zip(PEER_COLUMNS, out, strict=True)}
    )
