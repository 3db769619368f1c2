"""Benchmark: trades_spec weekly -> daily expansion over 10 years (``make bench``).

Data: :func:`gogooku3.flows.synthetic.synthetic_raw`, every Monday-Friday week of 2015-2024,
every Section of its era (5 before the 2022-04-04 restructuring, 4 after), published the Thursday
after, 5% of records revised 1-4 weeks later. ``quick`` uses 2023-2024.

Rows reported:

1. ``expand_trades_spec`` over the whole range, default 52-week history and 2022 lineage.
2. The same records with all 8 Sections reported every week (a stress case: more Sections than
   ever exist at once), lineage off so that none retires.
3. ``attach_flows_to_stocks`` of row 1's output to a synthetic panel (1,000 codes every trading
   day, market codes switching at the restructuring; quick: 200 codes).

Memory: *peak RSS increase* = the process's resident set size sampled every 10 ms during the
call (/proc/self/statm, see gogooku3.bench.measure), minus the RSS just before it. Polars allocates outside Python's allocator, so
tracemalloc would not see it; ``ru_maxrss`` is a process-lifetime peak and stays flat once an
earlier step was bigger, so neither is used.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from gogooku3.bench.measure import measure
from gogooku3.calendar import trading_days
from gogooku3.flows import SectionLineage, attach_flows_to_stocks, expand_trades_spec
from gogooku3.flows.sections import RESTRUCTURING_DATE
from gogooku3.flows.synthetic import synthetic_raw
from gogooku3.jquants.datasets import SECTIONS_BEFORE_2022, SECTIONS_FROM_2022


def _measure(fn):
    """(result, seconds, peak RSS increase in MiB)."""
    out, m = measure(fn)
    return out, m.wall_s, m.rss_growth / 2**20


def _all_sections(raw: pl.DataFrame) -> pl.DataFrame:
    """Every week reported under all 8 Sections (values copied from the week's first Section)."""
    every = sorted(set(SECTIONS_BEFORE_2022) | set(SECTIONS_FROM_2022))
    base = raw.filter(pl.col("Section") == pl.col("Section").min().over("EndDate", "PublishedDate"))
    return pl.concat([base.with_columns(pl.lit(s).alias("Section")) for s in every])


def _listed(codes: int) -> pl.DataFrame:
    """Sparse listed_info: one row per code before and one after the restructuring."""
    old = ["0101", "0102", "0104", "0106", "0107"]
    new = {"0101": "0111", "0102": "0112", "0104": "0113", "0106": "0112", "0107": "0113"}
    names = [f"{1300 + i:04d}0" for i in range(codes)]
    before = [old[i % len(old)] for i in range(codes)]
    return pl.DataFrame(
        {
            "Date": [dt.date(2010, 1, 4)] * codes + [RESTRUCTURING_DATE] * codes,
            "Code": names * 2,
            "MarketCode": before + [new[m] for m in before],
        }
    )


def run(quick: bool) -> list[dict]:
    start, end = (
        (dt.date(2023, 1, 1), dt.date(2024, 12, 31))
        if quick
        else (dt.date(2015, 1, 1), dt.date(2024, 12, 31))
    )
    codes = 200 if quick else 1000
    raw = synthetic_raw(start - dt.timedelta(days=400), end, seed=11, revision_rate=0.05)
    days = len(trading_days(start, end))
    rows: list[dict] = []

    def row(case: str, records: int, out_rows: int, seconds: float, mib: float) -> dict:
        return {
            "case": case,
            "range": f"{start}..{end} ({days} trading days)",
            "input rows": records,
            "output rows": out_rows,
            "wall s": round(seconds, 3),
            "rows/s": round(out_rows / seconds) if seconds > 0 else None,
            "peak RSS increase MiB (sampled 10 ms)": round(mib, 1),
        }

    expand_trades_spec(raw, end - dt.timedelta(days=30), end)  # warm the calendar caches and Polars
    flows, s, mib = _measure(lambda: expand_trades_spec(raw, start, end))
    rows.append(row("expand, era Sections, 2022 lineage", raw.height, flows.height, s, mib))

    stress = _all_sections(raw)
    out, s, mib = _measure(lambda: expand_trades_spec(stress, start, end, lineage=SectionLineage.none()))
    rows.append(row("expand, all 8 Sections every week", stress.height, out.height, s, mib))

    listed = _listed(codes)
    attached, s, mib = _measure(lambda: attach_flows_to_stocks(flows, listed))
    rows.append(row(f"attach to {codes} codes x every day", flows.height, attached.height, s, mib))
    return rows


if __name__ == "__main__":  # pragma: no cover
    from gogooku3.bench import markdown_table

    print(markdown_table(run(quick=False)))
