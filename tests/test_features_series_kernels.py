"""The CPU engine's per-code kernels: the definitions (against Polars' own), values that depend on
their window only, and EMAs that resume from a checkpoint bit for bit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gogooku3.features.series_kernels import carried_values, ema_values, rolling_values

CODES, ROWS, CUT = 4, 400, 150


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(11)
    n = CODES * ROWS
    x = rng.normal(size=n) * 10 + 1000
    x[rng.random(n) < 0.02] = np.nan
    x[ROWS + 50 : ROWS + 80] = 1234.5  # a flat stretch (a suspended price)
    code = np.repeat(np.arange(1, CODES + 1, dtype=np.uint32), ROWS)
    obs = np.tile(np.arange(1, ROWS + 1), CODES).astype(np.int64)
    return pl.Series("x", x, nan_to_null=True), code, obs


@pytest.mark.parametrize(
    ("stat", "window"),
    [("sum", 1), ("sum", 20), ("mean", 5), ("mean", 60), ("std", 2), ("std", 20), ("std", 61)],
)
def test_rolling_matches_polars_and_depends_on_its_window_only(series, stat, window):
    x, code, obs = series
    got = rolling_values(x, code, obs, window, stat).to_numpy()
    ref = (
        pl.DataFrame({"c": code, "x": x})
        .select(getattr(pl.col("x"), f"rolling_{stat}")(window, min_samples=window).over("c"))
        .to_series()
        .to_numpy()
    )
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-9)
    # the same rows, started CUT rows into each code: bit-identical once the window fits
    keep = obs > CUT
    later = rolling_values(x.filter(pl.Series(keep)), code[keep], obs[keep], window, stat).to_numpy()
    full = obs[keep] >= CUT + window
    assert np.array_equal(got[keep][full], later[full], equal_nan=True)
    assert np.isnan(later[~full]).all()  # too few rows in the slice: null, never a neighbour's rows


def test_a_flat_window_has_no_spread(series):
    x, code, obs = series
    sd = rolling_values(x, code, obs, 20, "std").to_numpy()
    assert sd[ROWS + 69] == 0.0  # exactly: every deviation from the reference row is 0


def test_ema_is_the_recursion_and_resumes_from_its_state_bit_for_bit(series):
    x, code, obs = series
    alpha = 2 / 11
    y = ema_values(x, code, obs, alpha).to_numpy()
    ref = (
        pl.DataFrame({"c": code, "x": x})
        .select(pl.col("x").ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True).over("c"))
        .to_series()
        .to_numpy()
    )
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    state = carried_values(pl.Series(y, nan_to_null=True), code).to_numpy()
    keep = obs > CUT
    # the checkpoint row (the slice's first) carries the state after it; later rows are recomputed
    seeds = pl.Series(np.where(obs[keep] == CUT + 1, state[keep], np.nan), nan_to_null=True)
    resumed = ema_values(x.filter(pl.Series(keep)), code[keep], obs[keep], alpha, seeds).to_numpy()
    later = obs[keep] > CUT + 1
    assert np.array_equal(y[keep][later], resumed[later], equal_nan=True)


def test_ema_refuses_a_continuation_without_its_state(series):
    x, code, obs = series
    keep = obs > CUT
    with pytest.raises(ValueError, match=f"starts at obs_count {CUT + 1}.*no checkpoint state"):
        ema_values(x.filter(pl.Series(keep)), code[keep], obs[keep], 0.5)


def test_the_carried_state_never_crosses_codes():
    code = np.array([1, 1, 2, 2], dtype=np.uint32)
    got = carried_values(pl.Series([1.0, None, None, 3.0]), code).to_list()
    assert got == [1.0, 1.0, None, 3.0]


def test_bad_windows_are_named():
    x, code, obs = pl.Series([1.0, 2.0]), np.array([1, 1], dtype=np.uint32), np.array([1, 2])
    with pytest.raises(ValueError, match="rolling std needs a window of at least 2"):
        rolling_values(x, code, obs, 1, "std")
    with pytest.raises(ValueError, match="rolling stat .median."):
        rolling_values(x, code, obs, 2, "median")  # type: ignore[arg-type]
