"""Weekly trades_spec -> point-in-time daily rows per Section (pure Polars, no I/O).

Usability rule (the one rule every row obeys)
---------------------------------------------
J-Quants publishes a trades_spec record on its ``PublishedDate`` after the cash session has
closed (treated as at/after 15:00 JST). A decision on trading day ``D`` is made before or during
D's session, so a record published on day ``P`` is first usable on ``next_trading_day(P)``: the
first JPX trading day strictly after P. That covers both cases: published on a trading day ->
usable the next trading day; published on a weekend or holiday -> usable on the next trading day
after it. Equivalently, on a trading day D a record is usable iff ``PublishedDate < D``. The
output carries this day as ``UsableDate``.

What one output row is
----------------------
For every JPX trading day D in [start, end] and every Section that exists on D, the row of the
latest week (largest ``EndDate``) among the records usable on D, in its latest version usable on D
(largest ``PublishedDate``). A Section exists on D from the first day one of its weeks is usable,
until it retires (an old Section retires on the first day a week of its successor Section is
usable; see :mod:`gogooku3.flows.sections`). Consequences:

* Holiday weeks without a publication: the last usable week is carried forward, its
  ``days_since_published`` keeps growing and ``is_fresh`` stays false.
* Revisions (same Section/StartDate/EndDate, newer PublishedDate) replace the earlier version from
  the revision's own ``UsableDate`` onward, never before: rows of earlier days (and the history
  their z-scores used) stay exactly as they were known then.

Week identity is (Section, EndDate); two records with the same Section, EndDate and
PublishedDate are ambiguous and rejected.

Derived columns
---------------
* ``flow_<type>_net_ratio`` for each of the 13 investor types: ``<Type>Balance / <Type>Total``
  (net buying as a share of the type's own gross trading value, in [-1, 1]); null when the total
  is 0 or null. ``<type>`` is the snake_case short name in :data:`INVESTOR_SHORT_NAMES`
  (e.g. ``flow_foreigners_net_ratio``, ``flow_individuals_net_ratio``, ``flow_trust_banks_net_ratio``).
* ``flow_smart_money_idx = flow_foreigners_net_ratio - flow_individuals_net_ratio``: foreign
  investors (the dominant, mostly institutional flow on the TSE) against domestic individuals
  (historically contrarian). Positive when foreigners buy on net relative to their volume while
  individuals sell. A per-week quantity, so it needs no history.
* ``flow_smart_money_idx_wow``: the index minus the index of the previous week of the same
  (joined) history known on D, i.e. the week with the largest EndDate before the selected one,
  inside the z-score window; null when there is none.
* ``<measure>_z`` for every net ratio and the smart-money index: the z-score of the selected
  week's value against the weeks of the Section's history whose EndDate lies in
  ``(EndDate - 7*weeks days, EndDate]`` (52 weekly slots by default, the selected week included),
  using only records usable on D, each week in its latest version usable on D.
  ``z = (x - mean) / std`` with the sample standard deviation (ddof=1); null with fewer than
  ``min_weeks`` non-null values in the window or a zero std. ``flow_z_weeks`` is the number of weeks
  in the window (a maturity indicator). New Sections' histories include their predecessor's weeks
  before the 2022 restructuring (:class:`~gogooku3.flows.sections.SectionLineage`).
* ``flow_smart_money_extreme``: +1 when ``flow_smart_money_idx_z >= 2``, -1 when ``<= -2``, 0
  otherwise, null when the z-score is null.
* ``days_since_published``: the number of JPX trading days in ``(PublishedDate, D]``; 1 on the
  ``UsableDate`` and +1 per trading day after it.
* ``is_fresh``: true on the first trading day the row's week version is usable (``D == UsableDate``,
  equivalently ``days_since_published == 1``); a revision of the selected week is fresh again.

Lookback (backfill safety)
--------------------------
The rows of day D depend only on records with ``PublishedDate < D`` and the calendar, never on
``start``, so expanding [a, c] equals concatenating the expansions of [a, b] and [b+1, c]. To get
exact values on D the caller must pass every record of the selected week's window: records of
weeks ending within 52 weeks (``7*weeks`` days) before the selected week, plus the selected week
itself, which can be older than D when publications pause. Passing all records published before
``end`` (what :func:`gogooku3.flows.io.expand_to_lake` does; trades_spec is ~10 rows a week) is
always sufficient; records published on or after ``end`` are ignored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from gogooku3.calendar import next_trading_day, trading_days
from gogooku3.flows.sections import SectionLineage
from gogooku3.jquants.datasets import INVESTOR_MEASURES, INVESTOR_TYPES, TRADES_SPEC

#: Canonical investor-type prefix -> snake_case short name used in derived column names.
INVESTOR_SHORT_NAMES: dict[str, str] = {
    "Proprietary": "proprietary",
    "Brokerage": "brokerage",
    "Total": "total",
    "Individuals": "individuals",
    "Foreigners": "foreigners",
    "SecuritiesCos": "securities_cos",
    "InvestmentTrusts": "investment_trusts",
    "BusinessCos": "business_cos",
    "OtherCos": "other_cos",
    "InsuranceCos": "insurance_cos",
    "CityBKsRegionalBKsEtc": "banks",
    "TrustBanks": "trust_banks",
    "OtherFinancialInstitutions": "other_financial",
}
assert set(INVESTOR_SHORT_NAMES) == {t for t, _ in INVESTOR_TYPES}

KEY_COLUMNS = ("PublishedDate", "StartDate", "EndDate", "Section")
INVESTOR_COLUMNS: tuple[str, ...] = tuple(f"{t}{m}" for t, _ in INVESTOR_TYPES for m, _ in INVESTOR_MEASURES)
NET_RATIO_COLUMNS: tuple[str, ...] = tuple(
    f"flow_{INVESTOR_SHORT_NAMES[t]}_net_ratio" for t, _ in INVESTOR_TYPES
)
SMART_MONEY = "flow_smart_money_idx"
SMART_MONEY_WOW = "flow_smart_money_idx_wow"
SMART_MONEY_EXTREME = "flow_smart_money_extreme"
Z_WEEKS = "flow_z_weeks"
#: The measures that get a ``_z`` column.
Z_MEASURES: tuple[str, ...] = (*NET_RATIO_COLUMNS, SMART_MONEY)
Z_COLUMNS: tuple[str, ...] = tuple(f"{m}_z" for m in Z_MEASURES)

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "Date": pl.Date(),
    "Section": pl.String(),
    "StartDate": pl.Date(),
    "EndDate": pl.Date(),
    "PublishedDate": pl.Date(),
    "UsableDate": pl.Date(),
    **{c: pl.Float64() for c in INVESTOR_COLUMNS},
    **{c: pl.Float64() for c in NET_RATIO_COLUMNS},
    SMART_MONEY: pl.Float64(),
    SMART_MONEY_WOW: pl.Float64(),
    **{c: pl.Float64() for c in Z_COLUMNS},
    Z_WEEKS: pl.UInt32(),
    SMART_MONEY_EXTREME: pl.Int8(),
    "days_since_published": pl.Int32(),
    "is_fresh": pl.Boolean(),
}
#: The derived ``flow_*`` feature columns (what gets attached to stocks).
FLOW_FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in OUTPUT_SCHEMA if c.startswith("flow_"))


@dataclass(frozen=True)
class FlowHistory:
    """The z-score window: ``weeks`` weekly slots back from the selected week (inclusive), at
    least ``min_weeks`` non-null values for a z-score."""

    weeks: int = 52
    min_weeks: int = 8

    def __post_init__(self) -> None:
        if self.weeks < 2:
            raise ValueError(f"FlowHistory.weeks must be >= 2, got {self.weeks}")
        if not 2 <= self.min_weeks <= self.weeks:
            raise ValueError(
                f"FlowHistory.min_weeks must be in [2, weeks={self.weeks}], got {self.min_weeks}"
            )


def empty_output() -> pl.DataFrame:
    """A frame with no rows and the output schema."""
    return pl.DataFrame(schema=OUTPUT_SCHEMA)


def usable_date(published: dt.date) -> dt.date:
    """The first trading day on which a record published on ``published`` may be used."""
    return next_trading_day(published)


# --------------------------------------------------------------------------- input


def prepare_versions(raw: pl.DataFrame | pl.LazyFrame, end: dt.date | None = None) -> pl.DataFrame:
    """Validate raw trades_spec records and add ``UsableDate``, ``row_id`` and the per-week measures.

    Every record is checked; only records published before ``end`` (when given) are kept, since
    no other can be usable on a day <= ``end``. Raises ``ValueError`` naming what is wrong.
    """
    frame = raw.collect() if isinstance(raw, pl.LazyFrame) else raw
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"trades_spec: expected a polars DataFrame or LazyFrame, got {type(raw).__name__}")
    missing = [c for c in TRADES_SPEC.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"trades_spec: missing required column(s) {', '.join(missing)}")
    frame = frame.select(TRADES_SPEC.columns)
    casts = []
    for name, dtype in TRADES_SPEC.schema.items():
        if frame.schema[name] == dtype:
            continue
        if dtype == pl.Date and frame.schema[name] == pl.String:
            expr = pl.col(name).str.to_date("%Y-%m-%d", strict=True)  # ISO text, e.g. from CSV
        else:
            expr = pl.col(name).cast(dtype, strict=True)
        try:
            frame.select(expr)
        except Exception as exc:  # polars raises several types; the message is what matters
            raise ValueError(
                f"trades_spec: column {name} has dtype {frame.schema[name]} and cannot be cast to {dtype}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        casts.append(expr)
    if casts:
        frame = frame.with_columns(casts)
    for name in KEY_COLUMNS:
        nulls = frame.get_column(name).null_count()
        if nulls:
            raise ValueError(f"trades_spec: {nulls} record(s) have a null {name}")
    _check_rows(frame, pl.col("EndDate") < pl.col("StartDate"), "EndDate before StartDate")
    _check_rows(frame, pl.col("PublishedDate") < pl.col("EndDate"), "PublishedDate before EndDate")
    frame = frame.unique(maintain_order=True)
    dup = frame.filter(pl.len().over("Section", "EndDate", "PublishedDate") > 1)
    if dup.height:
        first = dup.row(0, named=True)
        raise ValueError(
            f"trades_spec: {dup.height} records share (Section, EndDate, PublishedDate) with different values, "
            f"e.g. Section={first['Section']} EndDate={first['EndDate']} PublishedDate={first['PublishedDate']}"
        )
    if end is not None:
        frame = frame.filter(pl.col("PublishedDate") < end)
    published = frame.get_column("PublishedDate").unique().sort()
    usable = pl.DataFrame(
        {"PublishedDate": published, "UsableDate": [usable_date(p) for p in published]},
        schema={"PublishedDate": pl.Date(), "UsableDate": pl.Date()},
    )
    return (
        frame.join(usable, on="PublishedDate", how="left")
        .sort("Section", "EndDate", "PublishedDate")
        .with_row_index("row_id")
        .with_columns(_ratio_exprs())
        .with_columns(_smart_money_expr())
    )


def _check_rows(frame: pl.DataFrame, bad: pl.Expr, what: str) -> None:
    rows = frame.filter(bad)
    if rows.height:
        r = rows.row(0, named=True)
        raise ValueError(
            f"trades_spec: {rows.height} record(s) with {what}, e.g. Section={r['Section']} "
            f"StartDate={r['StartDate']} EndDate={r['EndDate']} PublishedDate={r['PublishedDate']}"
        )


def _ratio_exprs() -> list[pl.Expr]:
    ratios = []
    for (investor, _), name in zip(INVESTOR_TYPES, NET_RATIO_COLUMNS, strict=True):
        total = pl.col(f"{investor}Total")
        # A type that did not trade in a Section that week has no ratio (not 0, not inf).
        ratios.append(
            pl.when(total > 0)
            .then(pl.col(f"{investor}Balance") / total)
            .otherwise(None)
            .fill_nan(None)
            .alias(name)
        )
    return ratios


def _smart_money_expr() -> pl.Expr:
    return (pl.col("flow_foreigners_net_ratio") - pl.col("flow_individuals_net_ratio")).alias(SMART_MONEY)


# --------------------------------------------------------------------------- core


def expand_trades_spec(
    raw: pl.DataFrame | pl.LazyFrame,
    start: dt.date,
    end: dt.date,
    *,
    history: FlowHistory | None = None,
    lineage: SectionLineage | None = None,
) -> pl.DataFrame:
    """Daily point-in-time rows per Section for the trading days in [start, end] (module doc).

    ``raw``: trades_spec records in the canonical schema (``TRADES_SPEC``), any order, revisions
    included; see the module doc for how far back they must reach. Returns rows sorted by
    (Date, Section) with exactly the columns of :data:`OUTPUT_SCHEMA`.
    """
    if start > end:
        raise ValueError(f"expand_trades_spec: start {start} is after end {end}")
    history = history or FlowHistory()
    lineage = lineage if lineage is not None else SectionLineage()
    versions = prepare_versions(raw, end)
    days = trading_days(start, end)
    if versions.is_empty() or not days:
        return empty_output()

    snapshots = _snapshots(versions, history, lineage)
    day_frame = pl.DataFrame({"Date": list(days)}, schema={"Date": pl.Date()})
    sections = versions.select("Section").unique()
    retirements = _retirements(versions, lineage)
    daily = (
        day_frame.join(sections, how="cross")
        .sort("Date")
        .join_asof(
            snapshots,
            left_on="Date",
            right_on="snap",
            by="Section",
            strategy="backward",
            check_sortedness=False,
        )
        .join(retirements, on="Section", how="left")
        # Before its first usable week a Section does not exist yet; from its successor's first
        # usable week on it is retired.
        .filter(pl.col("snap").is_not_null())
        .filter(pl.col("retired_from").is_null() | (pl.col("Date") < pl.col("retired_from")))
        .join(versions.drop("Section"), on="row_id", how="left")
    )
    lo = daily.get_column("UsableDate").min() if daily.height else start
    ordinals = pl.DataFrame({"_day": list(trading_days(min(lo, start), end))}, schema={"_day": pl.Date()})
    ordinals = ordinals.with_row_index("_ord")
    daily = (
        daily.join(ordinals.rename({"_day": "Date", "_ord": "_ord_d"}), on="Date", how="left")
        .join(ordinals.rename({"_day": "UsableDate", "_ord": "_ord_u"}), on="UsableDate", how="left")
        .with_columns(
            (pl.col("_ord_d").cast(pl.Int32) - pl.col("_ord_u").cast(pl.Int32) + 1).alias(
                "days_since_published"
            ),
            (pl.col("Date") == pl.col("UsableDate")).alias("is_fresh"),
            pl.when(pl.col(f"{SMART_MONEY}_z") >= 2)
            .then(1)
            .when(pl.col(f"{SMART_MONEY}_z") <= -2)
            .then(-1)
            .when(pl.col(f"{SMART_MONEY}_z").is_not_null())
            .then(0)
            .cast(pl.Int8)
            .alias(SMART_MONEY_EXTREME),
        )
    )
    return daily.select([pl.col(c).cast(t) for c, t in OUTPUT_SCHEMA.items()]).sort("Date", "Section")


def _retirements(versions: pl.DataFrame, lineage: SectionLineage) -> pl.DataFrame:
    """Section -> first day its successor has a usable week (null: never retires)."""
    first = versions.group_by("Section").agg(pl.col("UsableDate").min().alias("retired_from"))
    succ = pl.DataFrame(
        {"Section": list(lineage.successors), "_succ": list(lineage.successors.values())},
        schema={"Section": pl.String(), "_succ": pl.String()},
    )
    return succ.join(first.rename({"Section": "_succ"}), on="_succ", how="inner").select(
        "Section", "retired_from"
    )


def _history_rows(versions: pl.DataFrame, lineage: SectionLineage) -> pl.DataFrame:
    """The records each Section's derived columns may look at: its own (``_own`` 1), and its
    predecessor's weeks before the lineage cutoff (``_own`` 0), keyed by ``HistSection``."""
    cols = ["row_id", "Section", "EndDate", "PublishedDate", "UsableDate", *Z_MEASURES]
    own = versions.select(cols).with_columns(pl.col("Section").alias("HistSection"), pl.lit(1).alias("_own"))
    present = set(versions.get_column("Section").unique().to_list())
    parts = [own]
    for new, old in lineage.predecessors.items():
        if new in present and old in present:
            parts.append(
                versions.filter((pl.col("Section") == old) & (pl.col("EndDate") < lineage.cutoff))
                .select(cols)
                .with_columns(pl.lit(new).alias("HistSection"), pl.lit(0).alias("_own"))
            )
    return pl.concat(parts)


