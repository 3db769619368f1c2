"""Synthetic trades_spec records for tests and benchmarks (deterministic from a seed).

Not a market model: values are random but internally consistent (Total = Sales + Purchases,
Balance = Purchases - Sales per investor type), weeks run Monday-Friday, and each week is
published on the Thursday after it (as J-Quants does), optionally with revisions republished later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from gogooku3.flows.sections import RESTRUCTURING_DATE
from gogooku3.jquants.datasets import INVESTOR_TYPES, SECTIONS_BEFORE_2022, SECTIONS_FROM_2022, TRADES_SPEC


def record(
    section: str,
    start: dt.date,
    end: dt.date,
    published: dt.date,
    *,
    purchases: dict[str, float] | None = None,
    sales: dict[str, float] | None = None,
    default: float = 1000.0,
) -> dict[str, object]:
    """One canonical trades_spec record. ``purchases``/``sales`` by investor type (default
    ``default`` each, i.e. a zero balance); Total and Balance are derived from them."""
    purchases = purchases or {}
    sales = sales or {}
    row: dict[str, object] = {
        "PublishedDate": published,
        "StartDate": start,
        "EndDate": end,
        "Section": section,
    }
    for investor, _ in INVESTOR_TYPES:
        buy = float(purchases.get(investor, default))
        sell = float(sales.get(investor, default))
        row[f"{investor}Sales"] = sell
        row[f"{investor}Purchases"] = buy
        row[f"{investor}Total"] = buy + sell
        row[f"{investor}Balance"] = buy - sell
    return row


def week(section: str, monday: dt.date, published: dt.date, foreigners: float) -> dict[str, object]:
    """A Monday-Friday week whose foreigners' net ratio (Balance / Total) is ``foreigners``."""
    return record(
        section,
        monday,
        monday + dt.timedelta(days=4),
        published,
        purchases={"Foreigners": 1000 * (1 + foreigners)},
        sales={"Foreigners": 1000 * (1 - foreigners)},
    )


def frame(records: Iterable[dict[str, object]]) -> pl.DataFrame:
    """Records -> a frame with the canonical trades_spec schema (empty allowed)."""
    rows = list(records)
    if not rows:
        return pl.DataFrame(schema=TRADES_SPEC.schema)
    return pl.DataFrame(rows, schema=TRADES_SPEC.schema)


def sections_for_week(week_start: dt.date) -> Sequence[str]:
    """The Sections J-Quants reports for a week starting on ``week_start`` (restructuring-aware)."""
    return SECTIONS_FROM_2022 if week_start >= RESTRUCTURING_DATE else SECTIONS_BEFORE_2022


def synthetic_raw(
    start: dt.date,
    end: dt.date,
    *,
    seed: int = 0,
    revision_rate: float = 0.05,
) -> pl.DataFrame:
    """Weekly records for every Monday-Friday week starting in [start, end], every Section of
    its era, published the Thursday after the week; a ``revision_rate`` share of records is
    republished 1-4 weeks later with perturbed values."""
    rng = np.random.default_rng(seed)
    monday = start - dt.timedelta(days=start.weekday())
    weeks = []
    while monday <= end:
        weeks.append(monday)
        monday += dt.timedelta(days=7)
    n_types = len(INVESTOR_TYPES)
    rows: list[dict[str, object]] = []
    for week in weeks:
        friday = week + dt.timedelta(days=4)
        published = friday + dt.timedelta(days=6)  # the Thursday after
        for section in sections_for_week(week):
            buys = rng.lognormal(10.0, 1.0, n_types)
            sells = buys * rng.uniform(0.8, 1.25, n_types)
            versions = [(published, buys, sells)]
            if rng.random() < revision_rate:
                later = published + dt.timedelta(days=7 * int(rng.integers(1, 5)))
                versions.append((later, buys * rng.uniform(0.95, 1.05, n_types), sells))
            for pub, b, s in versions:
                rows.append(
                    record(
                        section,
                        week,
                        friday,
                        pub,
                        purchases={t: float(v) for (t, _), v in zip(INVESTOR_TYPES, b, strict=True)},
                        sales={t: float(v) for (t, _), v in zip(INVESTOR_TYPES, s, strict=True)},
                    )
                )
    return frame(rows)
