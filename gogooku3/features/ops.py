"""The operation table: every feature op, defined once, for both engines.

:data:`OPERATIONS` maps an op name to its :class:`Op`: grouping, arity and meaning (the contract,
see :mod:`gogooku3.features.spec` for the grouping and null rules), its :class:`Lookback` rule
(how far back in a code's history it reads, and the rows it adds before it is mature), its Polars
implementation and its cuDF implementation. :class:`~gogooku3.features.spec.Feature`, the
catalogue (``lookback``, ``min_history``, ``dtype``, validation) and both engines read this
table; neither engine names an op.

* ``polars(f, *xs)`` gets the feature and one ``pl.col`` expression per input and returns the
  (unnamed) expression, for the rows the engine's phase provides: rows sorted by (Code, Date) for
  ``code``/``row`` ops, and day order with the ``_sector_slice`` key for cross-sections
  (:mod:`gogooku3.features.engine_cpu`).
* ``cudf(d, f, *xs)`` gets a :class:`CudfFrame` (the GPU engine's frame and helpers), the feature
  and one cuDF Series per input, in (Code, Date) order (:mod:`gogooku3.features.engine_gpu`).

This module imports Polars only: the cuDF implementations call methods of the objects they are
handed, and RAPIDS is imported by the GPU engine when it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import polars as pl

from gogooku3.features.series_kernels import Stat, ema_expr, rolling_expr
from gogooku3.features.slice_kernels import Stat as SliceStat
from gogooku3.features.slice_kernels import slice_expr

if TYPE_CHECKING:
    from gogooku3.features.spec import Feature

Grouping = Literal["code", "row", "date", "date_sector"]

#: Relative tolerance of the comparison ops. Two EMAs of a flat price converge to the same value up
#: to the last bit, and which side of it they land on depends on rounding: without a tolerance,
#: such near-ties would make flags flip between engines (and between summation orders).
COMPARE_TOL = 1e-9

#: Cross-section phase of the CPU engine only: the (day, sector) slice key, never null (rows without
#: a sector form one more slice at the end of their day) and flagged sorted, so ``.over`` aggregates
#: slices. :func:`gogooku3.features.engine_cpu.compute_cross_sections_lazy` adds it.
SECTOR_SLICE = "_sector_slice"


# ---------------------------------------------------------------------------- the table's shape


@dataclass(frozen=True)
class Lookback:
    """How much of its code's own history an op reads, in terms of the feature's window ``w``.

    ``reads_history=False``: the op reads its own row only (element-wise, or the date's
    cross-section), whatever its window says. Otherwise it reads ``w`` rows back
    (:attr:`Feature.lookback <gogooku3.features.spec.Feature.lookback>`) and adds
    ``w + mature_offset`` rows to its inputs' :func:`~gogooku3.features.catalogue.min_history`.
    """

    name: str
    meaning: str
    reads_history: bool
    mature_offset: int = 0
    window_required: bool = False

    def rows_read(self, window: int | None) -> int:
        """Rows of the code's history the op reads back (``Feature.lookback``)."""
        return (window or 0) if self.reads_history else 0

    def rows_added(self, window: int | None) -> int:
        """Rows the op adds to the ``min_history`` of its inputs."""
        return (window or 0) + self.mature_offset if self.reads_history else 0


OWN_ROW = Lookback("own_row", "reads its own row only (or the date's cross-section)", False)
LAG = Lookback("lag", "reads x[t-w]: mature w rows after its input", True, 0, window_required=True)
TRAILING = Lookback(
    "trailing",
    "a window x[t-w+1..t]: w rows, mature w - 1 rows after its input",
    True,
    -1,
    window_required=True,
)
SPAN = Lookback("span", "an EMA of span w, counted mature after w rows (w - 1 after its input)", True, -1)


class CudfFrame(Protocol):
    """What the cuDF implementations use of the GPU engine's frame (rows sorted by Code, Date)."""

    np: Any  #: NumPy, for ufuncs on cuDF Series (``np.log``, ``np.sqrt`` ...)
    df: Any  #: the cudf.DataFrame
    obs: Any  #: its ``obs_count`` column (1 on a code's first row)
    sector_ok: Any  #: ``date_sector`` is not null

    def ema(self, s: Any, f: Feature) -> Any:
        """Per-code EMA of feature ``f``, adjust=False, nulls skipped (the scan kernel), resumed
        from the frame's checkpoint state column where a code starts at ``obs_count`` > 1."""
        ...

    def group(self, x: Any, by: list[str]) -> Any:
        """``x`` grouped by the frame's ``by`` columns (``groupby(...)[x]``, nulls a group)."""
        ...


