"""Peer features: read from the correlation graph the model builds, past returns only."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from gogooku3.features import build_features
from gogooku3.features.peers import (
    PEER_MIN_PERIODS,
    _top_k_kernel,
    correlated_peers,
    daily_returns,
    peer_stats,
    slice_workers,
)
from gogooku3.features.prepare import prepare_panel
from gogooku3.features.testing import market_inputs
from gogooku3.training.graph import GraphConfig, day_graph

START, END = dt.date(2022, 1, 4), dt.date(2022, 9, 30)
F32_EPS = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def built() -> pl.DataFrame:
    inputs = market_inputs(60, START, END, seed=5)
    return build_features(inputs.daily_quotes, **inputs.kwargs(), with_targets=False)


def _dense(built: pl.DataFrame, column: str) -> np.ndarray:
    """(days, codes) matrix of a built column, NaN where there is no row or no value."""
    days, codes = built["Date"].unique().sort(), built["Code"].unique().sort()
    out = np.full((len(days), len(codes)), np.nan)
    out[days.search_sorted(built["Date"]), codes.search_sorted(built["Code"])] = (
        built[column].fill_null(np.nan).to_numpy()
    )
    return out


def test_peer_features_are_read_from_the_graph_the_model_builds_from_the_lakes_ret_1d(built) -> None:
    """For every day, the model's day graph over that day's codes (built from the ret_1d column, as
    training reads it from the lake) gives each code's in-degree, its peers' mean ret_1d and its
    mean edge correlation: exactly the peer features."""
    returns = _dense(built, "ret_1d")
    present = ~np.isnan(_dense(built.with_columns(pl.lit(1.0).alias("row")), "row"))
    degree, peer_ret, corr = (_dense(built, c) for c in ("peer_degree", "peer_ret_1d", "peer_corr_mean"))
    rel = _dense(built, "peer_rel_ret_1d")
    sector = np.zeros(returns.shape[1], np.int64)
    linked_days = 0
    for t in range(returns.shape[0]):
        codes = np.flatnonzero(present[t])  # the day's codes
        edge_index, edge_attr = day_graph(returns, t, codes, sector, GraphConfig())
        source, target = edge_index
        n = len(codes)
        links = np.bincount(target, minlength=n)
        has = links > 0
        want_degree = np.where(has, np.bincount(source, minlength=n), np.nan)
        want_ret = np.bincount(target, returns[t, codes][source], minlength=n) / np.where(has, links, np.nan)
        want_corr = np.bincount(target, edge_attr[:, 0].astype(np.float64), minlength=n) / np.where(
            has, links, np.nan
        )
        np.testing.assert_array_equal(degree[t, codes], want_degree, err_msg=f"day {t}")
        # the features are stored as Float32: one rounding of the same mean (half an ulp)
        np.testing.assert_allclose(peer_ret[t, codes], want_ret, rtol=F32_EPS, atol=0, err_msg=f"day {t}")
        # edge_attr is float32
        np.testing.assert_allclose(corr[t, codes], want_corr, rtol=0, atol=1e-6, err_msg=f"day {t}")
        # ret_1d - the peers' mean, taken before ret_1d is rounded, then rounded itself: half an
        # ulp of each
        want_rel = np.where(has, returns[t, codes] - want_ret, np.nan)
        bound = F32_EPS * (np.abs(returns[t, codes]) + np.abs(want_rel))
        np.testing.assert_array_equal(np.isnan(rel[t, codes]), np.isnan(want_rel), err_msg=f"day {t}")
        off = np.abs(rel[t, codes] - want_rel) > bound
        assert not off.any(), f"day {t}: peer_rel_ret_1d off at {np.flatnonzero(off)}"
        linked_days += bool(has.any())
    # the first days have too few returns to link anyone; every later day links codes
    assert linked_days >= returns.shape[0] - PEER_MIN_PERIODS - 1


def test_the_peers_correlate_the_ret_1d_the_lake_stores(built) -> None:
    """The returns the peer table correlates are the stored (Float32) ret_1d, bit for bit: the
    graph the model builds from the lake's column is then the same graph, near-ties included."""
    inputs = market_inputs(60, START, END, seed=5)
    panel = prepare_panel(inputs.daily_quotes, **inputs.kwargs())
    returns = panel.select("Code", "Date").with_columns(daily_returns(panel).alias("returns"))
    stored = built.select("Code", "Date", pl.col("ret_1d").cast(pl.Float64)).join(
        returns, on=["Code", "Date"]
    )
    assert stored.height == built.height and built.schema["ret_1d"] == pl.Float32
    assert stored.get_column("returns").equals(stored.get_column("ret_1d"), check_names=False)


