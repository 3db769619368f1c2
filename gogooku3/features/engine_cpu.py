"""CPU engine: compile the catalogue to Polars expressions, in the catalogue's two phases.

**Series phase**, over the prepared panel sorted by (Code, Date), with ``code_id`` flagged sorted
so each code is a contiguous slice. Lag ops (``shift``/``diff``/``pct_change``) run over the whole
column and then null the rows whose lag would reach into the previous code (``obs_count`` <= lag):
on rows sorted by (Code, Date) that is exactly ``.over("code_id")`` without the per-group dispatch.
Rolling windows and EMAs use ``.over("code_id")``: Polars' rolling kernels update running sums, so
over a whole column a value's last bits would depend on the rows of *earlier codes* (including
their future rows), which the leakage test (bit-exact) and "a range equals its sub-ranges" forbid.

**One reorder** (:func:`gogooku3.features.reorder.rows_by_date`) to the output rows (dated >=
``start``) in (Date, Sector33Code, Code) order, moving only the columns still needed.

**Cross-section phase** over those rows: each day is a contiguous slice, so ``.over("Date")`` is
a cheap slice aggregation instead of a hash group-by and a scatter over the whole history, and so
is ``.over`` a (day, sector) group, since the rows of a day are ordered by sector
(:mod:`gogooku3.features.reorder`).

Each catalogue layer is one ``with_columns``; every expression reads only columns materialised by
earlier layers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence

import polars as pl

from gogooku3.features.catalogue import CROSS_LAYERS, FEATURES, LAYERS, SERIES_LAYERS
from gogooku3.features.prepare import KEY_COLUMNS
from gogooku3.features.reorder import day_sector_key, rows_by_date
from gogooku3.features.spec import COMPARE_TOL, Feature, split_phases

_OBS = pl.col("obs_count")

#: Polars engine for the feature plans. Polars 2's default (streaming) runs these window-heavy,
#: whole-frame plans ~1.6x slower than the in-memory engine (make bench, full market).
ENGINE = "in-memory"


def _finite(e: pl.Expr) -> pl.Expr:
    return pl.when(e.is_finite()).then(e)


def _flag(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.Int8)


def _cmp(f: Feature, op: str) -> pl.Expr:
    x = pl.col(f.inputs[0])
    y = pl.col(f.inputs[1]) if len(f.inputs) > 1 else pl.lit(f.param("value"))
    tol = y.abs() * COMPARE_TOL
    return _flag({"gt": x > y + tol, "lt": x < y - tol, "ge": x >= y - tol, "le": x <= y + tol}[op])


def _all_present(cols: Sequence[str]) -> pl.Expr:
    return pl.all_horizontal([pl.col(c).is_not_null() for c in cols])


#: Cross-section phase only: the (day, sector) slice key, never null (rows without a sector form
#: one more slice at the end of their day) and flagged sorted, so ``.over`` aggregates slices.
_SECTOR_SLICE = "_sector_slice"


def _sector_stat(x: pl.Expr, stat: str) -> pl.Expr:
    return (x.mean() if stat == "mean" else x.std()).over(_SECTOR_SLICE)


def _varies(x: pl.Expr, over: str) -> pl.Expr:
    """The group's non-null values are not all equal. A constant group's z-score is null (spec),
    but its rounded std need not be 0: three 0.1s have mean 0.10000000000000002 and std 1.7e-17,
    and (x - mean) / std would give -0.82 for each instead of null."""
    return x.max().over(over) > x.min().over(over)


def expr(f: Feature) -> pl.Expr:
    """The Polars expression of one feature, named ``f.name``."""
    ins = [pl.col(c) for c in f.inputs]
    x = ins[0]
    w = f.window or 0
    op = f.op
    if op == "shift":
        e = pl.when(_OBS > w).then(x.shift(w))
    elif op == "pct_change":
        e = pl.when(_OBS > w).then(_finite(x / x.shift(w) - 1.0))
    elif op == "diff":
        e = pl.when(_OBS > w).then(x - x.shift(w))
    elif op == "rmean":
        e = x.rolling_mean(w, min_samples=w).over("code_id")
    elif op == "rstd":
        e = x.rolling_std(w, min_samples=w).over("code_id")
    elif op == "rsum":
        e = x.rolling_sum(w, min_samples=w).over("code_id")
    elif op == "ema":
        e = x.ewm_mean(alpha=f.ema_alpha(), adjust=False, ignore_nulls=True).over("code_id")
    elif op == "copy":
        e = x
    elif op == "add":
        e = x + ins[1]
    elif op == "sub":
        e = x - ins[1]
    elif op == "mul":
        e = ins[0]
        for other in ins[1:]:
            e = e * other
        if f.dtype == "Float64":
            e = e.cast(pl.Float64)
    elif op == "div":
        e = _finite(x / ins[1])
    elif op == "ratio":
        e = _finite(x / ins[1] - 1.0)
    elif op == "scale":
        e = x * f.param("k")
    elif op == "abs":
        e = x.abs()
    elif op == "log":
        e = pl.when(x > 0).then(x.log())
    elif op == "log1p_abs":
        e = x.sign() * x.abs().log1p()
    elif op == "sqrt":
        e = pl.when(x >= 0).then(x.sqrt())
    elif op == "square":
        e = x * x
    elif op == "pos":
        e = pl.when(x > 0).then(x).otherwise(pl.when(x.is_not_null()).then(0.0))
    elif op == "negpart":
        e = pl.when(x < 0).then(-x).otherwise(pl.when(x.is_not_null()).then(0.0))
    elif op == "clip":
        e = x.clip(f.param("lo"), f.param("hi"))
    elif op in ("max", "min"):
        h = pl.max_horizontal(ins) if op == "max" else pl.min_horizontal(ins)
        e = pl.when(_all_present(f.inputs)).then(h)
    elif op in ("gt", "lt", "ge", "le"):
        e = _cmp(f, op)
    elif op == "notnull":
        e = _flag(x.is_not_null())
    elif op == "days_since":
        e = (pl.col("Date") - x).dt.total_days().cast(pl.Float64)
    elif op == "cs_z":
        e = pl.when(_varies(x, "Date")).then(_finite((x - x.mean().over("Date")) / x.std().over("Date")))
    elif op == "cs_rank":
        e = x.rank("average").over("Date") / x.count().over("Date")
    elif op == "cs_winsor":
        k = f.param("k")
        mu, sd = x.mean().over("Date"), x.std().over("Date")
        hi, lo = mu + k * sd, mu - k * sd
        e = pl.when(x > hi).then(hi).when(x < lo).then(lo).otherwise(x)
    elif op == "sec_demean":
        e = pl.when(pl.col("date_sector").is_not_null()).then(x - _sector_stat(x, "mean"))
    elif op == "sec_z":
        z = _finite((x - _sector_stat(x, "mean")) / _sector_stat(x, "std"))
        e = pl.when(pl.col("date_sector").is_not_null() & _varies(x, _SECTOR_SLICE)).then(z)
    else:  # pragma: no cover - validate() rejects unknown ops
        raise ValueError(f"CPU engine: no compiler for op {op!r}")
    return e.alias(f.name)


def check_code_order(panel: pl.DataFrame) -> None:
    """Raise ``ValueError`` unless ``panel`` is sorted by (code_id, Date) with one row per pair.

    The series phase tells Polars that ``code_id`` is sorted (each code a contiguous slice, which
    is what makes ``.over("code_id")`` cheap); a wrong claim would silently mix codes.
    """
    ok = panel.select(
        (
            (pl.col("code_id").diff() > 0)
            | ((pl.col("code_id").diff() == 0) & (pl.col("Date").diff().dt.total_days() > 0))
        ).all()
    ).item()
    if not ok:
        raise ValueError(
            "feature panel must be sorted by (code_id, Date) with unique rows (prepare_panel's order)"
        )


def _catalogue_order(names: set[str]) -> list[str]:
    position = {f.name: k for k, f in enumerate(FEATURES)}
    return sorted(names, key=lambda n: position.get(n, 0))


def compute_series_lazy(
    panel: pl.LazyFrame, layers: Sequence[Sequence[Feature]] = SERIES_LAYERS, *, keep: Iterable[str] = ()
) -> pl.LazyFrame:
    """Series-phase features of ``panel`` (a prepared base panel sorted by Code, Date).

    After each layer the columns no later layer reads are dropped (intermediates, base columns),
    except the key columns, output features, ``obs_count`` and ``keep`` (what the cross-section
    phase reads); that keeps peak memory near the size of the output.
    """
    outputs = {f.name for layer in layers for f in layer if f.output}
    last_use: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for f in layer:
            for c in f.inputs:
                last_use[c] = i
    kept = set(KEY_COLUMNS) | outputs | {"obs_count"} | set(keep)  # lag ops read obs_count implicitly
    panel = panel.with_columns(pl.col("code_id").set_sorted())
    for i, layer in enumerate(layers):
        panel = panel.with_columns([expr(f) for f in layer])
        dead = [c for c, last in last_use.items() if last == i and c not in kept]
        if dead:
            panel = panel.drop(dead)
    return panel


def compute_cross_sections_lazy(
    frame: pl.LazyFrame, layers: Sequence[Sequence[Feature]] = CROSS_LAYERS
) -> pl.LazyFrame:
    """Cross-section-phase features of ``frame``, rows in :func:`~gogooku3.features.reorder.date_order`.

    Adds the internal ``_sector_slice`` key; callers select the columns they want.
    """
    frame = frame.with_columns(
        pl.col("Date").set_sorted(),
        day_sector_key(pl.col("Date"), pl.col("date_sector")).set_sorted().alias(_SECTOR_SLICE),
    )
    for layer in layers:
        frame = frame.with_columns([expr(f) for f in layer])
    return frame


def compute_features(
    panel: pl.DataFrame,
    layers: Sequence[Sequence[Feature]] = LAYERS,
    *,
    start: dt.date | None = None,
    carry: Sequence[str] = (),
    timings: dict[str, float] | None = None,
    consume: bool = False,
) -> pl.DataFrame:
    """Key columns, ``carry`` columns and every output feature of the panel's rows dated >= ``start``.

    ``panel`` is a prepared base panel sorted by (Code, Date) (rows before ``start`` are history
    the windows read). The result is in day order, (Date, Sector33Code, Code)
    (:func:`~gogooku3.features.reorder.date_order`); ``carry`` names panel columns moved
    along unchanged (the targets' forward returns). ``timings`` receives the seconds of the three
    steps: ``series_s``, ``reorder_s``, ``cross_section_s``. ``consume=True`` (for a caller that
    owns the panel) empties ``panel`` once the series phase has read it, so its base columns are
    freed before the reorder instead of staying alive through it (~1.2 GB on the full market).
    """
    check_code_order(panel)
    series, cross = split_phases([list(layer) for layer in layers])
    outputs = _catalogue_order({f.name for layer in layers for f in layer if f.output})
    cross_inputs = {c for layer in cross for f in layer for c in f.inputs}
    t0 = time.perf_counter()
    frame = compute_series_lazy(panel.lazy(), series, keep=cross_inputs | set(carry)).collect(engine=ENGINE)
    if consume:
        for name in panel.columns:
            panel.drop_in_place(name)
    # move only what is output or read later; with ``consume`` (or once the caller lets go of the
    # panel) ``frame`` holds the only reference, and the reorder frees each column as it moves it
    moved = [*KEY_COLUMNS, *carry, *(c for c in frame.columns if c in cross_inputs or c in outputs)]
    frame = frame.select(list(dict.fromkeys(moved)))
    t1 = time.perf_counter()
    by_date = rows_by_date(frame, start)
    del frame
    t2 = time.perf_counter()
    out = (
        compute_cross_sections_lazy(by_date.lazy(), cross)
        .select(*KEY_COLUMNS, *carry, *outputs)
        .collect(engine=ENGINE)
    )
    if timings is not None:
        timings.update(series_s=t1 - t0, reorder_s=t2 - t1, cross_section_s=time.perf_counter() - t2)
    return out
