"""Weekly investor-type trading (trades_spec) of the synthetic market.

One record per (week, Section): the week is the trading days of one ISO calendar week,
``StartDate``/``EndDate`` its first/last trading day, ``PublishedDate`` the Thursday of the
following week (the next trading day when that Thursday is closed). Values are in thousands of
yen and internally consistent:

* per investor type: ``Total = Sales + Purchases`` and ``Balance = Purchases - Sales``;
* ``Brokerage`` = the sum of the ten customer types (Individuals ... OtherFinancialInstitutions);
* ``Total`` (the investor type) = ``Proprietary + Brokerage``;
* Section ``TokyoNagoya`` = the sum over the other Sections of the week.

The foreigners' imbalance of each Section follows an AR(1) process (the planted flow signal, see
:mod:`gogooku3.market`). From weeks ending 2023-04-01 on, about 10% of weeks are revised: every
Section of the week is republished on a later Thursday with slightly changed values (same
StartDate/EndDate/Section, newer PublishedDate), as J-Quants does since April 2023.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from gogooku3.calendar import on_or_after, trading_days
from gogooku3.jquants.datasets import (
    INVESTOR_MEASURES,
    INVESTOR_TYPES,
    SECTIONS_BEFORE_2022,
    SECTIONS_FROM_2022,
    TRADES_SPEC,
)
from gogooku3.market.reference import RESTRUCTURE_DATE

#: All Sections a stock can belong to, in a fixed order (index into the flow arrays); TokyoNagoya
#: is the aggregate and last.
ALL_SECTIONS: tuple[str, ...] = (*SECTIONS_BEFORE_2022[:4], *SECTIONS_FROM_2022[:3], "TokyoNagoya")
SECTION_INDEX: dict[str, int] = {s: k for k, s in enumerate(ALL_SECTIONS)}
# Latent flow "slot" of each Section, so TSE1st's state carries over into TSEPrime etc.
_SLOT = {
    "TSE1st": 0,
    "TSE2nd": 1,
    "TSEMothers": 2,
    "TSEJASDAQ": 3,
    "TSEPrime": 0,
    "TSEStandard": 1,
    "TSEGrowth": 2,
}
# Weekly customer sales of each Section, thousands of yen (order of magnitude of the real TSE).
_SECTION_SIZE = {
    "TSE1st": 1.5e10,
    "TSE2nd": 3e8,
    "TSEMothers": 1.2e9,
    "TSEJASDAQ": 3e8,
    "TSEPrime": 1.4e10,
    "TSEStandard": 4e8,
    "TSEGrowth": 1e9,
}
# Share of each customer type in brokerage trading (normalised below).
_CUSTOMER_TYPES = (
    "Individuals",
    "Foreigners",
    "SecuritiesCos",
    "InvestmentTrusts",
    "BusinessCos",
    "OtherCos",
    "InsuranceCos",
    "CityBKsRegionalBKsEtc",
    "TrustBanks",
    "OtherFinancialInstitutions",
)
_CUSTOMER_SHARE = np.array([0.22, 0.62, 0.005, 0.03, 0.02, 0.003, 0.005, 0.003, 0.04, 0.002])
_CUSTOMER_SHARE = _CUSTOMER_SHARE / _CUSTOMER_SHARE.sum()
_PROPRIETARY_SHARE = 0.15
#: AR(1) coefficient and stationary std of the foreigners' purchase/sales imbalance per Section.
FLOW_AR = 0.6
FLOW_IMBALANCE_STD = 0.04
REVISIONS_FROM = dt.date(2023, 4, 1)
REVISION_PROBABILITY = 0.10


@dataclass(frozen=True)
class Week:
    start: dt.date
    end: dt.date
    published: dt.date


def trading_weeks(days: tuple[dt.date, ...]) -> list[Week]:
    """Group trading days into ISO weeks and date each week's publication (Thursday after)."""
    weeks: list[Week] = []
    current: list[dt.date] = []
    for day in days:
        if current and day.isocalendar()[:2] != current[0].isocalendar()[:2]:
            weeks.append(_week(current))
            current = []
        current.append(day)
    if current:
        weeks.append(_week(current))
    return weeks


def _week(days: list[dt.date]) -> Week:
    monday = days[0] - dt.timedelta(days=days[0].weekday())
    thursday_after = monday + dt.timedelta(days=10)
    return Week(start=days[0], end=days[-1], published=on_or_after(thursday_after))


def _values(rng: np.random.Generator, section: str, foreign_imbalance: float) -> dict[str, float]:
    """One Section-week of consistent Sales/Purchases for all 13 investor types."""
    size = _SECTION_SIZE[section] * float(np.exp(rng.normal(0.0, 0.15)))
    brokerage = size * (1 - _PROPRIETARY_SHARE)
    sales = np.round(brokerage * _CUSTOMER_SHARE * np.exp(rng.normal(0.0, 0.05, len(_CUSTOMER_SHARE))))
    imbalance = rng.normal(0.0, 0.05, len(_CUSTOMER_SHARE))
    imbalance[1] = foreign_imbalance
    imbalance[0] = -0.7 * foreign_imbalance + rng.normal(0.0, 0.02)  # individuals trade against
    purchases = np.round(sales * (1.0 + imbalance))
    prop_sales = round(size * _PROPRIETARY_SHARE * float(np.exp(rng.normal(0.0, 0.05))))
    prop_purchases = round(prop_sales * (1.0 + rng.normal(0.0, 0.02)))
    out: dict[str, float] = {}
    for k, name in enumerate(_CUSTOMER_TYPES):
        out[f"{name}Sales"], out[f"{name}Purchases"] = float(sales[k]), float(purchases[k])
    out["ProprietarySales"], out["ProprietaryPurchases"] = float(prop_sales), float(prop_purchases)
    return out