def test_peers_are_the_most_correlated_and_hubs_have_the_in_degree() -> None:
    """Four codes follow one factor closely and two others noisily: each close follower's peers are
    the other close followers, and the noisy ones pick close followers too, so all in-degree goes
    to the close followers; a code with too few returns is nobody's peer and has none."""
    rng = np.random.default_rng(0)
    window = 60
    factor = rng.standard_normal(window)
    close = factor[:, None] + 0.05 * rng.standard_normal((window, 4))
    loose = factor[:, None] + 2.0 * rng.standard_normal((window, 2))
    young = np.where(np.arange(window)[:, None] >= window - (PEER_MIN_PERIODS - 1), factor[:, None], np.nan)
    returns = np.hstack([close, loose, young])
    peers, corr = correlated_peers(returns, k=3, min_periods=PEER_MIN_PERIODS)
    assert [sorted(p) for p in peers[:4]] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    assert np.all(np.diff(corr[:4], axis=1) <= 0)  # ordered by correlation
    assert np.all(np.isneginf(corr[6]))  # 19 returns: no peers
    assert 6 not in peers[np.isfinite(corr)]  # and nobody's peer
    degree, peer_ret, mean_corr = peer_stats(returns, returns[-1], k=3)
    assert degree[:4].sum() == 4 * 3 + 2 * 3 and degree[:4].min() >= 3  # every link goes to them
    np.testing.assert_array_equal(degree[4:6], [0, 0])
    assert np.isnan(degree[6]) and np.isnan(peer_ret[6]) and np.isnan(mean_corr[6])
    np.testing.assert_allclose(peer_ret[0], returns[-1, [1, 2, 3]].mean())
    assert mean_corr[0] > 0.99 > mean_corr[4]


def test_a_window_shorter_than_min_periods_links_nobody() -> None:
    returns = np.random.default_rng(1).standard_normal((PEER_MIN_PERIODS - 1, 12))
    peers, corr = correlated_peers(returns, k=3, min_periods=PEER_MIN_PERIODS)
    assert peers.shape == corr.shape == (12, 0)
    degree, peer_ret, mean_corr = peer_stats(returns, returns[-1], k=3)
    assert np.isnan(degree).all() and np.isnan(peer_ret).all() and np.isnan(mean_corr).all()


