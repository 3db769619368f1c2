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

Each feature's expression is its op's Polars implementation in the operation table
(:data:`gogooku3.features.ops.OPERATIONS`, where the lag, window and cross-section rules above
are written); this module only plans. Each catalogue layer is one ``with_columns``; every
expression reads only columns materialised by earlier layers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence

import polars as pl

from gogooku3.features.catalogue import CROSS_LAYERS, FEATURES, LAYERS, SERIES_LAYERS
from gogooku3.features.ops import SECTOR_SLICE
from gogooku3.features.prepare import KEY_COLUMNS
from gogooku3.features.reorder import day_sector_key, rows_by_date
from gogooku3.features.spec import Feature, split_phases

#: Polars engine for the feature plans. Polars 2's default (streaming) runs these window-heavy,
#: whole-frame plans ~1.6x slower than the in-memory engine (make bench, full market).
ENGINE = "in-memory"


def expr(f: Feature) -> pl.Expr:
    """The Polars expression of one feature, named ``f.name``: its op's entry in the table."""
    return f.operation.polars(f, *(pl.col(c) for c in f.inputs)).alias(f.name)


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
        day_sector_key(pl.col("Date"), pl.col("date_sector")).set_sorted().alias(SECTOR_SLICE),
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
    """Key columns, ``carry`` columns and every output feature (as its stored dtype,
    :attr:`~gogooku3.features.spec.Feature.dtype`) of the panel's rows dated >= ``start``.

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
    stored = {f.name: f.stored for layer in layers for f in layer if f.output}
    cross_inputs = {c for layer in cross for f in layer for c in f.inputs}
    t0 = time.perf_counter()
    frame = compute_series_lazy(panel.lazy(), series, keep=cross_inputs | set(carry)).collect(engine=ENGINE)
    if consume:
        for name in panel.columns:
            panel.drop_in_place(name)
    # move only what is output or read later; with ``consume`` (or once the caller lets go of the
    # panel) ``frame`` holds the only reference, and the reorder frees each column as it moves it
    # series outputs no cross-section reads are rounded to their stored dtype before the move,
    # which then moves half the bytes (the same one rounding as at the end)
    moved = [*KEY_COLUMNS, *carry, *(c for c in frame.columns if c in cross_inputs or c in outputs)]
    frame = frame.select(
        stored[c] if c in stored and c not in cross_inputs else pl.col(c) for c in dict.fromkeys(moved)
    )
    t1 = time.perf_counter()
    by_date = rows_by_date(frame, start)
    del frame
    t2 = time.perf_counter()
    out = (
        compute_cross_sections_lazy(by_date.lazy(), cross)
        .select(*KEY_COLUMNS, *carry, *(stored[name] for name in outputs))
        .collect(engine=ENGINE)
    )
    if timings is not None:
        timings.update(series_s=t1 - t0, reorder_s=t2 - t1, cross_section_s=time.perf_counter() - t2)
    return out
