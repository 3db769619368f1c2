"""Compiled per-code series kernels of the CPU engine: EMAs that resume from a checkpoint, and
trailing windows whose every value depends on its own window only.

Both serve the bounded daily run (:mod:`gogooku3.features.checkpoint`): a build that reads only
the look-back the catalogue needs, and starts each code from its checkpoint, must give the same
bits as a build over the whole history.

* **EMA** (``adjust=False``, nulls skipped): ``y = (1 - a) * y_prev + a * x``, the GPU kernel's
  arithmetic. A code's slice that starts at ``obs_count`` > 1 is a continuation: its first row is
  the checkpoint row, whose ``state`` value is the EMA's state after that row (null: no value yet),
  and the scan resumes from it.
* **Trailing sum and mean** over ``w`` rows: a running kernel (add the new row, take away the old)
  would give last bits that depend on where it started. Here the window ``[a-w+1, a]`` (``a`` the
  row's index in its code's whole history, ``obs_count - 1``) is split at the block boundary
  ``b = a - a % w`` into a suffix sum of the previous block and a prefix sum of the current one;
  both are summed in a fixed order from their block's boundary, so a value depends on its window's
  rows and ``a`` only, and each row is added twice.
* **Trailing standard deviation** (ddof=1): the window's mean as above, then a pass over the
  squared deviations from it (four accumulators, in a fixed order), which keeps the precision of a
  window whose spread is small against its level (a price window).

A window value is null until the code's slice has ``w`` rows, or when any row in it is null (the
``min_samples = w`` rule). Rows are sorted by (code_id, Date); a slice is a run of one code_id.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import polars as pl

Stat = Literal["sum", "mean", "std"]
STATS: tuple[Stat, ...] = ("sum", "mean", "std")


@functools.cache
def _kernels() -> dict[str, Any]:
    """The compiled kernels (numba, compiled on first use: importing this module stays cheap)."""
    import numba

    @numba.njit(nogil=True)
    def ema(x, valid, code, obs, state, state_valid, alpha, out):  # noqa: ANN001, ANN202
        y = 0.0
        have = False
        for t in range(x.size):
            if t == 0 or code[t] != code[t - 1]:
                have = False
                if obs[t] > 1:  # a continuation: the checkpoint row carries the state after it
                    have = state_valid[t]
                    y = state[t]
                    out[t] = y if have else np.nan
                    continue
            if valid[t]:
                y = (1.0 - alpha) * y + alpha * x[t] if have else x[t]
                have = True
                out[t] = y
            else:
                out[t] = np.nan

    @numba.njit(nogil=True)
    def carried(y, valid, code, out):  # noqa: ANN001, ANN202
        last = np.nan
        for t in range(y.size):
            if t == 0 or code[t] != code[t - 1]:
                last = np.nan
            if valid[t]:
                last = y[t]
            out[t] = last

    @numba.njit(nogil=True)
    def block_sums(x, valid, code, obs, w, mean, out):  # noqa: ANN001, ANN202
        n = x.size
        prefix = np.empty(n)
        suffix = np.empty(n)
        start = 0
        while start < n:
            end = start + 1
            while end < n and code[end] == code[start]:
                end += 1
            # prefix sums from each block's first row (blocks of w rows of the code's whole history)
            acc = 0.0
            for t in range(start, end):
                if t == start or (obs[t] - 1) % w == 0:
                    acc = 0.0
                acc += x[t] if valid[t] else 0.0
                prefix[t] = acc
            # suffix sums to each block's last row
            acc = 0.0
            for t in range(end - 1, start - 1, -1):
                if t == end - 1 or (obs[t] - 1) % w == w - 1:
                    acc = 0.0
                acc += x[t] if valid[t] else 0.0
                suffix[t] = acc
            missing = 0
            for t in range(start, end):
                missing += 0 if valid[t] else 1
                if t - start >= w:
                    missing -= 0 if valid[t - w] else 1
                if t - start < w - 1 or missing > 0:
                    out[t] = np.nan
                    continue
                a = obs[t] - 1
                s = prefix[t] if a % w == w - 1 else suffix[t - w + 1] + prefix[t]
                out[t] = s / w if mean else s
            start = end

    @numba.njit(nogil=True)
    def deviations(x, mean, w, out):  # noqa: ANN001, ANN202
        # the second pass of a standard deviation: ``mean`` is the window's (null: no value)
        for t in range(x.size):
            m = mean[t]
            if np.isnan(m):
                out[t] = np.nan
                continue
            lo = t - w + 1
            tail = lo + w - w % 4
            a0 = a1 = a2 = a3 = 0.0
            for j in range(lo, tail, 4):
                d0 = x[j] - m
                d1 = x[j + 1] - m
                d2 = x[j + 2] - m
                d3 = x[j + 3] - m
                a0 += d0 * d0
                a1 += d1 * d1
                a2 += d2 * d2
                a3 += d3 * d3
            for j in range(tail, t + 1):
                d0 = x[j] - m
                a0 += d0 * d0
            out[t] = np.sqrt(((a0 + a1) + (a2 + a3)) / (w - 1))

    return {"ema": ema, "carried": carried, "block_sums": block_sums, "deviations": deviations}


def _arrays(s: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64 with 0 for nulls, validity) of one column."""
    valid = s.is_not_null().to_numpy()
    return s.cast(pl.Float64).fill_null(0.0).to_numpy(), valid


