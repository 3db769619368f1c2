"""Write a features lake straight from the synthetic market (tests, benchmarks, the demo's training).

The raw layers and the DAGs are tested elsewhere; training tests need ``features/features`` over
years of a market whose planted alpha is known. This builds the features in memory from the
market's ground-truth inputs (:func:`gogooku3.features.testing.market_inputs`) with the production
feature build and writes them through the lake API, exactly as ``features build`` lays them out.

``python -m gogooku3.devtools.seed_features --lake URI --codes 300 --start D --end D [--signal S]``
"""

from __future__ import annotations

import argparse
import datetime as dt

from gogooku3.lake import Lake, open_lake

SOURCE = "gogooku3.devtools.seed_features(market ground truth)"
#: The training tests' market: 300 codes over two years (490 trading days) is the smallest panel
#: whose four folds each test ~60 days with the planted signal clearly above the noise.
CI_MARKET = {"n_codes": 300, "start": dt.date(2022, 1, 1), "end": dt.date(2023, 12, 31)}


def seed_features(
    lake: Lake, n_codes: int, start: dt.date, end: dt.date, *, seed: int = 7, signal: float = 1.0
) -> int:
    """Build and write features for the market (seed, n_codes, start..end, signal); returns the
    number of partitions written."""
    from gogooku3.features import build_features
    from gogooku3.features.build import write_features
    from gogooku3.features.testing import market_inputs

    inputs = market_inputs(n_codes, start, end, seed=seed, signal=signal)
    built = build_features(inputs.daily_quotes, **inputs.kwargs())
    return len(write_features(lake, built, source=SOURCE))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--codes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--signal", type=float, default=1.0)
    ap.add_argument("--start", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--end", required=True, type=dt.date.fromisoformat)
    args = ap.parse_args(argv)
    n = seed_features(
        open_lake(args.lake), args.codes, args.start, args.end, seed=args.seed, signal=args.signal
    )
    print(f"seed_features: wrote {n} features partitions {args.start}..{args.end} to {args.lake}")


if __name__ == "__main__":
    main()
