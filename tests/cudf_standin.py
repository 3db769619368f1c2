"""A pandas-backed stand-in for cuDF, CuPy and RMM, so the GPU engine's logic runs on CPU CI.

This does NOT test RAPIDS or the CUDA kernel (``test_features_gpu_parity.py`` does, on a GPU): it
replaces cuDF with nullable pandas (NA semantics like cuDF's nulls, NaN kept apart until
``nans_to_nulls``), CuPy with NumPy and the EMA ``RawKernel`` with the same per-segment scan in
Python. Tests get it through the ``fake_rapids`` fixture (tests/conftest.py) or, where a fixture does
not fit (a module-scoped computation), :func:`install` on a ``MonkeyPatch``.
"""

# The stand-in defines its operators as one-line lambdas (a table of them reads best).
# ruff: noqa: E731
from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from gogooku3.features import engine_gpu

# ---------------------------------------------------------------- the stand-in (cuDF subset)


def _un(x):
    return x.s if isinstance(x, Series) else x


def _nullable(s):
    if s.dtype == object or str(s.dtype).startswith(("datetime", "timedelta")):
        return s
    if s.dtype == bool:
        return s.astype("boolean")
    if np.issubdtype(s.dtype, np.floating):
        out = s.astype("Float64")
        return out
    if np.issubdtype(s.dtype, np.integer):
        return s.astype(f"Int{s.dtype.itemsize * 8}")
    return s


class Series:
    def __init__(self, data, index=None):
        if isinstance(data, pd.Series):
            self.s = data
        else:
            arr = np.asarray(data)
            self.s = pd.Series(arr, index=index)
            if arr.dtype.kind == "f":
                # NaN stays NaN inside a Float64 array (not NA), like cuDF before nans_to_nulls
                self.s = pd.Series(pd.array(arr, dtype="Float64"), index=index)
                self.s[np.isnan(arr)] = np.nan

    # arithmetic
    def _op(self, other, f):
        return Series(f(self.s, _un(other)))

    __add__ = lambda a, b: a._op(b, lambda x, y: x + y)
    __radd__ = lambda a, b: a._op(b, lambda x, y: y + x)
    __sub__ = lambda a, b: a._op(b, lambda x, y: x - y)
    __rsub__ = lambda a, b: a._op(b, lambda x, y: y - x)
    __mul__ = lambda a, b: a._op(b, lambda x, y: x * y)
    __rmul__ = lambda a, b: a._op(b, lambda x, y: y * x)
    __truediv__ = lambda a, b: a._op(b, lambda x, y: x / y)
    __gt__ = lambda a, b: a._op(b, lambda x, y: x > y)
    __lt__ = lambda a, b: a._op(b, lambda x, y: x < y)
    __ge__ = lambda a, b: a._op(b, lambda x, y: x >= y)
    __le__ = lambda a, b: a._op(b, lambda x, y: x <= y)
    __eq__ = lambda a, b: a._op(b, lambda x, y: x == y)
    __ne__ = lambda a, b: a._op(b, lambda x, y: x != y)
    __and__ = lambda a, b: a._op(b, lambda x, y: x & y)

    def __invert__(self):
        return Series(~self.s)

    def __neg__(self):
        return Series(-self.s)

    def __len__(self):
        return len(self.s)

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        args = [_un(i) for i in inputs]
        with np.errstate(all="ignore"):
            return Series(getattr(ufunc, method)(*args, **kw))

    @property
    def index(self):
        return self.s.index

    @property
    def values(self):
        s = self.s
        if s.isna().any():
            raise ValueError("cuDF .values on a column with nulls")
        return s.to_numpy(dtype=float if s.dtype.kind == "f" or str(s.dtype) == "Float64" else None)

    @property
    def dt(self):
        class _DT:
            days = Series(_nullable(self.s.dt.days.astype(float)))

        return _DT()

    def abs(self):
        return Series(self.s.abs())

    def shift(self, n):
        return Series(self.s.shift(n))

    def notna(self):
        return Series(self.s.notna())

    def fillna(self, v):
        return Series(self.s.fillna(v))

    def where(self, cond, other=None):
        c = _un(cond)
        if isinstance(c, pd.Series) and c.isna().any():
            raise ValueError("cond with nulls")
        c = c.astype(bool) if isinstance(c, pd.Series) else c
        o = _un(other)
        if o is None:
            return Series(self.s.where(c))
        return Series(self.s.where(c, o))

    def nans_to_nulls(self):
        s = self.s.copy()
        if str(s.dtype) == "Float64":
            arr = s.array
            nan = np.isnan(arr.to_numpy(dtype=float, na_value=0.0)) & ~arr.isna()
            s[nan] = pd.NA
        return Series(s)

    def astype(self, t):
        if t == "int8":
            return Series(self.s.astype("Int8"))
        if t == "float64":
            return Series(self.s.astype("Float64"))
        return Series(self.s.astype(t))

    def clip(self, lo, hi):
        return Series(self.s.clip(lo, hi))

    def rolling(self, window, min_periods):
        # exact per-window statistics, as libcudf computes each window on its own
        from numpy.lib.stride_tricks import sliding_window_view

        x = self.s.to_numpy(dtype=float, na_value=np.nan)

        def stat(fn, ddof=None):
            out = np.full(len(x), np.nan)
            if len(x) >= window:
                v = sliding_window_view(x, window)
                ok = (~np.isnan(v)).sum(axis=1) >= min_periods
                with np.errstate(all="ignore"):
                    r = fn(v) if ddof is None else fn(v, ddof)
                out[window - 1 :] = np.where(ok, r, np.nan)
            arr = pd.array(out, dtype="Float64")
            arr[np.isnan(out)] = pd.NA
            return Series(pd.Series(arr))

        class R:
            def mean(self2):
                return stat(lambda v: np.nanmean(v, axis=1))

            def std(self2, ddof=1):
                return stat(lambda v, d: np.nanstd(v, axis=1, ddof=d), ddof)

            def sum(self2):
                return stat(lambda v: np.nansum(v, axis=1))

        return R()


