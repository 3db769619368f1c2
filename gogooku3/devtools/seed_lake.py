"""Seed a lake with history straight from the synthetic market's ground truth.

``make dag-test`` and the feature DAG's end-to-end test need months of raw history before the one
day they push through the DAGs; fetching it day by day from the emulator would only re-test the
fetch path (which has its own tests) at the cost of minutes. The partitions written here are
exactly what the emulator serves for the same market config (same seed, codes and range), written
through the same lake API, and the flows expansion runs on them as in production.

``python -m gogooku3.devtools.seed_lake --lake URI --seed 7 --codes 200 --start D --end D``
writes every dataset for the dates in [start, end] (``--market-start`` / ``--market-end`` give the
market's own range, which must match the emulator's so that the data agree).
"""

from __future__ import annotations

import argparse
import datetime as dt

from gogooku3.calendar import is_trading_day, trading_days
from gogooku3.fetch import DAILY_DATASETS
from gogooku3.flows import expand_to_lake
from gogooku3.jquants.datasets import DATASET_NAMES, get_dataset
from gogooku3.lake import Lake, open_lake
from gogooku3.market import Market, MarketConfig, generate_market

SOURCE = "gogooku3.devtools.seed_lake(market ground truth)"


def seed_lake(lake: Lake, market: Market, start: dt.date, end: dt.date) -> int:
    """Write the raw partitions a daily fetch would write for every date in [start, end] and the
    trading calendar's snapshot of ``end``, then the trades_spec expansion for the trading days;
    returns the number of raw partitions written."""
    written = 0
    day = start
    while day <= end:
        for name in DATASET_NAMES:
            frame = market.frame(name, day)
            # As gogooku3.fetch writes them: every answer with rows; an empty one only for the
            # event tables (statements, trades_spec, ...) on a trading day ("fetched, nothing happened").
            if frame.is_empty() and not (name not in DAILY_DATASETS and is_trading_day(day)):
                continue
            ds = get_dataset(name)
            lake.write_partition(
                "raw", name, day, frame, source=SOURCE, sort_by=ds.key, date_column=ds.partition_by
            )
            written += 1
        day += dt.timedelta(days=1)
    # the exchange's calendar, as the fetch of the last day saw it (gogooku3.exchange_calendar)
    calendar = get_dataset("trading_calendar")
    lake.write_partition(
        "raw", calendar.name, end, market.trading_calendar(), source=SOURCE, sort_by=calendar.key
    )
    written += 1
    if trading_days(start, end):
        expand_to_lake(lake, start, end)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--codes", type=int, default=200)
    ap.add_argument("--signal", type=float, default=1.0)
    ap.add_argument("--market-start", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--market-end", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--start", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--end", required=True, type=dt.date.fromisoformat)
    args = ap.parse_args(argv)
    market = generate_market(
        MarketConfig(
            seed=args.seed,
            n_codes=args.codes,
            start=args.market_start,
            end=args.market_end,
            signal=args.signal,
        )
    )
    n = seed_lake(open_lake(args.lake), market, args.start, args.end)
    print(f"seed_lake: {n} raw partitions {args.start}..{args.end} -> {args.lake}")


if __name__ == "__main__":
    main()
