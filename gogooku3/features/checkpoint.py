"""Checkpoints: what a code's history leaves behind after a day, so a daily run reads only the
look-back the catalogue needs instead of the whole history.

Three things in a code's features depend on every earlier row: ``obs_count`` (counted from the
code's first row), the carried closes ``px_close``/``raw_close`` (forward-filled over days without
trades) and each EMA (``stateful`` ops, recursive from the first row). A checkpoint of day ``d``
holds, for every code with a row on ``d``, those values *after* its row on ``d``
(:data:`CHECKPOINT_COLUMNS`). Every other per-code op reads a bounded number of rows back; by the
catalogue, an output on day D is exact once its code has :data:`LOOKBACK_ROWS` rows before D in
the panel (:func:`exact_from`).

So a build of [start, end] can start its panel at ``S``, :data:`LOOKBACK_ROWS` trading days before
``start``, with each code that has a row on ``S`` resuming from the checkpoint of ``S``
(:func:`gogooku3.features.prepare.prepare_panel` ``checkpoint=``: its ``obs_count`` and carried
closes, and each EMA's state, which the EMA kernel resumes from). The per-code windows are
compiled so a value depends on its own window only (:mod:`gogooku3.features.series_kernels`), so
the result is bit-identical to a build over the whole history. :func:`bounded_panel_problem`
checks the conditions that make it so on the panel itself (the shell falls back to the whole
history otherwise).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from gogooku3.features.catalogue import FEATURES, LAYERS
from gogooku3.features.peers import PEER_WINDOW
from gogooku3.features.spec import CatalogueError, Feature, phase_of

#: Panel columns whose value depends on the whole history (see the module docstring).
BASE_STATE = ("obs_count", "px_close", "raw_close")
#: What a checkpoint partition says about how it was written: the engine and
#: :func:`state_definition`.
CHECKPOINT_META = ("engine", "definition")


def state_column(name: str) -> str:
    """The column holding stateful feature ``name``'s state after each row."""
    return f"{name}__state"


#: The stateful (EMA) features, in catalogue order.
STATEFUL: tuple[Feature, ...] = tuple(f for f in FEATURES if f.operation.stateful)
#: A checkpoint's value columns (besides ``Date`` and ``Code``), as the engines return them.
CHECKPOINT_COLUMNS: tuple[str, ...] = (*BASE_STATE, *(state_column(f.name) for f in STATEFUL))
#: Bump when what :data:`BASE_STATE` means changes (``prepare_panel``'s count or carried closes):
#: checkpoints written before then are not resumed from.
STATE_VERSION = 1


def state_definition(features: Sequence[Feature] = FEATURES) -> str:
    """A fingerprint of what a checkpoint's values mean: :data:`STATE_VERSION` and the definitions
    of the stateful features and of every feature they read, directly or not. A checkpoint written
    under another one is not resumed from (its states would continue a different recursion)."""
    by_name = {f.name: f for f in features}
    seen: set[str] = set()
    stack = [f.name for f in features if f.operation.stateful]
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        stack.extend(by_name[name].inputs)
    spec = [
        [n, by_name[n].op, list(by_name[n].inputs), by_name[n].window, sorted(by_name[n].params.items())]
        for n in sorted(seen)
    ]
    return hashlib.sha256(json.dumps([STATE_VERSION, spec]).encode()).hexdigest()[:16]


def resume_problem(checkpoint: pl.DataFrame, engine: str) -> str | None:
    """Why a build on ``engine`` must not resume from ``checkpoint`` (a partition as written by the
    lake shell, with its ``engine`` and ``definition`` columns), or None."""
    day = checkpoint.get_column("Date").max() if "Date" in checkpoint.columns and checkpoint.height else "?"
    missing = [
        c for c in ("Date", "Code", *CHECKPOINT_COLUMNS, *CHECKPOINT_META) if c not in checkpoint.columns
    ]
    if missing:
        return f"the checkpoint of {day} has no column(s) {', '.join(missing)}"
    if not checkpoint.height:
        return "an empty checkpoint"
    written = {c: checkpoint.get_column(c).unique().to_list() for c in CHECKPOINT_META}
    if written["engine"] != [engine]:
        # each engine is bit-exact with itself only
        return f"the checkpoint of {day} was written by engine {written['engine']}, this build runs on {engine!r}"
    if written["definition"] != [state_definition()]:
        return f"the checkpoint of {day} was written for another definition of the stateful features"
    return None


