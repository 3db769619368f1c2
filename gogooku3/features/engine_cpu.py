"""CPU engine: compile the catalogue to Polars expressions, in the catalogue's two phases.

**Series phase**, over the prepared panel sorted by (Code, Date), with ``code_id`` flagged sorted
so each code is a contiguous slice. Lag ops (``shift``/``diff``/``pct_change``) run over the whole
column and then null the rows whose lag would reach into the previous code (``obs_count`` <= lag):
on rows sorted by (Code, Date) that is exactly ``.over("code_id")`` without the per-group dispatch.
Rolling windows and EMAs are compiled kernels over each code's slice
(:mod:`gogooku3.features.series_kernels`): a window value depends on its own window's rows only
(Polars' running sums would let the rows before it, and so where the panel starts, reach its last
bits), and an EMA resumes from a checkpoint's state where a code's slice starts after its first
row (:mod:`gogooku3.features.checkpoint`). So the leakage test, "a range equals its sub-ranges" and
a daily run started at a checkpoint are all bit-exact.

**One reorder** to the output rows (dated >= ``start``) in (Date, Sector33Code, Code) order
(:func:`gogooku3.features.reorder.date_order`), moving only the columns still needed, each as soon
as no later series layer reads it (:func:`compute_series_in_day_order`).

**Cross-section phase** over those rows: each day is a contiguous slice, and so is each (day,
sector) group, since the rows of a day are ordered by sector (:mod:`gogooku3.features.reorder`);
the cross-section kernels take one slice at a time (:mod:`gogooku3.features.slice_kernels`)
instead of a hash group-by and a scatter over the whole history.

Compiled kernels (ops flagged ``kernel``) are Python functions to Polars; each layer runs its
kernels in a step of their own, then its native expressions (:func:`kernels_first`).

Each feature's expression is its op's Polars implementation in the operation table
(:data:`gogooku3.features.ops.OPERATIONS`, where the lag, window and cross-section rules above
are written); this module only plans. Each catalogue layer is one ``with_columns``; every
expression reads only columns materialised by earlier layers.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Iterable, Mapping, Sequence

import polars as pl

from gogooku3.features.catalogue import CROSS_LAYERS, FEATURES, LAYERS
from gogooku3.features.checkpoint import CHECKPOINT_COLUMNS, state_column
from gogooku3.features.ops import SECTOR_SLICE
from gogooku3.features.prepare import KEY_COLUMNS
from gogooku3.features.reorder import DayOrder, date_order, day_sector_key
from gogooku3.features.series_kernels import carried_expr
from gogooku3.features.spec import Feature, split_phases

#: Polars engine for the feature plans. Polars 2's default (streaming) runs these window-heavy,
#: whole-frame plans ~1.6x slower than the in-memory engine (make bench, full market).
ENGINE = "in-memory"


def expr(f: Feature, columns: Collection[str] = ()) -> pl.Expr:
    """The Polars expression of one feature, named ``f.name``: its op's entry in the table. A
    stateful op (the EMA) resumes from its state column where ``columns`` (the frame's) has it:
    a panel started at a checkpoint (:mod:`gogooku3.features.checkpoint`)."""
    inputs = (pl.col(c) for c in f.inputs)
    if f.operation.stateful:
        state = state_column(f.name)
        return f.operation.polars(f, *inputs, state=pl.col(state) if state in columns else None).alias(f.name)
    return f.operation.polars(f, *inputs).alias(f.name)


def reads(f: Feature) -> tuple[str, ...]:
    """The columns computing ``f`` reads by name: its inputs, and a stateful op's state column."""
    return (*f.inputs, state_column(f.name)) if f.operation.stateful else f.inputs


def kernels_first(layer: Sequence[Feature]) -> list[list[Feature]]:
    """A layer's features in the steps the engine evaluates them in: its compiled kernels, then its
    native Polars expressions (:attr:`~gogooku3.features.ops.Op.kernel`); empty steps left out."""
    steps = [[f for f in layer if f.operation.kernel], [f for f in layer if not f.operation.kernel]]
    return [step for step in steps if step]


def _catalogue_order(names: set[str]) -> list[str]:
    position = {f.name: k for k, f in enumerate(FEATURES)}
    return sorted(names, key=lambda n: position.get(n, 0))


def move_schedule(
    layers: Sequence[Sequence[Feature]],
    needed: Iterable[str],
    *,
    held: Iterable[str] = KEY_COLUMNS,
    made: Mapping[str, int] | None = None,
) -> dict[int, list[str]]:
    """When each ``needed`` column can leave the series phase: layer index -> the columns to move
    into day order after that layer (-1: before the first, for a panel column no layer reads).

    A column moves after the layer that makes it (``made`` adds columns made beside the
    catalogue's: the checkpoint states) and after the last layer that reads it; ``held`` columns
    (the keys: every op reads ``code_id``, the lag rule its order) move after the last layer. Each
    needed column is scheduled exactly once, in ``needed``'s order.
    """
    last = len(layers) - 1
    # a column is made before any layer reads it, so its last reader (if any) comes last
    when = (
        {f.name: i for i, layer in enumerate(layers) for f in layer} | dict(made or {}) | last_readers(layers)
    )
    schedule: dict[int, list[str]] = {}
    held = set(held)
    for c in dict.fromkeys(needed):
        schedule.setdefault(last if c in held else when.get(c, -1), []).append(c)
    return schedule


def last_readers(layers: Sequence[Sequence[Feature]]) -> dict[str, int]:
    """Column -> index of the last layer that reads it (columns no layer reads are absent)."""
    return {c: i for i, layer in enumerate(layers) for f in layer for c in reads(f)}


def compute_series_in_day_order(
    panel: pl.DataFrame,
    layers: Sequence[Sequence[Feature]],
    order: DayOrder,
    needed: Sequence[str],
    rounded: Mapping[str, pl.Expr],
    *,
    states: bool = False,
) -> tuple[pl.DataFrame, float]:
    """Series-phase features of ``panel`` (a prepared base panel sorted by Code, Date), layer by
    layer, with the one reorder folded in: (the ``needed`` columns in the output rows ``order``
    (:func:`date_order`), seconds spent gathering).

    As soon as no later layer reads a needed column (:func:`move_schedule`) it is gathered into the
    output rows and leaves the frame; a column nothing needs leaves after its last reader. So the
    frame never holds every output over the whole history: a daily run keeps one day of each, and
    its peak memory is the panel plus the columns still being read. ``rounded`` gives the
    expression of a column that is moved rounded to its stored dtype (the outputs no
    cross-section reads: they move half the bytes). ``states`` adds each stateful feature's
    state column (:func:`~gogooku3.features.series_kernels.carried_expr`) after its layer; list
    them in ``needed``.
    """
    needed = list(dict.fromkeys(needed))
    made = {state_column(f.name): i for i, layer in enumerate(layers) for f in layer if f.operation.stateful}
    schedule = move_schedule(layers, needed, made=made if states else None)
    last_read = last_readers(layers)
    implicit = set(KEY_COLUMNS) | {"obs_count"}  # lag ops read obs_count, every op code_id
    frame = panel.with_columns(pl.col("code_id").set_sorted())
    del panel  # a base column is freed when the frame drops it, unless the caller holds it too
    parts: list[pl.DataFrame] = []
    gather_s = 0.0

    def move_and_drop(frame: pl.DataFrame, step: int) -> pl.DataFrame:
        nonlocal gather_s
        t = time.perf_counter()
        names = schedule.get(step, [])
        if names:
            moved = frame.select(rounded.get(c, pl.col(c)) for c in names)
            parts.append(order.gather(moved))
        gather_s += time.perf_counter() - t
        # what moved, and what nothing reads any more (a base column no layer reads goes at once);
        # a needed column is scheduled after its last reader, so nothing dropped here still waits
        done = {c for c in frame.columns if last_read.get(c, -1) == step} | set(names)
        done |= {f.name for f in (layers[step] if step >= 0 else ()) if f.name not in last_read}
        return frame.drop([c for c in frame.columns if c in done and c not in implicit])

    frame = move_and_drop(frame, -1)
    for i, layer in enumerate(layers):
        for step in kernels_first(layer):
            frame = frame.lazy().with_columns([expr(f, frame.columns) for f in step]).collect(engine=ENGINE)
        if states and (stateful := [f.name for f in layer if f.operation.stateful]):
            frame = frame.with_columns(carried_expr(pl.col(n)).alias(state_column(n)) for n in stateful)
        frame = move_and_drop(frame, i)
    del frame
    by_date = pl.concat(parts, how="horizontal") if parts else pl.DataFrame()
    return by_date.select(needed).with_columns(pl.col("Date").set_sorted()), gather_s


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
    states: bool = False,
) -> pl.DataFrame:
    """Key columns, ``carry`` columns and every output feature (as its stored dtype,
    :attr:`~gogooku3.features.spec.Feature.dtype`) of the panel's rows dated >= ``start``, and with
    ``states`` the checkpoint columns (:data:`~gogooku3.features.checkpoint.CHECKPOINT_COLUMNS`).

    ``panel`` is a prepared base panel sorted by (Code, Date) (rows before ``start`` are history
    the windows read). The result is in day order, (Date, Sector33Code, Code)
    (:func:`~gogooku3.features.reorder.date_order`); ``carry`` names panel columns moved
    along unchanged (the targets' forward returns). ``timings`` receives the seconds of the three
    steps: ``series_s``, ``reorder_s`` (the gathers into day order, taken during the series phase),
    ``cross_section_s``. ``consume=True`` (for a caller that owns the panel) empties ``panel``
    first, so each base column is freed as soon as no layer reads it any more: a daily run at
    4,000 codes peaked at 6.1 GB, 8.4 GB when the whole series phase was collected first.
    """
    # the order's counting sort checks the panel is sorted by (code_id, Date), one row per pair:
    # the series phase tells Polars code_id is sorted, and a wrong claim would silently mix codes
    order = date_order(panel, start)
    series, cross = split_phases([list(layer) for layer in layers])
    outputs = _catalogue_order({f.name for layer in layers for f in layer if f.output})
    stored = {f.name: f.stored for layer in layers for f in layer if f.output}
    cross_inputs = {c for layer in cross for f in layer for c in f.inputs}
    made = set(panel.columns) | {f.name for layer in series for f in layer}
    # what leaves the series phase: keys, carry, the outputs made there and what the cross-sections
    # read; the outputs no cross-section reads move rounded to their stored dtype
    checkpoint = CHECKPOINT_COLUMNS if states else ()
    needed = [*KEY_COLUMNS, *carry, *checkpoint, *(c for c in (*outputs, *sorted(cross_inputs)) if c in made)]
    rounded = {c: stored[c] for c in needed if c in stored and c not in cross_inputs}
    t0 = time.perf_counter()
    # with ``consume`` the series phase gets the only reference to each base column (no name here
    # holds the frame it is handed)
    by_date, gather_s = compute_series_in_day_order(
        pl.DataFrame([panel.drop_in_place(name) for name in list(panel.columns)]) if consume else panel,
        series,
        order,
        needed,
        rounded,
        states=states,
    )
    t1 = time.perf_counter()
    out = (
        compute_cross_sections_lazy(by_date.lazy(), cross)
        .select(*KEY_COLUMNS, *carry, *checkpoint, *(stored[name] for name in outputs))
        .collect(engine=ENGINE)
    )
    if timings is not None:
        timings.update(
            series_s=t1 - t0 - gather_s, reorder_s=gather_s, cross_section_s=time.perf_counter() - t1
        )
    return out