def _snapshots(versions: pl.DataFrame, history: FlowHistory, lineage: SectionLineage) -> pl.DataFrame:
    """One row per (Section, snap): the state from trading day ``snap`` until the next snap.

    The set of usable records only changes on a record's UsableDate, so the derived columns are
    computed once per such day and carried forward to the days in between by an as-of join.
    """
    hist = _history_rows(versions, lineage)
    # Selected week at each snap: the lexicographic max of (EndDate, PublishedDate) among the own
    # records usable by then, as a running max over records in UsableDate order.
    own = versions.select(
        "Section",
        "UsableDate",
        "row_id",
        (pl.col("EndDate").cast(pl.Int64) * 65536 + pl.col("PublishedDate").cast(pl.Int64)).alias("_key"),
    )
    running = (
        own.sort("Section", "UsableDate", "_key")
        .with_columns(pl.col("_key").cum_max().over("Section").alias("_best"))
        .group_by("Section", "UsableDate")
        .agg(pl.col("_best").max())
        .join(
            own.select("Section", pl.col("_key").alias("_best"), "row_id"),
            on=["Section", "_best"],
            how="left",
        )
        .sort("UsableDate")
    )
    snaps = (
        hist.select(pl.col("HistSection").alias("Section"), pl.col("UsableDate").alias("snap"))
        .unique()
        .sort("snap")
        .join_asof(
            running.select("Section", "UsableDate", "row_id"),
            left_on="snap",
            right_on="UsableDate",
            by="Section",
            strategy="backward",
            check_sortedness=False,  # sorted globally by the key just above
        )
        .filter(pl.col("row_id").is_not_null())
        .join(versions.select("row_id", pl.col("EndDate").alias("_sel_end")), on="row_id", how="left")
        .select("Section", "snap", "row_id", "_sel_end")
    )
    span = dt.timedelta(days=7 * history.weeks)
    # One inequality join per Section: a join_where with the Section equality among its
    # predicates pairs every snap with every Section's records before filtering.
    hist_by_section = hist.drop("row_id", "Section").partition_by("HistSection", as_dict=True)
    window = pl.concat(
        [
            part.join_where(
                hist_by_section[(section,)],
                pl.col("UsableDate") <= pl.col("snap"),
                pl.col("EndDate") <= pl.col("_sel_end"),
                pl.col("EndDate") > pl.col("_sel_end") - span,
            )
            for (section,), part in snaps.partition_by("Section", as_dict=True).items()
        ]
    )
    # One value per week: the Section's own record before a predecessor's, then the latest version.
    weeks = window.group_by("Section", "snap", "EndDate").agg(
        pl.col("_sel_end").first(),
        *(pl.col(m).sort_by("_own", "PublishedDate").last() for m in Z_MEASURES),
    )
    # Sorted so that each group's float sums run in one fixed order: reruns are bit-identical.
    weeks = weeks.sort("Section", "snap", "EndDate")
    is_sel = pl.col("EndDate") == pl.col("_sel_end")
    before = pl.col("EndDate") < pl.col("_sel_end")
    stats = weeks.group_by("Section", "snap", maintain_order=True).agg(
        pl.len().cast(pl.UInt32).alias(Z_WEEKS),
        pl.col(SMART_MONEY)
        .filter(before)
        .sort_by(pl.col("EndDate").filter(before))
        .last()
        .alias("_prev_smart"),
        *(pl.col(m).filter(is_sel).first().alias(f"_x_{m}") for m in Z_MEASURES),
        *(pl.col(m).mean().alias(f"_mean_{m}") for m in Z_MEASURES),
        *(pl.col(m).std(ddof=1).alias(f"_std_{m}") for m in Z_MEASURES),
        *(pl.col(m).count().alias(f"_n_{m}") for m in Z_MEASURES),
    )
    z_exprs = [
        pl.when((pl.col(f"_n_{m}") >= history.min_weeks) & (pl.col(f"_std_{m}") > 0))
        .then((pl.col(f"_x_{m}") - pl.col(f"_mean_{m}")) / pl.col(f"_std_{m}"))
        .otherwise(None)
        .alias(f"{m}_z")
        for m in Z_MEASURES
    ]
    stats = stats.select(
        "Section",
        "snap",
        Z_WEEKS,
        (pl.col(f"_x_{SMART_MONEY}") - pl.col("_prev_smart")).alias(SMART_MONEY_WOW),
        *z_exprs,
    )
    return snaps.join(stats, on=["Section", "snap"], how="left").drop("_sel_end").sort("snap")
