"""The CPU compiler against naive references; determinism; the GPU engine's CPU-side contract."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from gogooku3.config import ConfigError
from gogooku3.features import build_features
from gogooku3.features.catalogue import FEATURES, OUTPUT_FEATURES
from gogooku3.features.engine_cpu import compute_features, move_schedule
from gogooku3.features.prepare import KEY_COLUMNS, FeatureInputError, prepare_panel
from gogooku3.features.testing import market_inputs

START, END = dt.date(2022, 1, 4), dt.date(2022, 12, 30)


@pytest.fixture(scope="module")
def inputs():
    return market_inputs(30, START, END, seed=5)


@pytest.fixture(scope="module")
def full(inputs):
    """Every catalogue column, intermediates included: both phases, nothing dropped, in day order."""
    from gogooku3.features.catalogue import SERIES_LAYERS
    from gogooku3.features.engine_cpu import compute_cross_sections_lazy, expr
    from gogooku3.features.reorder import date_order

    panel = prepare_panel(inputs.daily_quotes, **inputs.kwargs())
    lf = panel.lazy()
    for layer in SERIES_LAYERS:
        lf = lf.with_columns([expr(f) for f in layer])
    series = lf.collect()
    by_date = date_order(series, None).gather(series).with_columns(pl.col("Date").set_sorted())
    return compute_cross_sections_lazy(by_date.lazy()).collect()


def _ema_ref(xs, alpha):
    out, y = [], None
    for x in xs:
        if x is None:
            out.append(None)
            continue
        y = x if y is None else (1 - alpha) * y + alpha * x
        out.append(y)
    return out


def _per_code(df: pl.DataFrame, code_col="Code"):
    for (code,), part in df.partition_by(code_col, as_dict=True, maintain_order=True).items():
        yield code, part.sort("Date")


def test_ema_matches_the_recursive_definition(full):
    for _, part in list(_per_code(full))[:5]:
        px = part.get_column("px_close").to_list()
        for span in (5, 200):
            ref = _ema_ref(px, 2 / (span + 1))
            got = part.get_column(f"_ema_{span}").to_list()
            assert got == pytest.approx(ref, rel=1e-12, nan_ok=False)


def test_rolling_and_lags_match_naive_per_code_loops(full):
    for _, part in list(_per_code(full))[:5]:
        r = part.get_column("_ret_1d_raw").to_list()
        px = part.get_column("px_close").to_list()
        vol = part.get_column("vol_20d").to_list()
        for k in range(len(px)):
            exp_r = None if k < 1 else px[k] / px[k - 1] - 1
            assert r[k] == pytest.approx(exp_r, rel=1e-12) if exp_r is not None else r[k] is None
            window = r[k - 19 : k + 1] if k >= 19 else []
            if len(window) == 20 and all(v is not None for v in window):
                assert vol[k] == pytest.approx(np.std(window, ddof=1) * math.sqrt(252), rel=1e-9)
            elif k < 19:
                assert vol[k] is None, "a 20-day window is null until 20 rows exist (maturity)"


def test_cross_section_uses_only_that_day(full):
    day = full.filter(pl.col("Date") == dt.date(2022, 9, 1))
    x = day.get_column("ret_5d")
    z = day.get_column("cs_z_ret_5d")
    expect = (x - x.mean()) / x.std()
    assert z.to_list() == pytest.approx(expect.to_list(), rel=1e-9)
    rank = day.get_column("cs_rank_ret_5d")
    assert rank.max() == pytest.approx(1.0)
    assert rank.min() == pytest.approx(1 / x.drop_nulls().len())


def test_rsi_bounds_and_flags_are_int8(full):
    rsi = full.get_column("rsi_14").drop_nulls()
    assert rsi.min() >= 0 and rsi.max() <= 100
    for f in FEATURES:
        if f.output:  # computed in Float64; the build rounds to the stored dtype (below)
            assert str(full.schema[f.name]) == ("Int8" if f.dtype == "Int8" else "Float64"), f.name


def test_the_build_stores_each_feature_as_its_catalogue_dtype(inputs):
    built = build_features(inputs.daily_quotes, **inputs.kwargs())
    assert {f.name: str(built.schema[f.name]) for f in FEATURES if f.output} == {
        f.name: f.dtype for f in FEATURES if f.output
    }
    assert {built.schema[f.name] for f in FEATURES if f.output} == {pl.Float32, pl.Int8}


def test_maturity_flags_follow_history_length(full):
    for _, part in list(_per_code(full))[:3]:
        flags = part.get_column("is_mature_60d").to_list()
        assert flags == [int(k + 1 >= 60) for k in range(part.height)]


def test_cpu_engine_is_deterministic(inputs):
    a = build_features(inputs.daily_quotes, **inputs.kwargs())
    b = build_features(inputs.daily_quotes, **inputs.kwargs())
    assert a.equals(b)
    assert len(OUTPUT_FEATURES) >= 80 and set(OUTPUT_FEATURES) <= set(a.columns)


def test_unknown_engine_is_rejected(inputs):
    with pytest.raises(ValueError, match="engine='tpu'"):
        build_features(inputs.daily_quotes, engine="tpu")


def test_each_needed_column_leaves_the_series_phase_once_after_its_last_reader() -> None:
    """The move schedule of the real catalogue: every needed column moves exactly once, never
    before the layer that makes it nor before a layer that reads it; the keys after the last."""
    from gogooku3.features.catalogue import CROSS_LAYERS, SERIES_LAYERS

    needed = [*KEY_COLUMNS, *(f.name for layer in SERIES_LAYERS for f in layer if f.output)]
    needed += sorted({c for layer in CROSS_LAYERS for f in layer for c in f.inputs} - set(needed))
    schedule = move_schedule(SERIES_LAYERS, needed)
    moved = [c for names in schedule.values() for c in names]
    assert sorted(moved) == sorted(set(needed)) and len(moved) == len(set(moved))
    step = {c: i for i, names in schedule.items() for c in names}
    for i, layer in enumerate(SERIES_LAYERS):
        for f in layer:
            if f.name in step:
                assert step[f.name] >= i, f"{f.name} moves before it is made"
            for c in f.inputs:
                if c in step:
                    assert step[c] >= i, f"{c} moves before layer {i} reads it"
    assert all(step[c] == len(SERIES_LAYERS) - 1 for c in KEY_COLUMNS)
    # most outputs leave early: the frame never holds them all over the whole history
    assert sum(1 for c in moved if step[c] < len(SERIES_LAYERS) - 1) > len(moved) / 2


def test_intermediates_never_reach_the_output(inputs):
    panel = prepare_panel(inputs.daily_quotes.head(500), **inputs.kwargs())
    out = compute_features(panel)
    assert not [c for c in out.columns if c.startswith("_")]


def test_package_import_does_not_import_cudf():
    code = "import sys, gogooku3.features, gogooku3.features.build; print('cudf' in sys.modules, 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


@pytest.mark.skipif(importlib.util.find_spec("cudf") is not None, reason="RAPIDS is installed here")
def test_gpu_engine_without_rapids_fails_clearly(inputs):
    from gogooku3.features.engine_gpu import GpuUnavailableError

    with pytest.raises(GpuUnavailableError, match="needs RAPIDS cuDF.*engine='cpu'"):
        build_features(inputs.daily_quotes, **inputs.kwargs(), engine="gpu")


def test_rmm_pool_size_default_and_overrides():
    from gogooku3.features.engine_gpu import GpuMemoryConfigError, pool_size_bytes

    gb = 10**9
    default = pool_size_bytes({}, total=80 * gb, free=79 * gb)
    assert 69.5 * gb < default <= 70 * gb  # 87.5% of an 80 GB A100, aligned down to 256 MiB
    assert pool_size_bytes({"RMM_POOL_SIZE": "16GiB"}, total=80 * gb, free=79 * gb) == 16 * 2**30
    assert pool_size_bytes({}, total=80 * gb, free=79 * gb, requested=8 * 2**30) == 8 * 2**30
    with pytest.raises(GpuMemoryConfigError, match=r"RMM_POOL_SIZE=100GB\) does not fit.*79.0 GB free"):
        pool_size_bytes({"RMM_POOL_SIZE": "100GB"}, total=80 * gb, free=79 * gb)
    with pytest.raises(GpuMemoryConfigError, match="not a size") as err:
        pool_size_bytes({"RMM_POOL_SIZE": "lots"}, total=80 * gb, free=79 * gb)
    assert not isinstance(err.value, ConfigError) or "lots" in str(err.value)


def test_engine_refuses_a_panel_not_in_code_order(inputs):
    panel = prepare_panel(inputs.daily_quotes.head(2000), **inputs.kwargs())
    with pytest.raises(ValueError, match=r"sorted by \(code_id, Date\)"):
        compute_features(panel.sort("Date", "code_id"))


def test_output_is_in_day_order_with_each_sector_contiguous(inputs):
    out = build_features(inputs.daily_quotes, **inputs.kwargs(), start=dt.date(2022, 6, 1))
    assert out.get_column("Date").min() == dt.date(2022, 6, 1)
    key = out.select("Date", pl.col("Sector33Code").fill_null("~"), "Code")
    assert key.equals(key.sort("Date", "Sector33Code", "Code"))


def test_duplicate_quote_rows_are_refused_naming_one(inputs):
    q = inputs.daily_quotes
    row = q.filter(pl.col("Date") == dt.date(2022, 3, 1)).head(1)
    code = row.get_column("Code").item()
    with pytest.raises(
        FeatureInputError, match=rf"duplicate \(Code, Date\) rows, e.g. Code {code} on 2022-03-01"
    ):
        prepare_panel(pl.concat([q, row]), **inputs.kwargs())


def test_consume_empties_the_panel_and_changes_nothing_else(inputs):
    panel = prepare_panel(inputs.daily_quotes, **inputs.kwargs())
    kept = compute_features(panel.clone())
    owned = panel.clone()
    consumed = compute_features(owned, consume=True)
    assert owned.width == 0
    assert consumed.equals(kept)
