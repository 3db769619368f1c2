"""GPU engine (cuDF + CuPy) against the CPU engine (Polars): every output column, same data.

Both engines compute in Float64 and store each feature as Float32 (flags Int8). Their Float64
values must agree to a relative 1e-6 (an absolute 1e-9 floor for values that are ~0, where a
relative bound is meaningless); each side's one rounding to Float32 then adds at most half a
Float32 ulp, so the stored values must agree to a relative 1e-6 + 2^-23 (FLOAT32_RTOL). Flags
exactly, nulls in the same places. Skipped, with the reason, where there is no NVIDIA GPU or no
RAPIDS.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from gogooku3.features.catalogue import FEATURES
from gogooku3.features.prepare import KEY_COLUMNS, prepare_panel
from gogooku3.features.testing import market_inputs

FLOAT32_RTOL = 1e-6 + float(np.finfo(np.float32).eps)


def _gpu_or_skip() -> None:
    try:
        import cudf  # noqa: F401
        import cupy
    except Exception as e:  # noqa: BLE001 - any import failure means no usable RAPIDS
        pytest.skip(f"no NVIDIA GPU / RAPIDS cuDF not installed: {type(e).__name__}: {e}")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no NVIDIA GPU / RAPIDS cuDF not installed: CUDA runtime: {e}")
    if n < 1:
        pytest.skip("no NVIDIA GPU / RAPIDS cuDF not installed: no CUDA device visible")


def test_gpu_matches_cpu_on_every_column():
    _gpu_or_skip()
    from gogooku3.features.engine_cpu import compute_features
    from gogooku3.features.engine_gpu import compute_features_gpu

    inputs = market_inputs(120, dt.date(2021, 1, 4), dt.date(2022, 6, 30), seed=9)
    panel = prepare_panel(inputs.daily_quotes, **inputs.kwargs())
    cpu = compute_features(panel)
    gpu = compute_features_gpu(panel)
    assert gpu.columns == cpu.columns
    assert gpu.select(KEY_COLUMNS).equals(cpu.select(KEY_COLUMNS))
    failures = []
    for f in FEATURES:
        if not f.output:
            continue
        a, b = cpu.get_column(f.name), gpu.get_column(f.name)
        if a.dtype != b.dtype:
            failures.append(f"{f.name}: dtype {a.dtype} vs {b.dtype}")
            continue
        if not a.is_null().equals(b.is_null()):
            n = int((a.is_null() != b.is_null()).sum())
            failures.append(f"{f.name}: null masks differ on {n} rows")
            continue
        if f.dtype == "Int8":
            if not a.equals(b):
                failures.append(f"{f.name}: flags differ on {int((a != b).sum())} rows")
            continue
        x, y = a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy()
        bad = ~np.isclose(y.astype(np.float64), x.astype(np.float64), rtol=FLOAT32_RTOL, atol=1e-9)
        if bad.any():
            k = int(np.argmax(bad))
            failures.append(f"{f.name}: {int(bad.sum())} values off, e.g. cpu={x[k]!r} gpu={y[k]!r}")
    assert not failures, "GPU/CPU parity failures:\n" + "\n".join(failures)
    assert cpu.height > 30_000 and pl.Series(list(cpu.columns)).n_unique() == cpu.width