class _G:
    def __init__(self, g):
        self.g = g

    def rank(self, method, pct, na_option):
        return Series(self.g.rank(method=method, pct=pct, na_option=na_option).astype("Float64"))

    def transform(self, name):
        return Series(self.g.transform(name).astype("Float64"))


class DataFrame:
    def __init__(self, df):
        self.df = df

    @property
    def columns(self):
        return list(self.df.columns)

    @classmethod
    def from_arrow(cls, table):
        df = table.to_pandas()
        for c in df.columns:
            df[c] = _nullable(df[c])
        return cls(df)

    def __len__(self):
        return len(self.df)

    def __getitem__(self, k):
        if isinstance(k, list):
            return DataFrame(self.df[k])
        return Series(self.df[k])

    def __setitem__(self, k, v):
        self.df[k] = _un(v)

    def copy(self, deep=False):
        return DataFrame(self.df.copy(deep=deep))

    def take(self, indices):
        # like cuDF (and pandas): the taken rows keep their index labels
        return DataFrame(self.df.take(np.asarray(indices)))

    def reset_index(self, drop=False):
        return DataFrame(self.df.reset_index(drop=drop))

    def groupby(self, by, sort=False, dropna=False):
        gb = self.df.groupby(by, sort=sort, dropna=dropna)

        class GB:
            def __getitem__(self2, col):
                return _G(gb[col])

        return GB()

    def to_arrow(self):
        # cuDF's default: a RangeIndex is metadata only, any other index becomes a column
        return pa.Table.from_pandas(self.df, preserve_index=None)


# ---------------------------------------------------------------- the stand-in (CuPy, RMM subset)
class _RawKernel:
    """The EMA scan of engine_gpu._EMA_KERNEL_SRC, one segment at a time, in Python."""

    def __init__(self, src: str, name: str) -> None:
        assert name in src

    def __call__(self, grid, block, args) -> None:
        x, valid, starts, ends, resumes, state, state_valid, nseg, alpha, out, carried = args
        for i in range(int(nseg)):
            have, y = False, 0.0
            first = int(starts[i])
            if resumes[i]:
                have, y = bool(state_valid[first]), state[first]
                out[first] = carried[first] = y if have else np.nan
                first += 1
            for t in range(first, int(ends[i])):
                if valid[t]:
                    y = (1.0 - alpha) * y + alpha * x[t] if have else x[t]
                    have = True
                    out[t] = y
                else:
                    out[t] = np.nan
                carried[t] = y if have else np.nan


def fake_modules() -> dict[str, types.ModuleType]:
    cudf = types.ModuleType("cudf")
    cudf.Series, cudf.DataFrame = Series, DataFrame
    cupy = types.ModuleType("cupy")
    for name in ("int64", "int32", "uint8", "float64", "empty", "concatenate", "asarray"):
        setattr(cupy, name, getattr(np, name))
    cupy.flatnonzero = lambda a: np.flatnonzero(np.asarray(a, dtype=bool))
    cupy.RawKernel = _RawKernel
    runtime = types.SimpleNamespace(
        CUDARuntimeError=RuntimeError, getDeviceCount=lambda: 1, memGetInfo=lambda: (79 * 10**9, 80 * 10**9)
    )
    cupy.cuda = types.SimpleNamespace(runtime=runtime, set_allocator=lambda a: None)
    rmm = types.ModuleType("rmm")
    rmm.reinitialize = lambda **kw: None
    allocators = types.ModuleType("rmm.allocators")
    allocators_cupy = types.ModuleType("rmm.allocators.cupy")
    allocators_cupy.rmm_cupy_allocator = None
    return {
        "cudf": cudf,
        "cupy": cupy,
        "rmm": rmm,
        "rmm.allocators": allocators,
        "rmm.allocators.cupy": allocators_cupy,
    }


def install(mp: pytest.MonkeyPatch) -> None:
    """Make ``import cudf``/``cupy``/``rmm`` give the stand-in, and forget any RMM pool, for ``mp``'s scope."""
    for name, module in fake_modules().items():
        mp.setitem(sys.modules, name, module)
    mp.setattr(engine_gpu, "_POOL", None)
