"""Attach daily Section flows to stocks through each stock's market on each day (pure Polars).

A stock's flow features on trading day D come from the Section of its listed_info ``MarketCode``
as of D (the latest listed_info row of that Code dated on or before D: listed_info history may be
sparse). The market code maps to a primary Section and a fallback Section (the same market across
the 2022-04-04 restructuring, :data:`gogooku3.flows.sections.MARKET_SECTIONS`): the primary is
used when the daily flows have a row for it on D, else the fallback. So a TSE1st stock that became
Prime keeps a continuous series: TSE1st rows up to 2022-04-01, TSE1st rows (the last old week,
carried forward) on the days after 2022-04-04 before the first TSEPrime week is usable, TSEPrime
rows from then on. ``flow_section`` records which Section was used.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from gogooku3.flows.expand import FLOW_FEATURE_COLUMNS
from gogooku3.flows.sections import section_expr
from gogooku3.jquants.datasets import MARKET_CODES

#: Row-bookkeeping columns of the daily flows, renamed when attached to stocks.
ATTACHED_META = {
    "Section": "flow_section",
    "EndDate": "flow_week_end",
    "PublishedDate": "flow_published_date",
    "days_since_published": "flow_days_since_published",
    "is_fresh": "flow_is_fresh",
}


def attach_flows_to_stocks(
    flows_daily: pl.DataFrame | pl.LazyFrame,
    listed_info_history: pl.DataFrame | pl.LazyFrame,
    *,
    panel: pl.DataFrame | pl.LazyFrame | None = None,
    columns: Sequence[str] = FLOW_FEATURE_COLUMNS,
) -> pl.DataFrame:
    """Per (Date, Code) flow features from the stock's Section on that Date.

    ``flows_daily``: output of :func:`~gogooku3.flows.expand.expand_trades_spec` (needs Date,
    Section, EndDate, PublishedDate, days_since_published, is_fresh and ``columns``).
    ``listed_info_history``: listed_info rows (Date, Code, MarketCode), any dates, possibly sparse.
    ``panel``: the (Date, Code) rows to attach to (e.g. daily_quotes; its other columns are kept).
    Default: every Date of ``flows_daily`` x every Code that has a listed_info row on or before
    it (sparse history cannot tell a delisting, so pass ``panel`` when that matters).

    Returns the panel's rows, sorted by (Date, Code), with ``columns`` and :data:`ATTACHED_META`'s
    renamed columns added; null where the stock has no market code yet, its market has no
    Section (TOKYO PRO MARKET, other) or neither Section has a row on that Date.
    """
    flows = _collect(flows_daily)
    listed = _collect(listed_info_history)
    _require(flows, ("Date", "Section", *ATTACHED_META, *columns), "flows_daily")
    _require(listed, ("Date", "Code", "MarketCode"), "listed_info_history")
    # Internal name, so a panel that has its own MarketCode column keeps it untouched.
    listed = listed.select(
        pl.col("Date").cast(pl.Date),
        pl.col("Code").cast(pl.String),
        pl.col("MarketCode").cast(pl.String).alias("_market"),
    ).filter(pl.col("_market").is_not_null())
    unknown = listed.filter(~pl.col("_market").is_in(list(MARKET_CODES))).get_column("_market").unique()
    if unknown.len():
        raise ValueError(
            f"listed_info_history: unknown MarketCode(s) {', '.join(sorted(unknown.to_list()))}; "
            f"expected one of {', '.join(sorted(MARKET_CODES))}"
        )
    listed = listed.unique(maintain_order=True)
    clash = listed.filter(pl.len().over("Date", "Code") > 1)
    if clash.height:
        r = clash.row(0, named=True)
        raise ValueError(
            f"listed_info_history: Code {r['Code']} has {clash.height} different MarketCodes on {r['Date']}"
        )
    listed = listed.sort("Date")

    if panel is None:
        codes = listed.select("Code").unique()
        base = flows.select("Date").unique().join(codes, how="cross")
    else:
        base = _collect(panel)
        _require(base, ("Date", "Code"), "panel")
    base = base.sort("Date").join_asof(
        listed, on="Date", by="Code", strategy="backward", check_sortedness=False
    )
    if panel is None:
        base = base.filter(pl.col("_market").is_not_null())

    present = flows.select("Date", pl.col("Section").alias("_primary"), pl.lit(True).alias("_has_primary"))
    base = (
        base.with_columns(
            section_expr(pl.col("_market")).alias("_primary"),
            section_expr(pl.col("_market"), fallback=True).alias("_fallback"),
        )
        .join(present, on=["Date", "_primary"], how="left")
        .with_columns(
            pl.when(pl.col("_has_primary"))
            .then(pl.col("_primary"))
            .otherwise(pl.col("_fallback"))
            .alias("_section")
        )
    )
    attached = flows.select(
        "Date",
        pl.col("Section").alias("_section"),
        *(pl.col(src).alias(dst) for src, dst in ATTACHED_META.items() if src != "Section"),
        *columns,
    )
    out = base.join(attached, on=["Date", "_section"], how="left")
    # flow_section names the Section actually joined (null when none was).
    out = out.with_columns(
        pl.when(pl.col("flow_week_end").is_not_null()).then(pl.col("_section")).alias("flow_section")
    )
    return out.drop("_market", "_primary", "_fallback", "_has_primary", "_section").sort("Date", "Code")


def _collect(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _require(frame: pl.DataFrame, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")
