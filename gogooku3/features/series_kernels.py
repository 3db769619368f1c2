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
* **Trailing standard deviation** (ddof=1): the same block sums of ``d = x - K`` and ``d * d``,
  with ``K`` the value on the first row of the window's last block (a row of the window, so ``d``
  is of the window's spread and the sum of squares does not cancel against its level; a flat
  window gives exactly 0).

A window value is null until the code's slice has ``w`` rows, or when any row in it is null (the
``min_samples = w`` rule). Rows are sorted by (code_id, Date); a slice is a run of one code_id. The
kernels take columns as float64 with NaN for null (one copy out of Polars), so a NaN input counts
as null; the engines' null rule makes every non-finite value null anyway.
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
    from gogooku3.features.compiled import kernel

    @kernel()
    def ema(x, code, obs, state, alpha, out):  # noqa: ANN001, ANN202
        # returns -1, or the first row of a continuation when no state was given (state is None)
        y = 0.0
        have = False
        for t in range(x.size):
            if t == 0 or code[t] != code[t - 1]:
                have = False
                if obs[t] > 1.0:  # a continuation: the checkpoint row carries the state after it
                    if state is None:
                        return t
                    y = state[t]
                    have = y == y
                    out[t] = y
                    continue
            v = x[t]
            if v == v:
                y = (1.0 - alpha) * y + alpha * v if have else v
                have = True
                out[t] = y
            else:
                out[t] = np.nan
        return -1

    @kernel()
    def carried(y, code, out):  # noqa: ANN001, ANN202
        last = np.nan
        for t in range(y.size):
            if t == 0 or code[t] != code[t - 1]:
                last = np.nan
            if y[t] == y[t]:
                last = y[t]
            out[t] = last

    @kernel()
    def block_window(x, code, obs, w, stat, out):  # noqa: ANN001, ANN202
        # block sums of d = x - K (and d * d for the std): K = 0 for a sum or mean; for the std,
        # the first row of the window's last block (a row of the window, so d is of the window's
        # spread and the squares do not cancel against its level). stat: 0 sum, 1 mean, 2 std.
        # Blocks are w rows of the code's whole history (aligned to obs_count); entering a block,
        # the suffix sums of the block before it (still in cache) go to a buffer of w + 1.
        n = x.size
        suffix1 = np.zeros(w + 1)
        suffix2 = np.zeros(w + 1)
        start = 0
        while start < n:
            end = start + 1
            while end < n and code[end] == code[start]:
                end += 1
            missing = 0
            t = start
            while t < end:
                first = t - (int(obs[t]) - 1) % w  # the block's first row (before ``start`` if cut)
                k = 0.0
                if stat == 2 and first >= start:
                    k = x[first]
                s1 = s2 = 0.0
                for p in range(w - 1, -1, -1):  # suffix sums of the block before, from its end
                    r = first - w + p
                    if r < start:
                        break
                    d = x[r] - k if x[r] == x[r] else 0.0
                    s1 += d
                    suffix1[p] = s1
                    if stat == 2:
                        s2 += d * d
                        suffix2[p] = s2
                p1 = p2 = 0.0
                stop = min(first + w, end)
                for u in range(t, stop):
                    v = x[u]
                    if v == v:
                        d = v - k
                        p1 += d
                        p2 += d * d
                    else:
                        missing += 1
                    if u - start >= w and x[u - w] != x[u - w]:
                        missing -= 1
                    if u - start < w - 1 or missing > 0:
                        out[u] = np.nan
                        continue
                    pos = u - first
                    a1 = p1 if pos == w - 1 else suffix1[pos + 1] + p1
                    if stat == 0:
                        out[u] = a1
                    elif stat == 1:
                        out[u] = a1 / w
                    else:
                        a2 = p2 if pos == w - 1 else suffix2[pos + 1] + p2
                        out[u] = np.sqrt(max(a2 - a1 * a1 / w, 0.0) / (w - 1))
                t = stop
            start = end

    return {"ema": ema, "carried": carried, "block_window": block_window}


def _values(s: pl.Series) -> np.ndarray:
    """One column as float64 with NaN for nulls (the kernels' null). Filling the nulls in Polars
    first is 3x faster than ``to_numpy`` on a column with nulls, and the conversion holds the GIL."""
    return s.cast(pl.Float64).fill_null(np.nan).to_numpy()


def _keys(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame["code_id"].to_numpy(), _values(frame["obs_count"])


def _result(out: np.ndarray) -> pl.Series:
    return pl.Series(out, nan_to_null=True)


def ema_values(
    x: pl.Series, code: np.ndarray, obs: np.ndarray, alpha: float, state: pl.Series | None = None
) -> pl.Series:
    """Per-code EMA of ``x`` (see the module docstring); ``state`` is needed where a code's slice
    starts at ``obs`` > 1, and read only on those rows."""
    xs = _values(x)
    out = np.empty(xs.size)
    first = _kernels()["ema"](xs, code, obs, None if state is None else _values(state), alpha, out)
    if first >= 0:
        raise ValueError(
            f"EMA: the slice of code_id {code[first]} starts at obs_count {obs[first]} "
            "(a continuation) but no checkpoint state was given"
        )
    return _result(out)


def rolling_values(x: pl.Series, code: np.ndarray, obs: np.ndarray, window: int, stat: Stat) -> pl.Series:
    """Per-code trailing ``stat`` of ``x`` over ``window`` rows (see the module docstring)."""
    if stat not in STATS:
        raise ValueError(f"rolling stat {stat!r}: expected one of {', '.join(STATS)}")
    if window < 1 or (stat == "std" and window < 2):
        raise ValueError(
            f"rolling {stat} needs a window of at least {2 if stat == 'std' else 1}, got {window}"
        )
    xs = _values(x)
    out = np.empty(xs.size)
    _kernels()["block_window"](xs, code, obs, window, STATS.index(stat), out)
    return _result(out)


def carried_values(y: pl.Series, code: np.ndarray) -> pl.Series:
    """``y`` forward-filled within each code's slice: an EMA's state after each row."""
    ys = _values(y)
    out = np.empty(ys.size)
    _kernels()["carried"](ys, code, out)
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