@pytest.mark.parametrize("n", [50, 1500, 3001])
def test_the_selection_finds_each_rows_k_largest_ordered_with_ties_by_position(n: int) -> None:
    """The compiled selection gives each row's k largest values of ``corr + excluded``, its own
    column left out, in the order of a full stable sort (value, then position), ties included;
    excluded columns and an unusable row give -inf slots at position -1."""
    rng = np.random.default_rng(n)
    width = -(-n // 64) * 64  # whole blocks of columns, padded like correlated_peers
    rows, lo, k = min(n, 300), n // 3, 10
    rows = min(rows, n - lo)
    # quantised values: many exact ties, also at the k-th place
    corr = np.round(rng.uniform(-1, 1, (rows, width)) * 50).astype(np.float32) / 50
    excluded = np.where(rng.uniform(size=width) < 0.3, -np.inf, 0.0).astype(np.float32)
    excluded[n:] = -np.inf
    excluded[[lo + 9, lo + 10]] = 0.0  # rows 9 and 10 are usable codes: open columns
    corr[8, :] = -np.inf
    corr[8, np.flatnonzero(np.isfinite(excluded))[:5]] = 0.5  # five finite values: the rest are -inf
    corr[9, lo + 9] = 2.0  # its own column, the row's largest value: never selected
    # row 10: nine blocks hold one 0.9 each, a tenth block 0.6, the rest (its own block besides
    # itself included) -0.5: its own 2.0 must not count as a block's maximum, or the 0.6 is missed
    open_columns = np.flatnonzero(np.isfinite(excluded[:n]))
    own_block = (lo + 10) // 64
    first_per_block = {c // 64: c for c in open_columns[::-1] if c // 64 != own_block}
    planted = len(first_per_block) >= 10  # not at n = 50: one block
    if planted:
        corr[10, :] = -0.5
        corr[10, [first_per_block[b] for b in sorted(first_per_block)[:9]]] = 0.9
        corr[10, first_per_block[sorted(first_per_block)[9]]] = 0.6
        corr[10, lo + 10] = 2.0
    usable = np.ones(rows, bool)
    usable[7] = False
    peers, weight = np.empty((rows, k), np.int64), np.empty((rows, k), np.float32)
    _top_k_kernel()(corr, excluded, usable, lo, peers, weight)

    values = corr + excluded
    values[np.arange(rows), lo + np.arange(rows)] = -np.inf
    values[~usable] = -np.inf
    want = np.argsort(-values, axis=1, kind="stable")[:, :k]
    want_weight = np.take_along_axis(values, want, 1)
    np.testing.assert_array_equal(weight, want_weight)
    np.testing.assert_array_equal(peers, np.where(np.isfinite(want_weight), want, -1))
    assert np.isfinite(weight[8]).sum() == 5 and not np.isfinite(weight[7]).any()
    assert lo + 9 not in peers[9]
    assert not planted or weight[10, -1] == np.float32(0.6)


def test_correlated_peers_equal_a_full_sort_of_the_whole_correlation_matrix() -> None:
    """Over several slices of rows: every code's peers and their
    correlations are those of a plain sort of its row of the whole matrix (mean-imputed returns,
    unusable codes excluded both ways, the code itself left out)."""
    rng = np.random.default_rng(11)
    n, k = 700, 10  # three slices of rows, the last one short
    returns = rng.standard_normal((60, 4)) @ rng.standard_normal((4, n)) * 0.01
    returns += rng.standard_normal((60, n)) * 0.02
    returns[rng.uniform(size=(60, n)) < 0.05] = np.nan
    returns[:45, 3] = np.nan  # 15 returns: unusable
    returns[:, 9] = 0.0  # never moves (a suspended code): unusable
    peers, corr = correlated_peers(returns, k, PEER_MIN_PERIODS)

    filled = np.where(np.isnan(returns), np.nanmean(returns, axis=0), returns)
    z = filled - filled.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = (z.T @ z) / np.outer(np.linalg.norm(z, axis=0), np.linalg.norm(z, axis=0))
    usable = (np.isfinite(returns).sum(axis=0) >= PEER_MIN_PERIODS) & (np.nanstd(returns, axis=0) > 0)
    full[~usable, :] = -np.inf
    full[:, ~usable] = -np.inf
    np.fill_diagonal(full, -np.inf)
    want = np.argsort(-full, axis=1, kind="stable")[:, :k]
    want_corr = np.take_along_axis(full, want, 1)
    linked = np.isfinite(want_corr)
    assert not linked[[3, 9]].any() and linked[usable].all()
    np.testing.assert_array_equal(np.where(linked, peers, -1), np.where(linked, want, -1))
    np.testing.assert_allclose(corr[linked], want_corr[linked], rtol=0, atol=1e-6)
    assert not np.isfinite(corr[~linked]).any()


@pytest.mark.parametrize("threads", [2, 3])
def test_slice_workers_give_the_same_bits_with_blas_on_one_thread_each(threads: int) -> None:
    """The workers share the row slices (interleaved; 3 workers over 5 slices leave one a single
    slice) and the result is bit for bit the one thread's; inside, BLAS runs on one thread, and
    its own count is back afterwards."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    rng = np.random.default_rng(3)
    n = 1100  # five slices of rows, the last one short
    returns = rng.standard_normal((60, 3)) @ rng.standard_normal((3, n)) * 0.01
    returns += rng.standard_normal((60, n)) * 0.02
    returns[rng.uniform(size=(60, n)) < 0.05] = np.nan
    alone = correlated_peers(returns, 10, PEER_MIN_PERIODS)
    before = blas_threads()
    with slice_workers(threads) as workers:
        assert workers is not None and workers.threads == threads
        assert blas_threads() == {1}
        shared = correlated_peers(returns, 10, PEER_MIN_PERIODS, workers=workers)
    assert blas_threads() == before
    np.testing.assert_array_equal(shared[0], alone[0])
    np.testing.assert_array_equal(shared[1], alone[1])


def test_one_core_gets_no_workers() -> None:
    with slice_workers(1) as workers:
        assert workers is None