@dataclass(frozen=True)
class Op:
    """One feature operation: the contract and both engines' implementations."""

    name: str
    grouping: Grouping
    arity: int  #: number of inputs, or -1 for "one or more"
    meaning: str  #: the contract both engines implement; ``w`` is the window, ``x, y`` the inputs
    lookback: Lookback
    polars: Callable[..., pl.Expr]  #: ``(feature, *input expressions) -> pl.Expr``
    cudf: Callable[..., Any]  #: ``(CudfFrame, feature, *input Series) -> Series``
    flag: bool = False  #: an ``Int8`` 0/1 flag (else ``Float64``)
    #: carries a state from row to row (the EMA): a checkpoint keeps it, and a build that starts a
    #: code after its first row resumes from it; ``polars`` then takes ``state=`` (the state
    #: column, or None) and ``CudfFrame.ema`` reads it from the frame
    stateful: bool = False
    #: the Polars implementation is a compiled kernel (a Python function to Polars): the CPU engine
    #: evaluates a layer's kernels in a step of their own, before its native expressions (in one
    #: step together they took ~1.7x as long, measured at the bench panel)
    kernel: bool = False


def _table(*ops: Op) -> dict[str, Op]:
    table: dict[str, Op] = {}
    for op in ops:
        if op.name in table:
            raise ValueError(f"op {op.name!r} is defined twice")
        if (op.grouping == "code") != op.lookback.reads_history:
            raise ValueError(f"op {op.name!r}: only per-code (grouping 'code') ops read history")
        table[op.name] = op
    return table


# ---------------------------------------------------------------------------- shared helpers

_OBS = pl.col("obs_count")


def _finite(e: pl.Expr) -> pl.Expr:
    return pl.when(e.is_finite()).then(e)


def _flag(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.Int8)


def _cu_finite(s: Any) -> Any:
    s = s.nans_to_nulls()
    return s.where((s.abs() != math.inf).fillna(False))


def _cu_keep(s: Any, cond: Any) -> Any:
    return s.where(cond.fillna(False))


def _cu_flag(cond: Any) -> Any:
    return cond.astype("int8")


# per-code windows: the CPU engine's rolling windows and EMAs are compiled kernels over each
# code's slice (gogooku3.features.series_kernels: a value depends on its own window only, and an
# EMA resumes from a checkpoint); lags run over the whole column and null the rows whose lag
# reaches into the previous code; the GPU engine runs every window over the whole column and nulls
# the rows short of the window


def _pl_rolling(stat: Stat) -> Callable[..., pl.Expr]:
    def impl(f: Feature, x: pl.Expr) -> pl.Expr:
        return rolling_expr(x, f.window or 0, stat)

    return impl


def _pl_ema(f: Feature, x: pl.Expr, *, state: pl.Expr | None = None) -> pl.Expr:
    return ema_expr(x, f.ema_alpha(), state)


def _cu_rolling(stat: str) -> Callable[..., Any]:
    def impl(d: CudfFrame, f: Feature, x: Any) -> Any:
        w = f.window or 0
        r = x.rolling(window=w, min_periods=w)
        return _cu_keep(r.std(ddof=1) if stat == "std" else getattr(r, stat)(), d.obs >= w)

    return impl


def _pl_mul(f: Feature, *xs: pl.Expr) -> pl.Expr:
    e = xs[0]
    for other in xs[1:]:
        e = e * other
    return e.cast(pl.Float64)


def _cu_mul(d: CudfFrame, f: Feature, *xs: Any) -> Any:
    s = xs[0]
    for other in xs[1:]:
        s = s * other
    return s.astype("float64")


def _pl_extreme(horizontal: Callable[[Sequence[pl.Expr]], pl.Expr]) -> Callable[..., pl.Expr]:
    def impl(f: Feature, *xs: pl.Expr) -> pl.Expr:
        return pl.when(pl.all_horizontal([x.is_not_null() for x in xs])).then(horizontal(list(xs)))

    return impl


