"""Unit tests of gogooku3.jquants.normalize.to_frame (wire records -> canonical frame)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from gogooku3.jquants.datasets import DATASETS, get_dataset
from gogooku3.jquants.errors import SchemaError
from gogooku3.jquants.normalize import to_frame

DQ = get_dataset("daily_quotes")


def _v2_bar(**overrides):
    rec = {
        "Date": "2024-01-04",
        "Code": "13010",
        "O": 100.0,
        "H": 110.0,
        "L": 95.0,
        "C": 105.0,
        "UL": "0",
        "LL": "0",
        "Vo": 12000.0,
        "Va": 1_260_000.0,
        "AdjFactor": 1.0,
        "AdjO": 100.0,
        "AdjH": 110.0,
        "AdjL": 95.0,
        "AdjC": 105.0,
        "AdjVo": 12000.0,
    }
    rec.update(overrides)
    return rec


def _as_v1(dataset, rec):
    """The same record spelled with v1 names (built from the dataset contract, not by hand)."""
    by_v2 = dataset.field_by_source("v2")
    return {by_v2[k].source_name("v1") if k in by_v2 else k: v for k, v in rec.items()}


def test_v1_and_v2_give_identical_frames_with_declared_schema():
    recs = [_v2_bar(), _v2_bar(Code="72030", O=2500, H="2600.5", UL="1")]
    f2 = to_frame(DQ, "v2", recs)
    f1 = to_frame(DQ, "v1", [_as_v1(DQ, r) for r in recs])
    assert f2.schema == pl.Schema(DQ.schema)
    assert f1.equals(f2)
    assert f2["High"].to_list() == [110.0, 2600.5]
    assert f2["UpperLimit"].to_list() == [False, True]
    assert f2["Date"].to_list() == [dt.date(2024, 1, 4)] * 2


def test_dates_in_both_wire_formats_and_four_digit_codes():
    f = to_frame(DQ, "v2", [_v2_bar(Date="20240105", Code="1301"), _v2_bar(Date="2024-01-05", Code=7203)])
    assert f["Date"].to_list() == [dt.date(2024, 1, 5)] * 2
    assert f["Code"].to_list() == ["13010", "72030"]
    assert f["Code"].str.len_chars().to_list() == [5, 5]


def test_nulls_and_empty_strings_stay_null():
    rec = _v2_bar(O=None, H="", L=None, C=None, UL="", LL=None, AdjO=None, AdjC=None)
    f = to_frame(DQ, "v2", [rec])
    row = f.row(0, named=True)
    for col in (
        "Open",
        "High",
        "Low",
        "Close",
        "UpperLimit",
        "LowerLimit",
        "AdjustmentOpen",
        "AdjustmentClose",
    ):
        assert row[col] is None, col
    assert row["Volume"] == 12000.0


def test_missing_required_field_names_dataset_field_and_version():
    rec = _v2_bar()
    del rec["AdjC"]
    with pytest.raises(SchemaError) as err:
        to_frame(DQ, "v2", [_v2_bar(), rec])
    msg = str(err.value)
    assert "daily_quotes" in msg and "'AdjC'" in msg and "v2" in msg and "AdjustmentClose" in msg
    assert err.value.field == "AdjC"

    v1 = _as_v1(DQ, _v2_bar())
    del v1["Close"]
    with pytest.raises(SchemaError, match=r"daily_quotes \(v1\): field 'Close'"):
        to_frame(DQ, "v1", [v1])


def test_optional_field_may_be_absent():
    rec = _v2_bar()
    del rec["AdjVo"], rec["UL"]
    f = to_frame(DQ, "v2", [rec])
    assert f["AdjustmentVolume"].to_list() == [None]
    assert f["UpperLimit"].to_list() == [None]
    assert f.schema == pl.Schema(DQ.schema)


def test_unknown_fields_kept_after_declared_columns_sorted_by_received_name():
    recs = [_v2_bar(zNew="a", MoreInfo=1), _v2_bar(zNew=None)]
    f = to_frame(DQ, "v2", recs)
    assert f.columns == [*DQ.columns, "MoreInfo", "zNew"]
    assert f["zNew"].to_list() == ["a", None]
    assert f["MoreInfo"].to_list() == [1, None]


def test_unknown_field_with_a_canonical_name_does_not_shadow_the_declared_column():
    f = to_frame(DQ, "v2", [_v2_bar(Open=999.0)])
    assert f["Open"].to_list() == [100.0]
    assert f["Open_v2"].to_list() == [999.0]


def test_bad_values_raise_schema_error_naming_field():
    with pytest.raises(SchemaError, match="'O'.*numbers"):
        to_frame(DQ, "v2", [_v2_bar(O="abc")])
    with pytest.raises(SchemaError, match="'Date'.*dates"):
        to_frame(DQ, "v2", [_v2_bar(Date="2024-13-45")])
    with pytest.raises(SchemaError, match="'UL'"):
        to_frame(DQ, "v2", [_v2_bar(UL="maybe")])


def test_empty_records_give_empty_frame_with_canonical_schema():
    for ds in DATASETS.values():
        for version in ("v1", "v2"):
            f = to_frame(ds, version, [])
            assert f.height == 0
            assert f.schema == pl.Schema(ds.schema)


def test_statements_local_code_and_string_numbers():
    st = get_dataset("statements")
    rec_v1 = {
        "DisclosedDate": "2024-02-09",
        "DisclosedTime": "15:30:00",
        "LocalCode": "86970",
        "DisclosureNumber": "20240209512345",
        "TypeOfDocument": "3QFinancialStatements_Consolidated_IFRS",
        "NetSales": "123456000000",
        "EarningsPerShare": "",
        "CurrentPeriodEndDate": "2023-12-31",
    }
    f = to_frame(st, "v1", [rec_v1])
    row = f.row(0, named=True)
    assert row["Code"] == "86970"
    assert row["NetSales"] == 123456000000.0
    assert row["EarningsPerShare"] is None
    assert row["CurrentPeriodEndDate"] == dt.date(2023, 12, 31)
    assert f.schema == pl.Schema(st.schema)


def test_every_dataset_round_trips_a_full_record_in_both_versions():
    """Build a record from the contract for every field; both protocols give the same frame."""
    samples = {pl.Date: "2024-01-04", pl.String: "13010", pl.Float64: "1.5", pl.Boolean: "1"}

    def record(ds, version):
        rec: dict = {}
        for f in ds.fields:
            parent = f.parent_name(version)  # a field inside an object (the publish reasons)
            (rec.setdefault(parent, {}) if parent else rec)[f.source_name(version)] = samples[type(f.dtype)]
        return rec

    for ds in DATASETS.values():
        f2, f1 = to_frame(ds, "v2", [record(ds, "v2")]), to_frame(ds, "v1", [record(ds, "v1")])
        assert f1.equals(f2), ds.name
        assert f2.columns == list(ds.columns)
        assert f2.null_count().sum_horizontal().item() == 0, ds.name