def _complete(base: dict[str, float]) -> dict[str, float]:
    """Derive Brokerage, Total and each type's Total/Balance from customer+proprietary values."""
    v = dict(base)
    for m in ("Sales", "Purchases"):
        v[f"Brokerage{m}"] = sum(v[f"{n}{m}"] for n in _CUSTOMER_TYPES)
        v[f"Total{m}"] = v[f"Proprietary{m}"] + v[f"Brokerage{m}"]
    for t, _ in INVESTOR_TYPES:
        v[f"{t}Total"] = v[f"{t}Sales"] + v[f"{t}Purchases"]
        v[f"{t}Balance"] = v[f"{t}Purchases"] - v[f"{t}Sales"]
    return v


def _sum_sections(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in rows[0] if k.endswith(("Sales", "Purchases"))]
    return {k: float(sum(r[k] for r in rows)) for k in keys}


def generate_trades_spec(rng: np.random.Generator, days: tuple[dt.date, ...], end: dt.date) -> pl.DataFrame:
    """All trades_spec records of the weeks of ``days`` published on or before ``end``.

    Sorted by (PublishedDate, Section, StartDate).
    """
    if not days:
        return pl.DataFrame(schema=TRADES_SPEC.schema)
    # whole ISO weeks: the first week starts on its own first trading day, even before days[0]
    monday = days[0] - dt.timedelta(days=days[0].weekday())
    weeks = trading_weeks(trading_days(monday, days[-1]))
    slots = np.zeros(4)
    records: list[dict] = []
    for week in weeks:
        slots = FLOW_AR * slots + rng.normal(0.0, FLOW_IMBALANCE_STD * np.sqrt(1 - FLOW_AR**2), 4)
        sections = SECTIONS_BEFORE_2022 if week.start < RESTRUCTURE_DATE else SECTIONS_FROM_2022
        bases = {s: _values(rng, s, float(slots[_SLOT[s]])) for s in sections if s != "TokyoNagoya"}
        bases["TokyoNagoya"] = _sum_sections(list(bases.values()))
        revise = week.end >= REVISIONS_FROM and rng.random() < REVISION_PROBABILITY
        lag_weeks = int(rng.integers(1, 5))
        revision_noise = {s: rng.normal(0.0, 0.01, 2 * len(_CUSTOMER_TYPES) + 2) for s in bases}
        for section, base in bases.items():
            if week.published <= end:
                records.append(_record(week.published, week, section, base))
        if not revise:
            continue
        published = on_or_after(week.published + dt.timedelta(days=7 * lag_weeks))
        if published > end:
            continue
        revised = {}
        for section in sections:
            if section == "TokyoNagoya":
                continue
            base = bases[section]
            keys = sorted(k for k in base if k.endswith(("Sales", "Purchases")))
            revised[section] = {
                k: float(np.round(base[k] * (1.0 + revision_noise[section][j]))) for j, k in enumerate(keys)
            }
        revised["TokyoNagoya"] = _sum_sections(list(revised.values()))
        for section, base in revised.items():
            records.append(_record(published, week, section, base))
    schema = TRADES_SPEC.schema
    if not records:
        return pl.DataFrame(schema=schema)
    df = pl.DataFrame(records, schema=schema)
    return df.sort("PublishedDate", "Section", "StartDate")


def _record(published: dt.date, week: Week, section: str, base: dict[str, float]) -> dict:
    values = _complete(base)
    row: dict = {"PublishedDate": published, "StartDate": week.start, "EndDate": week.end, "Section": section}
    for t, _ in INVESTOR_TYPES:
        for m, _ in INVESTOR_MEASURES:
            row[f"{t}{m}"] = values[f"{t}{m}"]
    return row


def foreign_flow_by_section(trades_spec: pl.DataFrame, days: tuple[dt.date, ...]) -> np.ndarray:
    """``(len(days), len(ALL_SECTIONS))``: the foreigners' net-flow ratio known on each day.

    For day ``t`` and a Section: among the Section's records with ``PublishedDate <= t``, the
    one with the latest ``EndDate`` (ties: the latest ``PublishedDate``, i.e. a revision), and
    its ``ForeignersBalance / ForeignersTotal``. 0.0 before the Section's first publication.
    """
    out = np.zeros((len(days), len(ALL_SECTIONS)))
    if trades_spec.is_empty():
        return out
    for section, group in trades_spec.group_by("Section"):
        k = SECTION_INDEX[section[0]]
        g = group.sort("PublishedDate", "EndDate")
        pubs = g["PublishedDate"].to_list()
        ends = g["EndDate"].to_list()
        ratio = (g["ForeignersBalance"] / g["ForeignersTotal"]).to_list()
        j, best_end, value = 0, None, 0.0
        for t, day in enumerate(days):
            while j < len(pubs) and pubs[j] <= day:
                if best_end is None or ends[j] >= best_end:
                    best_end, value = ends[j], ratio[j]
                j += 1
            out[t, k] = value
    return out
