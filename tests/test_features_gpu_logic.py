"""The GPU compiler's logic on CPU CI: engine_gpu run against the pandas-backed stand-in for cuDF/CuPy
(tests/cudf_standin.py, through the ``fake_rapids`` fixture), required to agree with the Polars engine
on every column with the parity test's tolerances. It catches op-mapping, null-handling and row-order
mistakes in ``engine_gpu`` without a GPU (``test_features_gpu_parity.py`` tests RAPIDS itself).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from gogooku3.features import engine_gpu
from gogooku3.features.catalogue import FEATURES
from gogooku3.features.engine_cpu import compute_features
from gogooku3.features.prepare import prepare_panel
from gogooku3.features.testing import market_inputs


def test_gpu_compiler_matches_cpu_engine_with_a_stand_in_for_rapids(fake_rapids):
    inputs = market_inputs(30, dt.date(2022, 1, 4), dt.date(2022, 12, 30), seed=9)
    panel = prepare_panel(inputs.daily_quotes, **inputs.kwargs())
    cpu = compute_features(panel)
    gpu = engine_gpu.compute_features_gpu(panel)
    assert gpu.schema == cpu.schema
    assert gpu.select("Code", "Date").equals(cpu.select("Code", "Date"))
    failures = []
    for f in FEATURES:
        if not f.output:
            continue
        a, b = cpu.get_column(f.name), gpu.get_column(f.name)
        if not a.is_null().equals(b.is_null()):
            failures.append(f"{f.name}: null masks differ on {int((a.is_null() != b.is_null()).sum())} rows")
        elif f.dtype == "Int8":
            if not a.equals(b):
                failures.append(f"{f.name}: flags differ")
        else:
            x, y = a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy()
            if not np.allclose(y, x, rtol=1e-6, atol=1e-9):
                failures.append(f"{f.name}: values differ")
    assert not failures, failures


def test_rmm_pool_refuses_an_oversized_request_before_any_work(fake_rapids, monkeypatch):
    monkeypatch.setenv("RMM_POOL_SIZE", "500GB")
    with pytest.raises(engine_gpu.GpuMemoryConfigError, match="does not fit"):
        engine_gpu.compute_features_gpu(None)  # fails in the pool check, before touching the panel
