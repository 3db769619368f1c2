"""The reorder to day order: the counting sort's row order and the tiled gather's columns, against
Polars' own sort and gather."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from gogooku3.features import reorder
from gogooku3.features.reorder import date_order, day_sector_key

DAY0 = dt.date(2024, 1, 1)


def _panel(seed: int = 3, codes: int = 40, days: int = 30) -> pl.DataFrame:
    """A (code_id, Date)-sorted panel with gaps, late listings, rows without a sector and a code
    that changes sector, and one column of each kind the build moves."""
    rng = np.random.default_rng(seed)
    rows = []
    for code in range(1, codes + 1):
        first = int(rng.integers(0, 5))
        sector = ["50", "1050", "3700", None, "x"][code % 5]  # "x": not numeric, no sector
        for d in range(first, days):
            if rng.random() < 0.1:
                continue  # a gap
            s = "9050" if code == 7 and d > days // 2 else sector
            rows.append((code, DAY0 + dt.timedelta(days=d), s))
    df = pl.DataFrame(rows, schema=["code_id", "Date", "Sector33Code"], orient="row").with_columns(
        pl.col("code_id").cast(pl.UInt32)
    )
    n = df.height
    values = rng.normal(size=n)
    return df.with_columns(
        (pl.col("Date").cast(pl.Int64) * 100_000 + pl.col("Sector33Code").cast(pl.Int64, strict=False)).alias(
            "date_sector"
        ),
        pl.format("C{}", pl.col("code_id")).alias("Code"),
        pl.Series("f64", np.where(rng.random(n) < 0.2, np.nan, values)).fill_nan(None),
        pl.Series("f32", values, dtype=pl.Float32),
        pl.Series("i8", rng.integers(-100, 100, n), dtype=pl.Int8).set(pl.Series(rng.random(n) < 0.1), None),
        pl.Series("i64", rng.integers(-(2**60), 2**60, n), dtype=pl.Int64),
        pl.Series("flag", rng.random(n) < 0.5).set(pl.Series(rng.random(n) < 0.1), None),
        pl.col("Date").cast(pl.Datetime("ms")).alias("ts"),
    )


def _reference(panel: pl.DataFrame, start: dt.date | None) -> np.ndarray:
    """The order the build defines, by Polars' sort: (Date, sector key, code_id)."""
    index = panel.with_row_index("_i").with_columns(
        day_sector_key(pl.col("Date"), pl.col("date_sector")).alias("_key")
    )
    if start is not None:
        index = index.filter(pl.col("Date") >= start)
    return index.sort("Date", "_key", "code_id").get_column("_i").to_numpy()


@pytest.mark.parametrize("shift", [2, 5, 16])
@pytest.mark.parametrize("start", [None, DAY0 + dt.timedelta(days=11)])
def test_date_order_is_the_day_sector_code_sort(monkeypatch, shift, start):
    # small blocks give many of them: the gather's block order must not matter
    monkeypatch.setattr(reorder, "TILE_SHIFT", shift)
    panel = _panel()
    order = date_order(panel, start)
    expected = _reference(panel, start)
    assert order.height == expected.size
    np.testing.assert_array_equal(order.rows, expected)
    # the gather's pairs are the same pairs, each output row once, in panel order within a block
    np.testing.assert_array_equal(np.sort(order.tile_dst), np.arange(expected.size))
    np.testing.assert_array_equal(order.rows[order.tile_dst], order.tile_src)
    blocks = order.tile_dst >> shift
    assert (np.diff(blocks) >= 0).all()
    same_block = np.diff(blocks) == 0
    assert (np.diff(order.tile_src)[same_block] > 0).all()


@pytest.mark.parametrize("shift", [2, 16])
def test_gather_equals_polars_gather_for_every_column_kind(monkeypatch, shift):
    monkeypatch.setattr(reorder, "TILE_SHIFT", shift)
    panel = _panel()
    order = date_order(panel, DAY0 + dt.timedelta(days=4))
    moved = order.gather(panel)
    expected = panel.select(pl.all().gather(order.positions()))
    assert moved.schema == expected.schema
    assert moved.equals(expected)
    assert moved.get_column("f64").null_count() > 0 and moved.get_column("i8").null_count() > 0


def test_gather_reads_a_sliced_column_from_its_offset():
    panel = _panel()
    # one chunk each, sliced: Arrow arrays that start at an offset into their buffers
    sliced = pl.concat([panel.head(5), panel], how="vertical").rechunk().slice(5)
    assert sliced.get_column("f64").to_arrow().offset == 5
    order = date_order(panel, None)
    assert order.gather(sliced.select("f64", "i8", "Date")).equals(
        panel.select(pl.col("f64", "i8", "Date").gather(order.positions()))
    )


def test_date_order_refuses_rows_out_of_code_order_naming_the_row():
    panel = _panel()
    shuffled = pl.concat([panel.slice(100), panel.head(100)])
    with pytest.raises(
        ValueError, match=r"sorted by \(code_id, Date\) .*row \d+ has \(code_id 1, 2024-01-0\d\) after"
    ):
        date_order(shuffled, None)


@pytest.mark.parametrize("copied", [3, 4], ids=["a date back", "a duplicate"])
def test_date_order_refuses_a_code_whose_dates_do_not_rise(copied):
    panel = _panel()
    # code 1's row ``copied`` again as row 5 (the code has more rows)
    broken = pl.concat([panel.head(5), panel.slice(copied, 1), panel.slice(5)])
    assert broken.get_column("code_id")[6] == 1
    with pytest.raises(ValueError, match=r"row 5 has \(code_id 1, "):
        date_order(broken, None)


def test_gather_refuses_a_frame_of_another_height():
    panel = _panel()
    order = date_order(panel, None)
    with pytest.raises(
        ValueError, match=rf"has {panel.height - 1} rows, the order was made for {panel.height}"
    ):
        order.gather(panel.head(panel.height - 1))


def test_no_row_on_or_after_start_gives_an_empty_order():
    panel = _panel()
    order = date_order(panel, DAY0 + dt.timedelta(days=400))
    assert order.height == 0
    assert order.gather(panel.select("f64", "Code")).height == 0


def test_a_sector_code_beyond_the_key_is_refused_naming_the_row():
    panel = _panel()
    bad = panel.with_columns(
        pl.when(pl.int_range(pl.len()) == 17)
        .then(pl.col("Date").cast(pl.Int64) * 100_000 + 123_456)
        .otherwise(pl.col("date_sector"))
        .alias("date_sector"),
        pl.when(pl.int_range(pl.len()) == 17)
        .then(pl.lit("123456"))
        .otherwise(pl.col("Sector33Code"))
        .alias("Sector33Code"),
    )
    with pytest.raises(
        ValueError, match=r"row 17 \(code_id \d+, .*\) has Sector33Code '123456', outside the 0..99999"
    ):
        date_order(bad, None)