def _cu_extreme(better: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def impl(d: CudfFrame, f: Feature, *xs: Any) -> Any:
        s, present = xs[0], xs[0].notna()
        for other in xs[1:]:
            s = s.where(~better(other, s).fillna(False), other)
            present = present & other.notna()
        return s.where(present)

    return impl


# comparisons: x against the second input or params value, with a relative tolerance; a third
# input is ignored (arity -1 is "one or more")
_TESTS: dict[str, Callable[[Any, Any, Any], Any]] = {
    "gt": lambda x, y, tol: x > y + tol,
    "lt": lambda x, y, tol: x < y - tol,
    "ge": lambda x, y, tol: x >= y - tol,
    "le": lambda x, y, tol: x <= y + tol,
}


def _pl_compare(name: str) -> Callable[..., pl.Expr]:
    def impl(f: Feature, x: pl.Expr, *rest: pl.Expr) -> pl.Expr:
        y = rest[0] if rest else pl.lit(f.param("value"))
        return _flag(_TESTS[name](x, y, y.abs() * COMPARE_TOL))

    return impl


def _cu_compare(name: str) -> Callable[..., Any]:
    def impl(d: CudfFrame, f: Feature, x: Any, *rest: Any) -> Any:
        y = rest[0] if rest else f.param("value")
        tol = (y.abs() if rest else abs(y)) * COMPARE_TOL
        return _cu_flag(_TESTS[name](x, y, tol))

    return impl


# cross-sections: the CPU engine's rows are in day order, each day (and each day's sector) a
# contiguous slice, and its kernels take one slice at a time (gogooku3.features.slice_kernels);
# the GPU engine groups the whole panel


def _pl_sector(x: pl.Expr, stat: SliceStat) -> pl.Expr:
    """``stat`` over the (day, sector) slices, null for a row without a sector (which the slice key
    puts in one more slice at the end of its day)."""
    return pl.when(pl.col("date_sector").is_not_null()).then(slice_expr(x, SECTOR_SLICE, stat))


def _cu_z(d: CudfFrame, x: Any, by: list[str]) -> Any:
    g = d.group(x, by)
    mu, sd = g.transform("mean"), g.transform("std")
    # a constant group's z-score is null, though its rounded std may be ~1e-17, not 0
    varies = (g.transform("max") > g.transform("min")).fillna(False)
    return _cu_finite((x - mu) / sd).where(varies)


def _cu_cs_winsor(d: CudfFrame, f: Feature, x: Any) -> Any:
    g = d.group(x, ["Date"])
    mu, sd = g.transform("mean"), g.transform("std")
    k = f.param("k")
    hi, lo = mu + k * sd, mu - k * sd
    s = x.where(~(x > hi).fillna(False), hi)
    return s.where(~(x < lo).fillna(False), lo)


# ---------------------------------------------------------------------------- the table

#: op name -> :class:`Op`, the one definition of every op (see the module docstring).
OPERATIONS: dict[str, Op] = _table(
    # per-code time series
    Op(
        "shift",
        "code",
        1,
        "x[t-w]",
        LAG,
        polars=lambda f, x: pl.when(_OBS > f.window).then(x.shift(f.window)),
        cudf=lambda d, f, x: _cu_keep(x.shift(f.window), d.obs > f.window),
    ),
    Op(
        "pct_change",
        "code",
        1,
        "x[t] / x[t-w] - 1",
        LAG,
        polars=lambda f, x: pl.when(_OBS > f.window).then(_finite(x / x.shift(f.window) - 1.0)),
        cudf=lambda d, f, x: _cu_keep(_cu_finite(x / x.shift(f.window) - 1.0), d.obs > f.window),
    ),
    Op(
        "diff",
        "code",
        1,
        "x[t] - x[t-w]",
        LAG,
        polars=lambda f, x: pl.when(_OBS > f.window).then(x - x.shift(f.window)),
        cudf=lambda d, f, x: _cu_keep(x - x.shift(f.window), d.obs > f.window),
    ),
    Op(
        "rmean",
        "code",
        1,
        "mean of x[t-w+1..t] (null until w non-null values)",
        TRAILING,
        polars=_pl_rolling("mean"),
        cudf=_cu_rolling("mean"),
        kernel=True,
    ),
    Op(
        "rstd",
        "code",
        1,
        "sample std (ddof=1) of x[t-w+1..t]",
        TRAILING,
        polars=_pl_rolling("std"),
        cudf=_cu_rolling("std"),
        kernel=True,
    ),
    Op(
        "rsum",
        "code",
        1,
        "sum of x[t-w+1..t]",
        TRAILING,
        polars=_pl_rolling("sum"),
        cudf=_cu_rolling("sum"),
        kernel=True,
    ),
    Op(
        "ema",
        "code",
        1,
        "exponential moving average, adjust=False: y = a*x + (1-a)*y_prev, a = 2/(w+1) "
        "(or params alpha); null inputs give null and leave the state unchanged",
        SPAN,
        polars=_pl_ema,
        cudf=lambda d, f, x: d.ema(x, f),
        stateful=True,
        kernel=True,
    ),
    # element-wise
    Op(
        "copy",
        "row",
        1,
        "x (a base column published as a feature)",
        OWN_ROW,
        polars=lambda f, x: x,
        cudf=lambda d, f, x: x,
    ),
    Op("add", "row", 2, "x + y", OWN_ROW, polars=lambda f, x, y: x + y, cudf=lambda d, f, x, y: x + y),
    Op("sub", "row", 2, "x - y", OWN_ROW, polars=lambda f, x, y: x - y, cudf=lambda d, f, x, y: x - y),
    Op("mul", "row", -1, "product of the inputs", OWN_ROW, polars=_pl_mul, cudf=_cu_mul),
    Op(
        "div",
        "row",
        2,
        "x / y",
        OWN_ROW,
        polars=lambda f, x, y: _finite(x / y),
        cudf=lambda d, f, x, y: _cu_finite(x / y),
    ),
    Op(
        "ratio",
        "row",
        2,
        "x / y - 1",
        OWN_ROW,
        polars=lambda f, x, y: _finite(x / y - 1.0),
        cudf=lambda d, f, x, y: _cu_finite(x / y - 1.0),
    ),
    Op(
        "scale",
        "row",
        1,
        "k * x (params k)",
        OWN_ROW,
        polars=lambda f, x: x * f.param("k"),
        cudf=lambda d, f, x: x * f.param("k"),
    ),
    Op("abs", "row", 1, "|x|", OWN_ROW, polars=lambda f, x: x.abs(), cudf=lambda d, f, x: x.abs()),
    Op(
        "log",
        "row",
        1,
        "ln(x), null for x <= 0",
        OWN_ROW,
        polars=lambda f, x: pl.when(x > 0).then(x.log()),
        cudf=lambda d, f, x: _cu_finite(d.np.log(_cu_keep(x, x > 0))),
    ),
    Op(
        "log1p_abs",
        "row",
        1,
        "sign(x) * ln(1 + |x|)",
        OWN_ROW,
        polars=lambda f, x: x.sign() * x.abs().log1p(),
        cudf=lambda d, f, x: d.np.sign(x) * d.np.log1p(x.abs()),
    ),
    Op(
        "sqrt",
        "row",
        1,
        "sqrt(x), null for x < 0",
        OWN_ROW,
        polars=lambda f, x: pl.when(x >= 0).then(x.sqrt()),
        cudf=lambda d, f, x: d.np.sqrt(_cu_keep(x, x >= 0)),
    ),
    Op("square", "row", 1, "x * x", OWN_ROW, polars=lambda f, x: x * x, cudf=lambda d, f, x: x * x),
    Op(
        "pos",
        "row",
        1,
        "max(x, 0)",
        OWN_ROW,
        polars=lambda f, x: pl.when(x > 0).then(x).otherwise(pl.when(x.is_not_null()).then(0.0)),
        cudf=lambda d, f, x: x.where((x > 0).fillna(False), 0.0).where(x.notna()),
    ),
    Op(
        "negpart",
        "row",
        1,
        "max(-x, 0)",
        OWN_ROW,
        polars=lambda f, x: pl.when(x < 0).then(-x).otherwise(pl.when(x.is_not_null()).then(0.0)),
        cudf=lambda d, f, x: (-x).where((x < 0).fillna(False), 0.0).where(x.notna()),
    ),
    Op(
        "clip",
        "row",
        1,
        "x clipped to [lo, hi] (params lo, hi)",
        OWN_ROW,
        polars=lambda f, x: x.clip(f.param("lo"), f.param("hi")),
        cudf=lambda d, f, x: x.clip(f.param("lo"), f.param("hi")),
    ),
    Op(
        "max",
        "row",
        -1,
        "largest input (null if any input is null)",
        OWN_ROW,
        polars=_pl_extreme(pl.max_horizontal),
        cudf=_cu_extreme(lambda a, b: a > b),
    ),
    Op(
        "min",
        "row",
        -1,
        "smallest input (null if any input is null)",
        OWN_ROW,
        polars=_pl_extreme(pl.min_horizontal),
        cudf=_cu_extreme(lambda a, b: a < b),
    ),
    Op(
        "gt",
        "row",
        -1,
        "flag x > y + tol*|y| (y: second input or params value)",
        OWN_ROW,
        polars=_pl_compare("gt"),
        cudf=_cu_compare("gt"),
        flag=True,
    ),
    Op(
        "lt",
        "row",
        -1,
        "flag x < y - tol*|y|",
        OWN_ROW,
        polars=_pl_compare("lt"),
        cudf=_cu_compare("lt"),
        flag=True,
    ),
    Op(
        "ge",
        "row",
        -1,
        "flag x >= y - tol*|y|",
        OWN_ROW,
        polars=_pl_compare("ge"),
        cudf=_cu_compare("ge"),
        flag=True,
    ),
    Op(
        "le",
        "row",
        -1,
        "flag x <= y + tol*|y|",
        OWN_ROW,
        polars=_pl_compare("le"),
        cudf=_cu_compare("le"),
        flag=True,
    ),
    Op(
        "notnull",
        "row",
        1,
        "flag x is not null (never null itself)",
        OWN_ROW,
        polars=lambda f, x: _flag(x.is_not_null()),
        cudf=lambda d, f, x: _cu_flag(x.notna()),
        flag=True,
    ),
    Op(
        "days_since",
        "row",
        1,
        "calendar days from date column x to Date",
        OWN_ROW,
        polars=lambda f, x: (pl.col("Date") - x).dt.total_days().cast(pl.Float64),
        cudf=lambda d, f, x: (d.df["Date"] - x).dt.days.astype("float64"),
    ),
    # cross-sections
    Op(
        "cs_z",
        "date",
        1,
        "(x - mean) / std (ddof=1) over the date's rows",
        OWN_ROW,
        polars=lambda f, x: slice_expr(x, "Date", "z"),
        cudf=lambda d, f, x: _cu_z(d, x, ["Date"]),
        kernel=True,
    ),
    Op(
        "cs_rank",
        "date",
        1,
        "average rank / non-null count over the date's rows, in (0, 1]",
        OWN_ROW,
        polars=lambda f, x: slice_expr(x, "Date", "rank"),
        cudf=lambda d, f, x: d.group(x, ["Date"]).rank(method="average", pct=True, na_option="keep"),
        kernel=True,
    ),
    Op(
        "cs_winsor",
        "date",
        1,
        "x clipped to mean +- k std (ddof=1) of the date's rows (params k)",
        OWN_ROW,
        polars=lambda f, x: slice_expr(x, "Date", "winsor", f.param("k")),
        cudf=_cu_cs_winsor,
        kernel=True,
    ),
    Op(
        "sec_demean",
        "date_sector",
        1,
        "x - mean over the date's rows of the same Sector33Code",
        OWN_ROW,
        polars=lambda f, x: _pl_sector(x, "demean"),
        cudf=lambda d, f, x: (x - d.group(x, ["date_sector"]).transform("mean")).where(d.sector_ok),
        kernel=True,
    ),
    Op(
        "sec_z",
        "date_sector",
        1,
        "(x - mean) / std (ddof=1) over the date's rows of the same sector",
        OWN_ROW,
        polars=lambda f, x: _pl_sector(x, "z"),
        cudf=lambda d, f, x: _cu_z(d, x, ["date_sector"]).where(d.sector_ok),
        kernel=True,
    ),
)
