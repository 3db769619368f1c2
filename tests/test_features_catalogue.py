"""The catalogue: size, shape, validation, and the include/ file being generated from the code."""

from __future__ import annotations

import json

import pytest

from gogooku3.features import catalogue as cat
from gogooku3.features.prepare import BASE_COLUMNS
from gogooku3.features.spec import GROUPS, OPS, CatalogueError, Feature, validate
from gogooku3.features.targets import TARGET_NAMES


def test_at_least_80_output_features_covering_every_group():
    assert len(cat.OUTPUT_FEATURES) >= 80
    groups = {f.group for f in cat.FEATURES if f.output}
    assert groups == set(GROUPS)


def test_every_feature_is_documented_and_named_once():
    names = [f.name for f in cat.FEATURES]
    assert len(names) == len(set(names))
    for f in cat.FEATURES:
        assert f.description.strip(), f.name
        assert not f.name.startswith("target_")
        assert f.output != f.name.startswith("_"), f"{f.name}: intermediates and only they start with _"


def test_no_feature_reads_a_target():
    for f in cat.FEATURES:
        assert not any(i.startswith("target_") for i in f.inputs), f.name


def test_required_domain_features_are_present():
    wanted = {
        "ret_1d",
        "ret_5d",
        "ret_10d",
        "ret_20d",
        "ema_200_dev",
        "ema_gap_5_20",
        "ema_20_slope",
        "ema_cross_up_5_20",
        "ma_ribbon_spread",
        "sharpe_20d",
        "rsi_14",
        "rsi_2",
        "rsi_14_delta",
        "macd_signal",
        "macd_hist",
        "bb_pct_b",
        "bb_bandwidth",
        "vol_20d",
        "vol_ratio_5_20",
        "vol_20d_change",
        "volume_ratio_20d",
        "flow_smart_money_idx",
        "flow_foreigners_net_ratio",
        "flow_individuals_net_ratio",
        "mkt_ret_1d",
        "beta_60d",
        "alpha_60d",
        "rel_strength_20d",
        "fin_sales_growth",
        "fin_op_margin",
        "fin_roe",
        "fin_eps_surprise",
        "fin_days_since_disclosure",
        "cs_z_ret_1d",
        "cs_rank_ret_1d",
        "sec_rel_ret_5d",
        "is_mature_200d",
    }
    assert wanted <= set(cat.OUTPUT_FEATURES)


def test_catalogue_file_is_up_to_date():
    assert cat.CATALOGUE_PATH.exists(), "run: python -m gogooku3.features.catalogue"
    on_disk = cat.CATALOGUE_PATH.read_text(encoding="utf-8")
    assert on_disk == cat.catalogue_json(), (
        "include/features/catalogue.json is stale: python -m gogooku3.features.catalogue"
    )
    doc = json.loads(on_disk)
    names = [r["name"] for r in doc["features"]]
    assert names == [*cat.OUTPUT_FEATURES, *TARGET_NAMES]
    for r in doc["features"]:
        assert {"name", "group", "window", "description", "dtype", "kind"} <= set(r)
        assert r["dtype"] in (("Float32", "Int8") if r["kind"] == "feature" else ("Float64", "Int8"))


def test_write_catalogue_round_trips(tmp_path):
    path = cat.write_catalogue(tmp_path / "c.json")
    assert json.loads(path.read_text())["features"] == cat.catalogue_records()


def _f(name, op, inputs, window=None, group="returns", **params):
    return Feature(name, op, tuple(inputs), group, "d", window, params)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ((_f("a", "nope", ["px_close"]),), "unknown op"),
        ((_f("a", "pct_change", ["missing"], 1),), "unknown column 'missing'"),
        ((_f("a", "rmean", ["b"], 5), _f("b", "rmean", ["a"], 5)), "cycle"),
        ((_f("a", "add", ["px_close"]),), "takes 2 input"),
        ((_f("a", "rmean", ["px_close"]),), "needs a window"),
        ((_f("target_x", "copy", ["px_close"]),), "reserved"),
        ((_f("a", "copy", ["px_close"], group="astrology"),), "unknown group"),
        ((_f("a", "copy", ["px_close"]), _f("a", "copy", ["px_close"])), "defined twice"),
        # a time series over a cross-section (directly, or through a row op) needs a second reorder
        ((_f("z", "cs_z", ["px_close"]), _f("a", "rmean", ["z"], 5)), "reads the cross-section result"),
        (
            (_f("z", "cs_rank", ["px_close"]), _f("y", "scale", ["z"], k=2.0), _f("a", "diff", ["y"], 1)),
            r"reads the cross-section result\(s\) \['y'\]",
        ),
    ],
)
def test_validate_rejects_bad_catalogues(features, message):
    with pytest.raises(CatalogueError, match=message):
        validate(features, frozenset(BASE_COLUMNS))


def test_phases_split_series_from_cross_sections():
    series, cross = cat.SERIES_LAYERS, cat.CROSS_LAYERS
    in_series = {f.name for layer in series for f in layer}
    in_cross = {f.name for layer in cross for f in layer}
    assert in_series | in_cross == {f.name for f in cat.FEATURES} and not in_series & in_cross
    assert all(f.grouping in ("code", "row") for layer in series for f in layer)
    assert {f.grouping for layer in cross for f in layer} >= {"date", "date_sector"}
    # the series phase never reads a cross-section result
    assert not {c for layer in series for f in layer for c in f.inputs} & in_cross


def test_layers_only_read_earlier_layers():
    seen = set(BASE_COLUMNS)
    for layer in cat.LAYERS:
        for f in layer:
            assert set(f.inputs) <= seen, f.name
        seen |= {f.name for f in layer}
    assert all(f.op in OPS for f in cat.FEATURES)


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("ret_1d", 2),
        ("ret_20d", 21),
        ("vol_20d", 21),
        ("ema_200_dev", 200),
        ("cs_z_vol_20d", 21),
        ("beta_60d", 61),
        ("rsi_14_delta", 20),
        ("fin_roe", 1),
        ("is_mature_200d", 1),
    ],
)
def test_min_history(name, rows):
    assert cat.min_history(name) == rows
