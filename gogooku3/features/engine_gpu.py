"""GPU engine: compile the catalogue to cuDF/CuPy operations (RAPIDS), imported only when called.

Same contract as :mod:`gogooku3.features.engine_cpu` (the parity test compares every column).
Each feature's column is its op's cuDF implementation in the operation table
(:data:`gogooku3.features.ops.OPERATIONS`), evaluated on a :class:`_Frame`:

* per-code window ops run over the whole column of rows sorted by (Code, Date) and null the rows
  whose window would reach into the previous code (``obs_count`` < window) - no groupby-rolling;
* EMAs: cuDF has no grouped EWM (``NotImplementedError``), so :data:`_EMA_KERNEL_SRC` scans each
  code's contiguous segment in one CUDA thread (``adjust=False``, nulls skipped, the CPU kernel's
  arithmetic), resuming from the checkpoint's state where a segment starts after the code's first
  row, and keeps each EMA's state after every row for the checkpoint;
* cross-sections use ``groupby(...).transform`` / ``groupby(...).rank`` over the whole panel (on
  the device a group-by is cheap, so the CPU engine's reorder-first plan buys nothing here);
* the output rows are gathered into the CPU engine's day order
  (:func:`~gogooku3.features.reorder.date_order`) on the device before they travel back.

Memory: :func:`init_rmm_pool` sizes an RMM pool from ``RMM_POOL_SIZE`` (``70GB``, ``64GiB`` ...)
or, unset, from the device (87.5% of its memory: 70 GB on an 80 GB A100), and refuses a request
larger than the free device memory before any work starts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

import polars as pl

from gogooku3.config import parse_size
from gogooku3.features.catalogue import FEATURES, LAYERS
from gogooku3.features.checkpoint import CHECKPOINT_COLUMNS, state_column
from gogooku3.features.prepare import KEY_COLUMNS
from gogooku3.features.reorder import date_order
from gogooku3.features.spec import Feature
from gogooku3.redaction import library_logger

log = library_logger(__name__)

#: Share of device memory the pool takes when RMM_POOL_SIZE is unset (70 GB of 80 GB).
DEFAULT_POOL_FRACTION = 0.875
_POOL_ALIGN = 256 * 2**20

_EMA_KERNEL_SRC = r"""
extern "C" __global__ void ema_scan(const double* x, const unsigned char* valid, const long long* starts,
                                    const long long* ends, const unsigned char* resumes, const double* state,
                                    const unsigned char* state_valid, const int nseg, const double alpha,
                                    double* out, double* carried) {
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= nseg) return;
    double y = 0.0;
    bool have = false;
    const double nan = __longlong_as_double(0x7ff8000000000000ULL);
    long long t = starts[i];
    if (resumes[i]) {  // a continuation: the checkpoint row carries the state after it
        have = state_valid[t];
        y = state[t];
        out[t] = have ? y : nan;
        carried[t] = out[t];
        ++t;
    }
    for (; t < ends[i]; ++t) {
        if (valid[t]) {
            y = have ? (1.0 - alpha) * y + alpha * x[t] : x[t];
            have = true;
            out[t] = y;
        } else {
            out[t] = nan;
        }
        carried[t] = have ? y : nan;
    }
}
"""


class GpuUnavailableError(RuntimeError):
    """engine='gpu' was asked for where RAPIDS (cuDF, CuPy, RMM) or an NVIDIA GPU is missing."""


class GpuMemoryConfigError(ValueError):
    """RMM_POOL_SIZE cannot be honoured (not a size, or more than the device has free)."""


def _import_rapids() -> tuple[Any, Any]:
    try:
        import cudf
        import cupy
    except Exception as e:  # ImportError, or a CUDA driver error raised at import
        raise GpuUnavailableError(
            "engine='gpu' needs RAPIDS cuDF + CuPy (cudf-cu12/cu13) and an NVIDIA GPU with a working driver; "
            f"import failed: {type(e).__name__}: {e}. Use engine='cpu' (Polars) on this machine."
        ) from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise GpuUnavailableError("engine='gpu': no CUDA device is visible (CUDA_VISIBLE_DEVICES?)")
    except cupy.cuda.runtime.CUDARuntimeError as e:
        raise GpuUnavailableError(f"engine='gpu': CUDA runtime error: {e}") from None
    return cudf, cupy


def pool_size_bytes(
    env: dict[str, str] | None = None, *, total: int, free: int, requested: int | None = None
) -> int:
    """Bytes for the RMM pool: ``requested`` (e.g. ``Settings.rmm_pool_size``), else ``RMM_POOL_SIZE``,
    else 87.5% of ``total`` (aligned down to 256 MiB).

    Raises :class:`GpuMemoryConfigError` if the request exceeds ``free`` device memory, so a bad
    setting fails before any work instead of as an out-of-memory crash halfway.
    """
    env = os.environ if env is None else env
    text = (env.get("RMM_POOL_SIZE") or "").strip()
    if requested is not None:
        size, origin = int(requested), f"requested {requested} bytes"
    elif text:
        try:
            size = parse_size(text, name="RMM_POOL_SIZE")
        except ValueError as e:
            raise GpuMemoryConfigError(str(e)) from None
        origin = f"RMM_POOL_SIZE={text}"
    else:
        size = int(total * DEFAULT_POOL_FRACTION)
        origin = f"default {DEFAULT_POOL_FRACTION:.1%} of {total / 1e9:.1f} GB"
    size = size // _POOL_ALIGN * _POOL_ALIGN
    if size <= 0:
        raise GpuMemoryConfigError(f"RMM pool size from {origin} is below 256 MiB")
    if size > free:
        raise GpuMemoryConfigError(
            f"RMM pool of {size / 1e9:.1f} GB ({origin}) does not fit: the GPU has {free / 1e9:.1f} GB free "
            f"of {total / 1e9:.1f} GB; set RMM_POOL_SIZE lower (e.g. {int(free * 0.9) // 10**9}GB)"
        )
    return size


_POOL: int | None = None


def init_rmm_pool(env: dict[str, str] | None = None, requested: int | None = None) -> int:
    """Create the RMM pool once per process (and route CuPy through it); returns its size in bytes."""
    global _POOL
    if _POOL is not None:
        return _POOL
    _, cupy = _import_rapids()
    import rmm

    free, total = cupy.cuda.runtime.memGetInfo()
    size = pool_size_bytes(env, total=total, free=free, requested=requested)
    rmm.reinitialize(pool_allocator=True, initial_pool_size=size)
    try:
        from rmm.allocators.cupy import rmm_cupy_allocator
    except ImportError:  # older RMM
        rmm_cupy_allocator = rmm.rmm_cupy_allocator
    cupy.cuda.set_allocator(rmm_cupy_allocator)
    _POOL = size
    log.info("features[gpu]: RMM pool %.1f GB (device total %.1f GB)", size / 1e9, total / 1e9)
    return size


class _Frame:
    """A cudf.DataFrame sorted by (Code, Date) and what the ops' cuDF implementations use of it
    (:class:`gogooku3.features.ops.CudfFrame`): NumPy for ufuncs, ``obs_count``, the sector mask,
    the per-code EMA scan and group-bys."""

    def __init__(self, cudf: Any, cupy: Any, df: Any, *, keep_states: bool = False) -> None:
        import numpy as np

        self.cudf, self.cp, self.np, self.df = cudf, cupy, np, df
        self.obs = df["obs_count"]
        code = df["code_id"].values
        first = cupy.flatnonzero(cupy.concatenate([cupy.asarray([True]), code[1:] != code[:-1]]))
        self.starts = first.astype(cupy.int64)
        self.ends = cupy.concatenate([first[1:], cupy.asarray([len(df)])]).astype(cupy.int64)
        # a code's slice that starts after its first row resumes from the checkpoint's state
        self.resumes = (self.obs.values[self.starts] > 1).astype(cupy.uint8)
        self._kernel = cupy.RawKernel(_EMA_KERNEL_SRC, "ema_scan")
        self.sector_ok = df["date_sector"].notna()
        #: state column -> each stateful feature's state after every row, kept only for a
        #: checkpoint (``keep_states``): otherwise 14 device columns would live through the build
        self.keep_states = keep_states
        self.states: dict[str, Any] = {}

    def ema(self, s: Any, f: Feature) -> Any:
        cp = self.cp
        x = s.astype("float64").fillna(0.0).values
        valid = s.notna().values.astype(cp.uint8)
        name = state_column(f.name)
        if name in self.df.columns:
            state = self.df[name]
            sv, svalid = state.astype("float64").fillna(0.0).values, state.notna().values.astype(cp.uint8)
        elif bool(self.resumes.any()):
            raise ValueError(
                f"EMA {f.name}: a code's rows start after its first row (obs_count > 1) but the panel "
                f"has no checkpoint state column {name!r}"
            )
        else:
            sv, svalid = x, valid  # never read: no code resumes
        out = cp.empty(len(s), dtype=cp.float64)
        carried = cp.empty(len(s), dtype=cp.float64)
        nseg = int(self.starts.size)
        threads = 128
        self._kernel(
            ((nseg + threads - 1) // threads,),
            (threads,),
            (
                x,
                valid,
                self.starts,
                self.ends,
                self.resumes,
                sv,
                svalid,
                cp.int32(nseg),
                cp.float64(f.ema_alpha()),
                out,
                carried,
            ),
        )
        if self.keep_states:
            self.states[name] = self.cudf.Series(carried, index=s.index).nans_to_nulls()
        return self.cudf.Series(out, index=s.index).nans_to_nulls()

    def group(self, x: Any, by: list[str]) -> Any:
        frame = self.df[by].copy(deep=False)
        frame["_x"] = x
        return frame.groupby(by, sort=False, dropna=False)["_x"]

    def evaluate(self, f: Feature) -> Any:
        """The feature's column: its op's cuDF implementation in the operation table."""
        return f.operation.cudf(self, f, *(self.df[c] for c in f.inputs))


def compute_features_gpu(
    panel: pl.DataFrame,
    *,
    start: dt.date | None = None,
    carry: Sequence[str] = (),
    rmm_pool_size: int | None = None,
    states: bool = False,
) -> pl.DataFrame:
    """Same output as :func:`gogooku3.features.engine_cpu.compute_features`, computed on the GPU.

    Everything runs on the device in the panel's (Code, Date) order (cross-sections through
    cuDF group-bys); the output rows (dated >= ``start``, in day order) are gathered on
    the device and only they travel back.
    """
    cudf, cupy = _import_rapids()
    init_rmm_pool(requested=rmm_pool_size)
    outputs = [f.name for f in FEATURES if f.output]
    # Only numbers go to the device: the string keys stay on the host and are re-attached by row
    # position (the GPU frame keeps the panel's row order). Dates travel as ms timestamps.
    numeric = [c for c, t in panel.schema.items() if t != pl.String]
    shipped = panel.select(
        pl.col(c).cast(pl.Datetime("ms")) if panel.schema[c] == pl.Date else pl.col(c) for c in numeric
    )
    df = cudf.DataFrame.from_arrow(shipped.to_arrow())
    del shipped
    frame = _Frame(cudf, cupy, df, keep_states=states)
    for layer in LAYERS:
        for f in layer:
            s = frame.evaluate(f)
            df[f.name] = s.astype("int8") if f.dtype == "Int8" else s.astype("float64")
    checkpoint = CHECKPOINT_COLUMNS if states else ()
    for name, column in frame.states.items():
        df[name] = column
    order = date_order(panel, start)
    # take() keeps the taken rows' index labels; a non-range index would travel back as a column
    picked = df[[*carry, *checkpoint, *outputs]].take(cupy.asarray(order.rows)).reset_index(drop=True)
    del df, frame
    result = pl.from_arrow(picked.to_arrow())
    del picked
    result = result.with_columns(f.stored for f in FEATURES if f.output)
    keys = order.gather(panel.select(KEY_COLUMNS)).with_columns(pl.col("Date").set_sorted())
    return pl.concat([keys, result], how="horizontal")
