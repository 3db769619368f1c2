"""Property tests of the trades_spec expansion over random publication schedules.

Each example draws weeks, Sections, publication delays (landing on weekends and holidays too),
missing weeks and revisions, then checks the expansion against the usability rule written out
independently here (``next_trading_day(PublishedDate) <= D``) and against a slow brute-force
reference computed day by day.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gogooku3.calendar import is_trading_day, next_trading_day, trading_days
from gogooku3.flows import FlowHistory, SectionLineage, expand_trades_spec
from gogooku3.flows.synthetic import frame, record

HISTORY = FlowHistory(weeks=6, min_weeks=2)
# TSE1st/TSEPrime exercise the 2022 lineage (retirement, joined history); "Other" has none.
SECTIONS = ("TSE1st", "TSEPrime", "Other")
LINEAGE = SectionLineage()
BASES = (dt.date(2021, 12, 27), dt.date(2022, 2, 28), dt.date(2023, 12, 4), dt.date(2024, 4, 8))


@st.composite
def schedules(draw: st.DrawFn) -> tuple[pl.DataFrame, dt.date, dt.date]:
    base = draw(st.sampled_from(BASES))
    n_weeks = draw(st.integers(1, 14))
    rows = []
    for w in range(n_weeks):
        monday = base + dt.timedelta(days=7 * w)
        for section in SECTIONS:
            if not draw(st.booleans()) and draw(st.booleans()):  # ~25% of weeks missing per Section
                continue
            end = monday + dt.timedelta(days=4)
            published = end + dt.timedelta(days=draw(st.integers(0, 16)))
            n_versions = draw(st.sampled_from((1, 1, 1, 2, 3)))
            for _ in range(n_versions):
                buy_f = draw(st.floats(1.0, 100.0))
                buy_i = draw(st.floats(1.0, 100.0))
                rows.append(
                    record(
                        section,
                        monday,
                        end,
                        published,
                        purchases={"Foreigners": buy_f, "Individuals": buy_i},
                        sales={"Foreigners": 50.0, "Individuals": 50.0},
                        default=10.0,
                    )
                )
                published += dt.timedelta(days=draw(st.integers(1, 30)))
    span_end = base + dt.timedelta(days=7 * n_weeks + 60)
    start = base + dt.timedelta(days=draw(st.integers(0, 7 * n_weeks + 30)))
    end = start + dt.timedelta(days=draw(st.integers(0, span_end.toordinal() - start.toordinal())))
    return frame(rows), start, end


# ----------------------------------------------------------------------------- reference


def _usable_on(published: dt.date, day: dt.date) -> bool:
    """The documented rule, spelled out: first usable on the trading day after publication."""
    return next_trading_day(published) <= day


def _smart(r: dict) -> float:
    f = r["ForeignersBalance"] / r["ForeignersTotal"]
    i = r["IndividualsBalance"] / r["IndividualsTotal"]
    return f - i


def reference(raw: pl.DataFrame, start: dt.date, end: dt.date) -> dict[tuple[dt.date, str], dict]:
    """(Date, Section) -> expected fields, computed the slow obvious way."""
    recs = raw.to_dicts()
    out = {}
    for day in trading_days(start, end):
        known = [r for r in recs if _usable_on(r["PublishedDate"], day)]
        present = {r["Section"] for r in known}
        for section in present:
            successor = LINEAGE.successors.get(section)
            if successor in present:  # retired once its successor has a usable week
                continue
            own = [r for r in known if r["Section"] == section]
            sel = max(own, key=lambda r: (r["EndDate"], r["PublishedDate"]))
            # History: own weeks, plus the predecessor's weeks before the cutoff; per week the
            # Section's own record wins, then the latest version.
            pred = LINEAGE.predecessors.get(section)
            hist = own + [r for r in known if r["Section"] == pred and r["EndDate"] < LINEAGE.cutoff]
            per_week: dict[dt.date, dict] = {}
            for r in sorted(hist, key=lambda r: (r["Section"] == section, r["PublishedDate"])):
                per_week[r["EndDate"]] = r
            lo = sel["EndDate"] - dt.timedelta(days=7 * HISTORY.weeks)
            window = {e: _smart(r) for e, r in per_week.items() if lo < e <= sel["EndDate"]}
            values = list(window.values())
            z = None
            if len(values) >= HISTORY.min_weeks and statistics.stdev(values) > 0:
                z = (_smart(sel) - statistics.mean(values)) / statistics.stdev(values)
            earlier = [e for e in window if e < sel["EndDate"]]
            wow = _smart(sel) - window[max(earlier)] if earlier else None
            dsp = sum(1 for d in trading_days(sel["PublishedDate"] + dt.timedelta(days=1), day))
            out[(day, section)] = {
                "EndDate": sel["EndDate"],
                "PublishedDate": sel["PublishedDate"],
                "flow_smart_money_idx": _smart(sel),
                "flow_smart_money_idx_z": z,
                "flow_smart_money_idx_wow": wow,
                "flow_z_weeks": len(values),
                "days_since_published": dsp,
                "is_fresh": day == next_trading_day(sel["PublishedDate"]),
            }
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


COMMON = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(schedules())
def test_no_row_uses_a_week_not_yet_usable(case: tuple[pl.DataFrame, dt.date, dt.date]) -> None:
    raw, start, end = case
    out = expand_trades_spec(raw, start, end, history=HISTORY)
    for row in out.select("Date", "PublishedDate", "UsableDate").iter_rows(named=True):
        assert is_trading_day(row["Date"])
        assert row["PublishedDate"] < row["Date"]
        assert _usable_on(row["PublishedDate"], row["Date"]), row
        assert row["UsableDate"] == next_trading_day(row["PublishedDate"])


@COMMON
@given(schedules())
def test_rows_match_brute_force_reference(case: tuple[pl.DataFrame, dt.date, dt.date]) -> None:
    """Exactly one row per existing Section per trading day, with the right week and values."""
    raw, start, end = case
    out = expand_trades_spec(raw, start, end, history=HISTORY)
    expected = reference(raw, start, end)
    keys = [(r["Date"], r["Section"]) for r in out.select("Date", "Section").iter_rows(named=True)]
    assert len(keys) == len(set(keys)), "duplicate (Date, Section) rows"
    assert set(keys) == set(expected)
    for row in out.iter_rows(named=True):
        want = expected[(row["Date"], row["Section"])]
        for name, value in want.items():
            if isinstance(value, float) or value is None:
                assert _close(row[name], value), (row["Date"], row["Section"], name, row[name], value)
            else:
                assert row[name] == value, (row["Date"], row["Section"], name, row[name], value)


@COMMON
@given(schedules(), st.data())
def test_range_equals_concatenation_of_subranges(
    case: tuple[pl.DataFrame, dt.date, dt.date], data: st.DataObject
) -> None:
    raw, start, end = case
    split = start + dt.timedelta(days=data.draw(st.integers(0, (end - start).days)))
    whole = expand_trades_spec(raw, start, end, history=HISTORY)
    left = expand_trades_spec(raw, start, split, history=HISTORY)
    right = (
        expand_trades_spec(raw, split + dt.timedelta(days=1), end, history=HISTORY)
        if split < end
        else whole.clear()
    )
    assert whole.equals(pl.concat([left, right])), f"split at {split}"


@COMMON
@given(schedules())
def test_records_published_after_a_day_do_not_change_it(case: tuple[pl.DataFrame, dt.date, dt.date]) -> None:
    """Point-in-time: dropping every record published on/after D leaves D's rows unchanged."""
    raw, start, end = case
    out = expand_trades_spec(raw, start, end, history=HISTORY)
    for day in trading_days(start, end)[:: max(1, len(trading_days(start, end)) // 4)]:
        known = raw.filter(pl.col("PublishedDate") < day)
        again = expand_trades_spec(known, day, day, history=HISTORY)
        assert out.filter(pl.col("Date") == day).equals(again), day


def test_rule_is_published_strictly_before_the_day() -> None:
    # The rule and the module doc's equivalent form (PublishedDate < D on a trading day D) agree
    # around the year-end closure and the Coming-of-Age holiday, weekends included.
    for day in trading_days(dt.date(2023, 12, 20), dt.date(2024, 1, 15)):
        for offset in range(-10, 3):
            published = day + dt.timedelta(days=offset)
            assert _usable_on(published, day) == (published < day)
