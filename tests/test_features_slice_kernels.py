"""The cross-section kernels against Polars' own windows (the engine's previous expressions), and
the properties the build relies on: a slice's values depend on that slice only, and rows out of
day order are refused."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gogooku3.features.slice_kernels import slice_values


def _frame(seed: int = 11) -> pl.DataFrame:
    """Day-ordered rows: slices of 1 to 60 rows with nulls, ties, negative values, -0.0 and 0.0, a
    flat slice, a slice of one value and a slice of nulls only."""
    rng = np.random.default_rng(seed)
    keys, values = [], []
    for day in range(200):
        size = int(rng.integers(1, 60))
        x = np.round(rng.normal(0, 1, size), 1)  # rounded: ties
        x[rng.random(size) < 0.15] = np.nan
        if day == 3:
            x[:] = 0.1  # its rounded std is ~1e-17, not 0
        if day == 4:
            x[:] = np.nan
        if day == 5:
            x[:] = [-0.0 if i % 2 else 0.0 for i in range(size)]
        if day == 6:
            x = np.array([7.0])
        keys.extend([19_000 + day] * x.size)
        values.extend(x)
    return pl.DataFrame({"key": keys, "x": values}).with_columns(pl.col("x").fill_nan(None))


def _polars(stat: str, k: float = 0.0) -> pl.Expr:
    """What the engine computed with Polars' windows before the kernels."""
    x = pl.col("x")
    mu, sd = x.mean().over("key"), x.std().over("key")
    if stat == "z":
        z = (x - mu) / sd
        return pl.when(x.max().over("key") > x.min().over("key")).then(pl.when(z.is_finite()).then(z))
    if stat == "winsor":
        hi, lo = mu + k * sd, mu - k * sd
        return pl.when(x > hi).then(hi).when(x < lo).then(lo).otherwise(x)
    if stat == "demean":
        return x - mu
    return x.rank("average").over("key") / x.count().over("key")


@pytest.mark.parametrize(
    ("stat", "k"), [("z", 0.0), ("winsor", 1.0), ("winsor", 5.0), ("demean", 0.0), ("rank", 0.0)]
)
def test_kernel_matches_polars_windows(stat, k):
    frame = _frame()
    got = slice_values(frame["x"], frame["key"], stat, k)
    want = frame.select(_polars(stat, k)).to_series()
    assert got.is_null().equals(want.is_null())
    np.testing.assert_allclose(
        got.drop_nulls().to_numpy(), want.drop_nulls().to_numpy(), rtol=1e-12, atol=1e-15
    )
    if stat == "winsor" and k == 1.0:
        assert (got != frame["x"]).sum() > 0  # the clip did something


def test_edge_slices():
    frame = _frame()
    by = {
        stat: frame.with_columns(slice_values(frame["x"], frame["key"], stat, 5.0).alias("v"))
        for stat in ("z", "winsor", "rank")
    }
    flat = pl.col("key") == 19_003
    single = pl.col("key") == 19_006
    assert by["z"].filter(flat | single)["v"].null_count() == by["z"].filter(flat | single).height
    assert by["winsor"].filter(single)["v"].to_list() == [7.0]  # one value: no std, left as it is
    assert by["rank"].filter(single)["v"].to_list() == [1.0]
    # -0.0 and 0.0 are one value: every row of the slice shares the middle rank
    zeros = by["rank"].filter(pl.col("key") == 19_005)["v"]
    assert zeros.n_unique() == 1 and zeros[0] == pytest.approx((zeros.len() + 1) / 2 / zeros.len())


@pytest.mark.parametrize("stat", ["z", "winsor", "demean", "rank"])
def test_a_slice_depends_on_its_own_rows_only(stat):
    frame = _frame()
    full = slice_values(frame["x"], frame["key"], stat, 5.0)
    part = frame.with_row_index("i").filter(pl.col("key").is_between(19_050, 19_120))
    alone = slice_values(part["x"], part["key"], stat, 5.0)
    # bit-identical: the same rows, summed in the same order, whatever else the frame holds
    assert alone.equals(full.gather(part["i"]))


def test_rows_out_of_day_order_are_refused_naming_the_row():
    frame = _frame()
    swapped = pl.concat([frame.filter(pl.col("key") >= 19_100), frame.filter(pl.col("key") < 19_100)])
    row = swapped.filter(pl.col("key") >= 19_100).height
    with pytest.raises(
        ValueError, match=rf"over 'key': the rows must be in day order .* row {row} has 19000 after 19199"
    ):
        slice_values(swapped["x"], swapped["key"], "z")


def test_unknown_stat_is_refused():
    frame = _frame()
    with pytest.raises(ValueError, match="slice stat 'median'"):
        slice_values(frame["x"], frame["key"], "median")  # type: ignore[arg-type]