def exact_from(layers: Sequence[Sequence[Feature]] = LAYERS) -> dict[str, int]:
    """Feature -> the first row of a code's panel slice from which it equals the whole-history
    value, when the slice starts at a checkpoint row (row 0; base columns are exact from it).

    A lag of ``w`` is exact ``w`` rows after its input, a trailing window ``w - 1`` rows after; an
    EMA resumes at row 1 from the state after row 0, so its input must be exact from row 1 on
    (:class:`~gogooku3.features.spec.CatalogueError` otherwise). Cross-section and row ops read
    their own row.
    """
    phase = phase_of([list(layer) for layer in layers])
    exact: dict[str, int] = {}
    for layer in layers:
        for f in layer:
            if phase[f.name] != "series":
                continue
            inputs = max((exact.get(c, 0) for c in f.inputs), default=0)
            if f.operation.stateful:
                if inputs > 1:
                    raise CatalogueError(
                        f"feature {f.name!r}: an EMA resumes from its checkpoint at a code's second "
                        f"row, but its inputs are exact only from row {inputs}"
                    )
                exact[f.name] = 1
            elif f.operation.lookback.reads_history:
                exact[f.name] = inputs + f.operation.lookback.rows_added(f.window)
            else:
                exact[f.name] = inputs
    return exact


def lookback_rows(layers: Sequence[Sequence[Feature]] = LAYERS) -> int:
    """Rows a code needs before an output day, its checkpoint row included: the most any
    series-phase feature needs (:func:`exact_from`), or the peer window's (``ret_1d``, exact from
    row 1, on the :data:`~gogooku3.features.peers.PEER_WINDOW` days ending at the output day)."""
    return max(max(exact_from(layers).values(), default=0), PEER_WINDOW)


#: Rows (trading days) a bounded build reads before its first output day.
LOOKBACK_ROWS = lookback_rows()


def bounded_panel_problem(
    panel: pl.DataFrame, start: dt.date, check: pl.DataFrame | None, lookback: int = LOOKBACK_ROWS
) -> str | None:
    """Why a panel started at a checkpoint would not equal the whole-history one, or None.

    ``panel`` is the prepared bounded panel (sorted by Code, Date; checkpoint rows resumed).
    ``check`` is the checkpoint of the last trading day before ``start``: every code on it must
    have the same ``obs_count`` in the panel (a code missing from the first checkpoint but with
    rows before it would restart its count, its EMAs and carried closes). A code with rows dated
    >= ``start`` must either resume from the first checkpoint (its first panel row has
    ``obs_count`` > 1) and have ``lookback`` rows before each of them in the panel, or start in the
    panel (``obs_count`` 1) and be on the check day, which proves it had no earlier row.
    """
    if check is None:
        return "no checkpoint of the day before the first output day to verify the resumed counts against"
    rows = panel.select(
        "Code",
        "Date",
        "obs_count",
        pl.int_range(pl.len()).over("code_id").alias("_position"),
        pl.col("obs_count").first().over("code_id").alias("_first_obs"),
    )
    counted = check.select("Code", "Date", pl.col("obs_count").alias("_checked")).join(
        rows, on=["Code", "Date"], how="left"
    )
    wrong = counted.filter(pl.col("obs_count").is_null() | (pl.col("obs_count") != pl.col("_checked")))
    if wrong.height:
        first = wrong.row(0, named=True)
        return (
            f"{wrong.height} code(s) counted differently than the checkpoint of {first['Date']}, "
            f"e.g. {first['Code']} ({first['obs_count']} rows against {first['_checked']:.0f}): "
            "a gap, or a code back after a pause"
        )
    checked = check.get_column("Code").implode()
    output = rows.filter(pl.col("Date") >= start)
    short = output.filter((pl.col("_first_obs") > 1) & (pl.col("_position") < lookback))
    if short.height:
        first = short.row(0, named=True)
        return (
            f"{short.height} output row(s) with fewer than {lookback} rows of their code in the panel, "
            f"e.g. {first['Code']} on {first['Date']} (a gap in its rows)"
        )
    unverified = output.filter((pl.col("_first_obs") == 1) & ~pl.col("Code").is_in(checked))
    if unverified.height:
        first = unverified.row(0, named=True)
        return (
            f"{unverified['Code'].n_unique()} code(s) first seen after the checkpoint, not on the day "
            f"before the output, e.g. {first['Code']} on {first['Date']} (new, or back after a pause)"
        )
    return None


@dataclass(frozen=True)
class Resume:
    """How a bounded build starts: ``state``, the checkpoint of the panel's first day, and
    ``check``, the checkpoint of the last trading day before the first output day."""

    state: pl.DataFrame
    check: pl.DataFrame


class CheckpointMismatchError(ValueError):
    """A panel started at a checkpoint would not equal the whole-history one (the message says why:
    :func:`bounded_panel_problem`); the caller builds from the whole history instead."""
