"""Correlated peers: the graph the model links codes with, and the peer features read from it.

Each day t, every code is linked to the ``k`` other codes whose daily returns correlated most with
its own over the ``window`` trading days ending at t (t included: day t's return is known at its
close, when the forecast is made). Nothing after t is read. A code with fewer than
``min_periods`` returns in the window, or a constant one, has no peers and is no one's peer.
:func:`correlated_peers` is that selection, shared by the model's day graph
(:func:`gogooku3.training.graph.day_graph`, over a batch's codes) and by :func:`peer_columns`
(over every code with a row that day), so the features describe the graph the model sees.

The returns are the catalogue's ``ret_1d`` (the 1-day return winsorised at +-5 sigma of the day's
cross-section), computed by the catalogue's own Polars expressions on the prepared panel and
rounded to its stored Float32, so the graph here is the one the model builds from the lake's
``ret_1d`` column.

Peer base columns (``peer_*_in``), per (code, day), null when the code has no peer that day:

* ``peer_degree_in`` - in-degree: how many codes count this one among their ``k`` peers (every
  linked code has ``k`` out-links, so the in-degree is what tells a hub from a loner).
* ``peer_ret_1d_in`` - mean ``ret_1d`` of its peers that day.
* ``peer_corr_in`` - mean correlation with its peers over the window.

Cost: per output day, an (n x n) correlation product, O(n^2 * window), taken in slices of rows that
one worker thread per core shares (:func:`slice_workers`), and a top-k per row; only the days a build outputs are computed (a daily run computes one day), and
the columns are null on the history rows before them, which no feature reads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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


def correlated_peers(
    returns: np.ndarray, k: int, min_periods: int, *, workers: SliceWorkers | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(peers (n, k') int64 positions, correlations (n, k') float64, computed in float32) of the
    ``(W, n)`` window of returns (NaN: no return), k' = min(k, n - 1); a row's peers are ordered by
    correlation, ties by position, and a slot without a peer has correlation -inf.

    Correlations are pairwise-complete approximations: a missing return counts as its code's mean.
    A window shorter than ``min_periods`` links nobody. ``workers`` (from :func:`slice_workers`)
    share the rows' slices; the result is the same bits either way.
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
    # float32 halves the product's cost (the model's edge correlations are float32 anyway); the
    # columns are padded with unusable codes to whole blocks of the selection, and the rows are
    # taken a slice at a time, so each (rows x n) product stays cache-sized instead of one n x n
    width = -(-n // _BLOCK) * _BLOCK
    z_all = np.zeros((r.shape[0], width), np.float32)
    z_all[:, :n] = z / np.where(norm > 0, norm, 1.0)
    excluded = np.full(width, -np.inf, np.float32)
    excluded[:n][usable] = 0.0  # unusable codes are nobody's peer
    peers = np.empty((n, k), np.int64)
    weight = np.empty((n, k), np.float32)
    select = _top_k_kernel()

    def run(slices: range) -> None:
        product = np.empty((min(n, _ROWS), width), np.float32)
        for lo in slices:
            hi = min(n, lo + _ROWS)
            corr = np.matmul(z_all[:, lo:hi].T, z_all, out=product[: hi - lo])
            select(corr, excluded, usable[lo:hi], lo, peers[lo:hi], weight[lo:hi])

    if workers is None:
        run(range(0, n, _ROWS))
    else:  # every worker's share of the slices, interleaved (the usable rows are not even)
        step = workers.threads * _ROWS
        list(workers.pool.map(run, [range(w * _ROWS, n, step) for w in range(workers.threads)]))
    # a slot without a peer (-inf) holds position n - 1, as callers index with every slot
    peers[peers < 0] = n - 1
    return peers, weight.astype(np.float64)


@dataclass(frozen=True)
class SliceWorkers:
    """Threads that share :func:`correlated_peers`' row slices (made by :func:`slice_workers`)."""

    pool: ThreadPoolExecutor
    threads: int


@contextlib.contextmanager
def slice_workers(threads: int | None = None) -> Iterator[SliceWorkers | None]:
    """Worker threads for :func:`correlated_peers`' row slices, one per core (``threads``), each
    running its slices' products and selections with BLAS on one thread (the limit holds for
    the process while the context is open); None on one core.

    On two cores this beat BLAS's own two threads for the product followed by the (single-threaded)
    selection: 18.2 against 23.8 ms a day over the bench panel's last 80 days, the same bits. (The
    selection split among threads of its own beside BLAS's two threads had been slower still:
    34.5 s against 26.1 s over a backfill.)
    """
    threads = threads or os.cpu_count() or 1
    if threads < 2:
        yield None
        return
    from threadpoolctl import threadpool_limits

    with (
        ThreadPoolExecutor(threads, thread_name_prefix="peers") as pool,
        threadpool_limits(1, user_api="blas"),
    ):
        yield SliceWorkers(pool, threads)


