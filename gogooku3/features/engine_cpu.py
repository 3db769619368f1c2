"""CPU engine: compile the catalogue to Polars expressions over a LazyFrame sorted by (Code, Date).

Lag ops (``shift``/``diff``/``pct_change``) run over the whole column and then null the rows whose
lag would reach into the previous code (``obs_count`` <= lag): on rows sorted by (Code, Date) that
is exactly ``.over("code_id")`` without the per-group dispatch. Rolling windows and EMAs use
``.over("code_id")``: Polars' rolling kernels update running sums, so over a whole column a value's
last bits would depend on the rows of *earlier codes* (including their future rows), which the
leakage test (bit-exact) and "a range equals its sub-ranges" forbid. Each catalogue layer is one ``with_columns``; every
expression reads only columns materialised by earlier layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from gogooku3.features.catalogue import FEATURES, LAYERS
from gogooku3.features.prepare import KEY_COLUMNS
from gogooku3.features.spec import COMPARE_TOL, Feature

_OBS = pl.col("obs_count")


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


def _sector_stat(x: pl.Expr, stat: str) -> pl.Expr:
    # Sum order inside a group follows the group's row order, which Polars does not fix for
    # multi-chunk frames; sorting the few values of a (date, sector) group first makes the
    # float result bit-identical run to run (the determinism and leakage tests compare exactly).
    s = x.sort(nulls_last=True)
    return (s.mean() if stat == "mean" else s.std()).over("date_sector")


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
        e = _finite((x - x.mean().over("Date")) / x.std().over("Date"))
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
        e = pl.when(pl.col("date_sector").is_not_null()).then(z)
    else:  # pragma: no cover - validate() rejects unknown ops
        raise ValueError(f"CPU engine: no compiler for op {op!r}")
    return e.alias(f.name)


def compute_features_lazy(panel: pl.LazyFrame, layers: Sequence[Sequence[Feature]] = LAYERS) -> pl.LazyFrame:
    """Key columns and output features of ``panel`` (a prepared base panel sorted by Code, Date).

    After each layer the columns no later layer reads (intermediates, base columns) are dropped,
    which keeps peak memory near the size of the output.
    """
    outputs = {f.name for layer in layers for f in layer if f.output}
    last_use: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for f in layer:
            for c in f.inputs:
                last_use[c] = i
    keep = set(KEY_COLUMNS) | outputs | {"obs_count"}  # lag ops read obs_count implicitly
    for i, layer in enumerate(layers):
        panel = panel.with_columns([expr(f) for f in layer])
        dead = [c for c, last in last_use.items() if last == i and c not in keep]
        if dead:
            panel = panel.drop(dead)
    return panel


def compute_features(panel: pl.DataFrame, layers: Sequence[Sequence[Feature]] = LAYERS) -> pl.DataFrame:
    """Key columns (:data:`KEY_COLUMNS`) and every output feature of a prepared base panel."""
    # catalogue order (not layer order), the same as the GPU engine's
    position = {f.name: k for k, f in enumerate(FEATURES)}
    outputs = sorted(
        (f.name for layer in layers for f in layer if f.output), key=lambda n: position.get(n, 0)
    )
    return compute_features_lazy(panel.lazy(), layers).select(*KEY_COLUMNS, *outputs).collect()
