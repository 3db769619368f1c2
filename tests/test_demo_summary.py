"""``make demo``'s summary table: every dataset the fetch writes, with its rows in range."""

from __future__ import annotations

import datetime as dt

import polars as pl

from gogooku3.devtools.demo_summary import table_rows
from gogooku3.jquants.datasets import DATASET_NAMES
from gogooku3.lake import open_lake


def test_the_summary_lists_every_raw_dataset_with_its_rows_in_range(tmp_path) -> None:
    lake = open_lake(tmp_path)
    day, before = dt.date(2024, 6, 28), dt.date(2024, 1, 5)
    for when, rows in ((day, 3), (before, 5)):
        lake.write_partition("raw", "futures", when, pl.DataFrame({"x": range(rows)}), source="test")
    table = {name: (parts, rows) for name, parts, rows, _ in table_rows(lake, dt.date(2024, 6, 1), day)}
    assert [n for n in table if n.startswith("raw/")] == [f"raw/{n}" for n in DATASET_NAMES]
    assert table["raw/futures"] == (1, 3)  # the partition before the range is not counted
    assert table["raw/index_option"] == (0, 0)
