"""Build the feature table: pure :func:`build_features` plus the lake shell :func:`build_features_to_lake`.

Output rows are the daily_quotes rows dated in [start, end], in day order (Date, Sector33Code, Code;
see :mod:`gogooku3.features.reorder`; the lake writes each day sorted by Code), with the key
columns, every output feature of the catalogue and (unless ``with_targets=False``) the
``target_*`` columns. Rows before ``start`` are computed only as far as the per-code series need
them; cross-sections and the targets' per-day clip run on the output rows alone. Features on date
D depend only on rows dated <= D (tests prove it), so a range built at once equals the
concatenation of its sub-ranges when the inputs hold the same history before them.

The lake shell reads all statements disclosed up to ``end``, and flows, TOPIX and the market-wide
tables over the whole history. Of daily_quotes (the big input) it reads the whole history only
when it must: a build over the whole history writes ``features/checkpoints/date=D/`` for each
output day, and a later build resumes from the checkpoint
:data:`~gogooku3.features.checkpoint.LOOKBACK_ROWS` trading days before its first output day,
reading daily_quotes from there (:mod:`gogooku3.features.checkpoint`; the same bytes as from the
whole history). Without the checkpoints, or when the panel cannot be verified against them (a gap
in a code's rows, a code first seen after the checkpoint), it reads the whole history, and logs
why. A raw partition corrected after its features were built leaves its checkpoints stale: rebuild
the features from that day on.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import polars as pl

from gogooku3.calendar import trading_days
from gogooku3.features.catalogue import OUTPUT_FEATURES
from gogooku3.features.checkpoint import (
    CHECKPOINT_COLUMNS,
    LOOKBACK_ROWS,
    CheckpointMismatchError,
    Resume,
    bounded_panel_problem,
    resume_problem,
    state_definition,
)
from gogooku3.features.prepare import KEY_COLUMNS, prepare_panel
from gogooku3.features.targets import FORWARD_COLUMNS, TARGET_NAMES, finish_targets, forward_returns
from gogooku3.redaction import library_logger

if TYPE_CHECKING:
    from gogooku3.lake import Lake, Manifest

log = library_logger(__name__)

Engine = Literal["cpu", "gpu"]
ENGINES: tuple[str, ...] = ("cpu", "gpu")
LAYER, DATASET = "features", "features"
#: ``features/checkpoints/date=D/``: each code's checkpoint after day D (:mod:`gogooku3.features.checkpoint`).
CHECKPOINTS = "checkpoints"
OUTPUT_KEYS = ("Date", "Code", "Sector33Code", "MarketCode")


@dataclass
class BuildTimings:
    """Seconds spent per stage of one build (where the time goes).

    ``features_s`` covers the engine's whole call; the CPU engine also reports its steps in
    ``extra`` (``series_s``, ``reorder_s``, ``cross_section_s``), and ``prepare_s`` includes the
    peer table's ``extra["peers_s"]``.
    """

    prepare_s: float = 0.0
    features_s: float = 0.0
    targets_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")


def compute(
    panel: pl.DataFrame,
    engine: Engine = "cpu",
    *,
    start: dt.date | None = None,
    carry: tuple[str, ...] = (),
    rmm_pool_size: int | None = None,
    timings: dict[str, float] | None = None,
    consume: bool = False,
    states: bool = False,
) -> pl.DataFrame:
    """Catalogue features of a prepared panel (sorted by Code, Date) on the chosen engine.

    Rows dated >= ``start`` in day order (Date, Sector33Code, Code): key columns, ``carry``
    columns, with ``states`` the checkpoint columns, features. ``consume=True`` lets the CPU
    engine empty ``panel`` once it has read it.
    """
    _check_engine(engine)
    if engine == "gpu":
        from gogooku3.features.engine_gpu import compute_features_gpu  # lazy: cuDF only when asked

        return compute_features_gpu(
            panel, start=start, carry=carry, rmm_pool_size=rmm_pool_size, states=states
        )
    from gogooku3.features.engine_cpu import compute_features

    return compute_features(panel, start=start, carry=carry, timings=timings, consume=consume, states=states)


def build_features(
    daily_quotes: pl.DataFrame,
    *,
    listed_info: pl.DataFrame | None = None,
    topix: pl.DataFrame | None = None,
    statements: pl.DataFrame | None = None,
    flows: pl.DataFrame | None = None,
    indices: pl.DataFrame | None = None,
    short_selling: pl.DataFrame | None = None,
    weekly_margin_interest: pl.DataFrame | None = None,
    earnings_calendar: pl.DataFrame | None = None,
    dividends: pl.DataFrame | None = None,
    futures: pl.DataFrame | None = None,
    index_option: pl.DataFrame | None = None,
    daily_margin_interest: pl.DataFrame | None = None,
    short_selling_positions: pl.DataFrame | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    engine: Engine = "cpu",
    with_targets: bool = True,
    timings: BuildTimings | None = None,
    rmm_pool_size: int | None = None,
    resume: Resume | None = None,
    states: bool = False,
) -> pl.DataFrame:
    """Features (and targets) for the daily_quotes rows dated in [start, end].

    Inputs are canonical lake frames (:mod:`gogooku3.jquants.datasets`); ``flows`` is helper
    FLOWS' ``interim/trades_spec_daily``. A missing optional input gives null features. Rows
    before ``start`` are history: they feed the windows but are not returned. Rows after ``end``
    are dropped before anything is computed.

    ``resume``: ``daily_quotes`` starts on ``resume.state``'s day and each code on it resumes from
    that checkpoint (:mod:`gogooku3.features.checkpoint`); raises
    :class:`~gogooku3.features.checkpoint.CheckpointMismatchError` when the result would not equal
    the whole-history build. ``states`` adds the checkpoint columns of the output rows.
    """
    _check_engine(engine)
    if start is not None and end is not None and start > end:
        raise ValueError(f"build_features: start {start} is after end {end}")
    t = timings or BuildTimings()

    def upto(df: pl.DataFrame | None, column: str) -> pl.DataFrame | None:
        # Nothing dated after ``end`` may reach the computation (no look-ahead, no future rows).
        return df if df is None or end is None else df.filter(pl.col(column) <= end)

    t0 = time.perf_counter()
    panel = prepare_panel(
        upto(daily_quotes, "Date"),
        listed_info=listed_info,
        topix=upto(topix, "Date"),
        statements=upto(statements, "DisclosedDate"),
        flows=upto(flows, "Date"),
        indices=upto(indices, "Date"),
        short_selling=upto(short_selling, "Date"),
        weekly_margin_interest=upto(weekly_margin_interest, "Date"),
        earnings_calendar=upto(earnings_calendar, "PublishedDate"),
        dividends=upto(dividends, "AnnouncementDate"),
        futures=upto(futures, "Date"),
        index_option=upto(index_option, "Date"),
        daily_margin_interest=upto(daily_margin_interest, "PublishedDate"),
        short_selling_positions=upto(short_selling_positions, "DisclosedDate"),
        peers_since=start,
        timings=t.extra,
        checkpoint=resume.state if resume is not None else None,
    )
    if resume is not None:
        problem = bounded_panel_problem(panel, start or dt.date.min, resume.check)
        if problem is not None:
            raise CheckpointMismatchError(problem)
    t1 = time.perf_counter()
    carry: tuple[str, ...] = ()
    if with_targets:
        # Targets read later rows, so they are computed from the panel apart from the features:
        # the forward returns here in (Code, Date) order, carried through the engine's one
        # reorder, and clipped per day after it. No feature ever reads them.
        panel = panel.hstack(forward_returns(panel))
        carry = FORWARD_COLUMNS
    t2 = time.perf_counter()
    out = compute(
        panel,
        engine,
        start=start,
        carry=carry,
        rmm_pool_size=rmm_pool_size,
        timings=t.extra,
        consume=True,
        states=states,
    )
    del panel
    t3 = time.perf_counter()
    if with_targets:
        out = finish_targets(out)
    cols = [
        *OUTPUT_KEYS,
        *OUTPUT_FEATURES,
        *(TARGET_NAMES if with_targets else ()),
        *(CHECKPOINT_COLUMNS if states else ()),
    ]
    out = out.select(cols)
    t.prepare_s, t.features_s, t.targets_s = t1 - t0, t3 - t2, (t2 - t1) + (time.perf_counter() - t3)
    return out


def feature_columns(df: pl.DataFrame) -> list[str]:
    """The feature columns of a built frame (neither keys nor targets)."""
    return [
        c for c in df.columns if c not in KEY_COLUMNS and c not in OUTPUT_KEYS and not c.startswith("target_")
    ]


def _read(lake: Lake, layer: str, dataset: str, start: dt.date, end: dt.date) -> pl.DataFrame | None:
    df = lake.read_range(layer, dataset, start, end)
    return df if df.height else None


#: Inputs the windows read day by day, as (layer, dataset, from): every trading day from ``from``
#: through the build's end must be in the lake. "history" is the history start (the first
#: daily_quotes partition unless given); "first" is the table's own first partition, because the
#: flows may start later than the bars (the investor-type history is shorter). listed_info and
#: statements are as-of inputs (the latest row on or before a day counts), not windows.
WINDOW_INPUTS: tuple[tuple[str, str, Literal["history", "first"]], ...] = (
    ("raw", "daily_quotes", "history"),
    ("raw", "topix", "history"),
    ("interim", "trades_spec_daily", "first"),
    ("raw", "indices", "first"),
    ("raw", "short_selling", "first"),
    ("raw", "futures", "first"),
    ("raw", "index_option", "first"),
)


def market_wide_since(history_start: dt.date) -> dict[str, dt.date]:
    """The market-wide raw datasets a build reads, from when: the sector indices are windowed like
    TOPIX (from the history start), and so are the derivatives' day-level tables; the as-of tables compute their own z-scores and changes over
    their whole history, which must not depend on where a build starts."""
    return {
        "indices": history_start,
        "short_selling": dt.date.min,
        "weekly_margin_interest": dt.date.min,
        "earnings_calendar": dt.date.min,
        "dividends": dt.date.min,
        "futures": history_start,
        "index_option": history_start,
        "daily_margin_interest": dt.date.min,
        "short_selling_positions": dt.date.min,
    }


def missing_window_days(
    present: set[dt.date], orphaned: set[dt.date], start: dt.date, end: dt.date
) -> list[str]:
    """The trading days of ``[start, end]`` not in ``present`` (ISO), each marked when only its data
    file (no manifest) is there."""
    return [
        d.isoformat() + (" (data file without manifest)" if d in orphaned else "")
        for d in trading_days(start, end)
        if d not in present
    ]


def check_window_inputs(lake: Lake, history_start: dt.date, end: dt.date) -> None:
    """Fail, naming every missing day of every window input (:data:`WINDOW_INPUTS`), before anything
    is read or written: a hole would shift every window across it, and EMAs and ``obs_count``
    would silently differ on every later day."""
    from gogooku3.lake import MissingPartitionError

    problems = []
    for layer, dataset, since in WINDOW_INPUTS:
        present = set(lake.list_partitions(layer, dataset))
        start = history_start if since == "history" else min(present, default=None)
        if start is None:
            problems.append(f"{layer}/{dataset} has no partition at all")
            continue
        missing = missing_window_days(present, set(lake.orphaned_partitions(layer, dataset)), start, end)
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            problems.append(f"{layer}/{dataset} is missing {len(missing)} trading day(s): {shown}")
    if problems:
        raise MissingPartitionError(
            f"features {history_start}..{end} need every trading day of their windows in lake {lake.uri}: "
            + "; ".join(problems)
            + " (fetch or rebuild those days first; nothing was written)"
        )


def build_features_to_lake(
    lake: Lake,
    start: dt.date,
    end: dt.date,
    engine: Engine = "cpu",
    *,
    history_start: dt.date | None = None,
    with_targets: bool = True,
    source: str | None = None,
    rmm_pool_size: int | None = None,
) -> list[Manifest]:
    """Build [start, end] from the lake's raw/interim layers and write ``features/features/date=D/``.

    ``history_start`` (default: the earliest daily_quotes partition) bounds the history read;
    leave it unset for results independent of how a range is split. Returns the manifests written.
    Raises ``MissingPartitionError`` (from the lake) when no daily_quotes partition is in range, or
    (:func:`check_window_inputs`) when a trading day that the windows of the output rows read is
    missing; nothing is written then.
    """
    _check_engine(engine)
    if start > end:
        raise ValueError(f"build_features_to_lake: start {start} is after end {end}")
    days = lake.list_partitions("raw", "daily_quotes")
    if not any(start <= d <= end for d in days):
        from gogooku3.lake import MissingPartitionError

        raise MissingPartitionError(
            f"raw/daily_quotes has no partition between {start} and {end} in {lake.uri}"
        )
    lo = history_start or days[0]
    # The windows of the last output row reach back to ``lo``; days after it in the range have no
    # bars yet (a trades_spec event's range runs through the next publication day) and no row.
    check_window_inputs(lake, lo, max(d for d in days if start <= d <= end))
    # Checkpoints describe the whole history: only a build over it writes or resumes from them.
    whole_history = lo == days[0]
    planned = plan_resume(lake, start, lo, engine) if whole_history else "history_start given"
    first, resume = planned if isinstance(planned, tuple) else (lo, None)
    if resume is None:
        log.info("features: reading daily_quotes from %s, the whole history (%s)", lo, planned)
    else:
        log.info(
            "features: resuming from the checkpoint of %s; reading daily_quotes from it (%d trading days before %s)",
            first,
            LOOKBACK_ROWS,
            start,
        )
    listed = _read(lake, "raw", "listed_info", dt.date.min, end)
    topix = _read(lake, "raw", "topix", lo, end)
    statements = _read(lake, "raw", "statements", dt.date.min, end)
    flows = _read(lake, "interim", "trades_spec_daily", lo, end)
    market_wide = {
        name: _read(lake, "raw", name, since, end) for name, since in market_wide_since(lo).items()
    }
    timings = BuildTimings()

    def build(first: dt.date, resume: Resume | None) -> pl.DataFrame:
        return build_features(
            lake.read_range("raw", "daily_quotes", first, end),
            listed_info=listed,
            topix=topix,
            statements=statements,
            flows=flows,
            **market_wide,
            start=start,
            end=end,
            engine=engine,
            with_targets=with_targets,
            timings=timings,
            rmm_pool_size=rmm_pool_size,
            resume=resume,
            states=whole_history,
        )

    try:
        out = build(first, resume)
    except CheckpointMismatchError as e:
        log.warning("features: not resuming from checkpoints (%s); reading the whole history from %s", e, lo)
        out = build(lo, None)
    log.info(
        "features: built %d rows x %d columns for %s..%s on %s (prepare %.2fs, features %.2fs, targets %.2fs)",
        out.height,
        out.width,
        start,
        end,
        engine,
        timings.prepare_s,
        timings.features_s,
        timings.targets_s,
    )
    source = source or f"gogooku3.features engine={engine}"
    if not whole_history:
        return write_features(lake, out, source=source)
    checkpoints = out.select(
        "Date",
        "Code",
        *CHECKPOINT_COLUMNS,
        pl.lit(engine).alias("engine"),
        pl.lit(state_definition()).alias("definition"),
    )
    manifests = write_features(lake, out.drop(CHECKPOINT_COLUMNS), source=source)
    write_checkpoints(lake, checkpoints, source=source)
    return manifests


def plan_resume(
    lake: Lake, start: dt.date, history_start: dt.date, engine: str
) -> tuple[dt.date, Resume] | str:
    """Where a build of days from ``start`` on ``engine`` can start its panel, and the checkpoints
    it resumes from: :data:`~gogooku3.features.checkpoint.LOOKBACK_ROWS` trading days before
    ``start``. Or why it cannot (too little history, a checkpoint missing, written by another
    engine or for another definition): a sentence for the log."""
    before = [d for d in trading_days(history_start, start) if d < start]
    if len(before) <= LOOKBACK_ROWS:
        return f"{len(before)} trading day(s) before {start}, a checkpoint needs more than {LOOKBACK_ROWS}"
    first, check = before[-LOOKBACK_ROWS], before[-1]
    missing = [d.isoformat() for d in (first, check) if not lake.has_partition(LAYER, CHECKPOINTS, d)]
    if missing:
        return f"no checkpoint of {' and '.join(missing)} in {LAYER}/{CHECKPOINTS}"
    state, checked = (lake.read_partition(LAYER, CHECKPOINTS, d) for d in (first, check))
    for checkpoint in (state, checked):
        if (problem := resume_problem(checkpoint, engine)) is not None:
            return problem
    return first, Resume(state=state, check=checked)


def write_checkpoints(lake: Lake, checkpoints: pl.DataFrame, *, source: str) -> list[Manifest]:
    """Write each day's checkpoint rows as ``features/checkpoints/date=D/`` (atomically, sorted by
    Code)."""
    return _write_days(lake, CHECKPOINTS, checkpoints, source=source, sort_by=("Code",))


def write_features(lake: Lake, built: pl.DataFrame, *, source: str) -> list[Manifest]:
    """Write a built frame as one ``features/features/date=D/`` partition per Date (atomically, each
    sorted by (Date, Code)); returns the manifests in date order."""
    return _write_days(lake, DATASET, built, source=source, sort_by=("Date", "Code"))


def _write_days(
    lake: Lake, dataset: str, frame: pl.DataFrame, *, source: str, sort_by: tuple[str, ...]
) -> list[Manifest]:
    """One ``features/<dataset>/date=D/`` partition per Date of ``frame``, in its date order."""
    return [
        lake.write_partition(LAYER, dataset, day, part, source=source, sort_by=sort_by, date_column="Date")
        for (day,), part in frame.partition_by("Date", as_dict=True, maintain_order=True).items()
    ]