#: Columns per block of the selection's first pass, and rows of the correlation matrix per slice.
_BLOCK = 64
_ROWS = 256


#: Lanes of the block-maximum pass: independent running maxima the compiler keeps in one vector
#: register (a single running maximum is a dependency chain it cannot vectorise).
_LANES = 16


def _top_k_kernel():  # noqa: ANN202 - a numba dispatcher
    """The compiled selection (:mod:`gogooku3.features.kernels.top_k`, imported on first use:
    importing this module stays cheap).

    ``select(corr, excluded, usable, lo, peers, weight)`` writes, for each row ``i`` of the
    ``(rows, width)`` slice ``corr`` (code ``lo + i``'s correlations, ``width`` a multiple of
    :data:`_BLOCK`), the positions and values of its ``k = peers.shape[1]`` largest values of
    ``corr[i] + excluded`` (``excluded`` is 0 or -inf per column), the code's own column left
    out, ordered by value and then by position; slots beyond the finite values get -inf and
    position -1, and a row with ``usable[i]`` false gets none at all.

    Two passes per row, nothing written but the k slots. First the maximum of each block of
    :data:`_BLOCK` columns (vectorised over :data:`_LANES` lanes). The k-th largest block maximum
    is a floor for the row's k-th largest value (k blocks hold a value at least that large), so
    the second pass scans only the blocks whose maximum reaches the floor, ~k of them, value by
    value into a sorted list of k. Blocks are scanned in column order and a value must beat the
    k-th to enter, so of equal values the lower position wins. At 3,757 codes it takes ~10 ms per
    day, about as long as the product; the numpy selection it replaced (an argpartition of the
    block maxima, then of the candidates, through temporary arrays) took ~34 ms.
    """
    from gogooku3.features.kernels.top_k import select

    return select


def peer_stats(
    returns: np.ndarray,
    today: np.ndarray,
    k: int = PEER_K,
    min_periods: int = PEER_MIN_PERIODS,
    *,
    workers: SliceWorkers | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(in-degree, peers' mean return today, mean correlation with the peers), each (n,) float64 and
    NaN for a code without peers, from the ``(W, n)`` window of returns ending today and today's
    returns ``today`` (n,); ``workers`` as for :func:`correlated_peers`."""
    n = returns.shape[1]
    peers, corr = correlated_peers(returns, k, min_periods, workers=workers)
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
    """The catalogue's ``ret_1d`` of every panel row as the lake stores it (rounded to its stored
    Float32, returned as Float64; null where undefined), computed by its own expressions (its raw
    1-day return over the panel, sorted by (code_id, Date); then its per-day winsorisation over the
    rows in day order, as the engine runs it) and returned in the panel's row order.

    The rounding is what makes the graph the model builds from the lake's column the same graph:
    a correlation from unrounded returns could swap two near-tied peers."""
    from gogooku3.features.catalogue import feature
    from gogooku3.features.engine_cpu import expr
    from gogooku3.features.reorder import date_order

    raw, winsorised = feature("_ret_1d_raw"), feature("ret_1d")
    returns = panel.lazy().select("obs_count", "code_id", *raw.inputs).select(expr(raw)).collect()
    order = date_order(panel, None)
    by_day = order.gather(pl.concat([panel.select("Date"), returns], how="horizontal"))
    rounded = (
        by_day.lazy()
        .select(expr(winsorised))
        .select(winsorised.stored.cast(pl.Float64))
        .collect()
        .to_series()
        .fill_null(np.nan)
        .to_numpy()
    )
    values = np.empty(panel.height)
    values[order.rows] = rounded
    return pl.Series(winsorised.name, values, nan_to_null=True)


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
    with slice_workers() as workers:
        for t in range(first, n_days):
            codes = np.flatnonzero(row[t] >= 0)
            window = returns[max(0, t + 1 - PEER_WINDOW) : t + 1, codes]
            stats = peer_stats(window, returns[t, codes], workers=workers)
            for column, values in zip(out, stats, strict=True):
                column[row[t, codes]] = values
    return pl.DataFrame(
        {name: pl.Series(name, values).fill_nan(None) for name, values in zip(PEER_COLUMNS, out, strict=True)}
    )
