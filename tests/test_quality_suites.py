"""The suite files in include/expectations/ are current, loadable by GX, and encode the rules."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from gogooku3.quality import suites
from gogooku3.quality.gate import row_bounds, to_pandas


@pytest.mark.parametrize("name", suites.SUITE_NAMES)
def test_committed_suite_matches_its_generator(name):
    committed = suites.load_suite(name)
    generated = json.loads(suites.suite_json(suites.BUILDERS[name]()))
    assert committed == generated, (
        f"include/expectations/{name}.json is stale: python -m gogooku3.quality.suites"
    )


@pytest.mark.parametrize("name", suites.SUITE_NAMES)
def test_gx_loads_every_suite(name):
    import great_expectations as gx

    d = suites.load_suite(name)
    suite = gx.ExpectationSuite(name=d["name"], expectations=d["expectations"])
    assert len(suite.expectations) == len(d["expectations"]) > 10


def _by(suite, etype, column):
    return [e for e in suite["expectations"] if e["type"] == etype and e["kwargs"].get("column") == column]


def test_features_suite_follows_the_catalogue():
    cat = json.loads(suites.SUITES_DIR.parent.joinpath("features", "catalogue.json").read_text())["features"]
    s = suites.load_suite("features")
    (cols,) = [e for e in s["expectations"] if e["type"] == "expect_table_columns_to_match_set"]
    assert set(cols["kwargs"]["column_set"]) == {"Date", "Code", "Sector33Code", "MarketCode"} | {
        r["name"] for r in cat
    }
    for r in cat:
        (t,) = _by(s, "expect_column_values_to_be_of_type", r["name"])
        assert t["kwargs"]["type_"] == suites.GX_TYPES[r["dtype"]]
    # vol_20d_change reads a 5-day change of a 20-day std of 1-day returns: 26 rows -> the 60-day flag.
    assert suites.feature_lookbacks()["vol_20d_change"] == 26
    (cov,) = _by(s, "expect_column_values_to_not_be_null", "vol_20d_change")
    assert cov["kwargs"]["mostly"] == suites.COVERAGE
    assert cov["kwargs"]["row_condition"]["column"]["name"] == "is_mature_60d"
    # Targets are null at the end by construction: ranges, never coverage.
    assert not _by(s, "expect_column_values_to_not_be_null", "target_ret_1d")
    (rng,) = _by(s, "expect_column_values_to_be_between", "target_ret_1d")
    assert (rng["kwargs"]["min_value"], rng["kwargs"]["max_value"]) == suites.RETURN_BOUNDS


def test_features_suite_from_a_minimal_catalogue():
    recs = [
        {"name": "ret_5d", "kind": "feature", "group": "returns", "dtype": "Float64"},
        {"name": "is_mature_20d", "kind": "feature", "group": "maturity", "dtype": "Int8"},
    ]
    s = suites.features_suite(recs, {"ret_5d": 6})
    (cov,) = _by(s, "expect_column_values_to_not_be_null", "ret_5d")
    assert cov["kwargs"]["row_condition"] == {
        "type": "comparison",
        "column": {"name": "is_mature_20d"},
        "operator": "==",
        "parameter": 1,
    }
    assert _by(s, "expect_column_values_to_be_between", "ret_5d")


def test_row_bounds_and_dtypes():
    assert row_bounds(100, 1) == (98, 102)
    assert row_bounds(None, 1) == (1, None)
    with pytest.raises(ValueError, match="expected_rows"):
        row_bounds(-1, 0)
    pdf = to_pandas(
        pl.DataFrame({"a": [1, None]}, schema={"a": pl.Int8}).with_columns(
            pl.lit("x").alias("s"), pl.lit(None, pl.Date).alias("d")
        )
    )
    assert [str(t) for t in pdf.dtypes] == ["Int8", "string", "datetime64[ms]"]
    assert int(pdf["a"].isna().sum()) == 1
    with pytest.raises(ValueError, match="no GX type"):
        suites.gx_type(pl.List(pl.Int8))


def test_importing_the_package_does_not_import_great_expectations():
    code = "import sys, gogooku3.quality; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