def _keys(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame["code_id"].to_numpy(), frame["obs_count"].cast(pl.Int64).to_numpy()


def _result(out: np.ndarray) -> pl.Series:
    return pl.Series(out, nan_to_null=True)


def ema_values(
    x: pl.Series, code: np.ndarray, obs: np.ndarray, alpha: float, state: pl.Series | None = None
) -> pl.Series:
    """Per-code EMA of ``x`` (see the module docstring); ``state`` is needed where a code's slice
    starts at ``obs`` > 1, and read only on those rows."""
    xs, valid = _arrays(x)
    if state is None:
        starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        resumed = starts[obs[starts] > 1]
        if resumed.size:
            raise ValueError(
                f"EMA: the slice of code_id {code[resumed[0]]} starts at obs_count {obs[resumed[0]]} "
                "(a continuation) but no checkpoint state was given"
            )
        sv, svalid = xs, valid  # never read: every slice starts at obs_count 1
    else:
        sv, svalid = _arrays(state)
    out = np.empty(xs.size)
    _kernels()["ema"](xs, valid, code, obs, sv, svalid, alpha, out)
    return _result(out)


def rolling_values(x: pl.Series, code: np.ndarray, obs: np.ndarray, window: int, stat: Stat) -> pl.Series:
    """Per-code trailing ``stat`` of ``x`` over ``window`` rows (see the module docstring)."""
    if stat not in STATS:
        raise ValueError(f"rolling stat {stat!r}: expected one of {', '.join(STATS)}")
    if window < 1 or (stat == "std" and window < 2):
        raise ValueError(
            f"rolling {stat} needs a window of at least {2 if stat == 'std' else 1}, got {window}"
        )
    xs, valid = _arrays(x)
    out = np.empty(xs.size)
    _kernels()["block_sums"](xs, valid, code, obs, window, stat != "sum", out)
    if stat == "std":
        mean, out = out, np.empty(xs.size)
        _kernels()["deviations"](xs, mean, window, out)
    return _result(out)


def carried_values(y: pl.Series, code: np.ndarray) -> pl.Series:
    """``y`` forward-filled within each code's slice: an EMA's state after each row."""
    ys, valid = _arrays(y)
    out = np.empty(ys.size)
    _kernels()["carried"](ys, valid, code, out)
    return _result(out)


# ---------------------------------------------------------------- as Polars expressions


def _over_slices(fn: Any, *columns: pl.Expr) -> pl.Expr:
    """Apply ``fn(frame)`` to the whole columns (code_id, obs_count and ``columns`` as x, state)."""
    names = ["x", "state"][: len(columns)]
    fields = [
        pl.col("code_id"),
        pl.col("obs_count"),
        *(c.alias(n) for c, n in zip(columns, names, strict=True)),
    ]
    return pl.struct(fields).map_batches(lambda s: fn(s.struct.unnest()), return_dtype=pl.Float64)


def ema_expr(x: pl.Expr, alpha: float, state: pl.Expr | None = None) -> pl.Expr:
    """:func:`ema_values` as an expression (the engine's ``ema`` op)."""

    def fn(frame: pl.DataFrame) -> pl.Series:
        return ema_values(frame["x"], *_keys(frame), alpha, frame["state"] if state is not None else None)

    return _over_slices(fn, x) if state is None else _over_slices(fn, x, state)


def rolling_expr(x: pl.Expr, window: int, stat: Stat) -> pl.Expr:
    """:func:`rolling_values` as an expression (the engine's ``rsum``/``rmean``/``rstd`` ops)."""
    return _over_slices(lambda frame: rolling_values(frame["x"], *_keys(frame), window, stat), x)


def carried_expr(y: pl.Expr) -> pl.Expr:
    """:func:`carried_values` as an expression (an EMA's checkpoint state)."""
    return _over_slices(lambda frame: carried_values(frame["x"], _keys(frame)[0]), y)
