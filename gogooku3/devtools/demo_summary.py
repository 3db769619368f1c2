"""The closing summary of ``make demo``: what the pipeline wrote, what the gates said, which alerts were
sent, whether the built features find the synthetic market's planted signal, and how much of it the
walk-forward models found (as a fraction of the planted alpha's own RankIC on the same days).

``python -m gogooku3.devtools.demo_summary --lake URI --start D --end D [--slack FILE] [--emulator URL]
[--train DIR --market-seed S --market-codes N --market-start D] [--mlflow URL [--model NAME]]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import urllib.request
from pathlib import Path

import polars as pl

from gogooku3.jquants.datasets import DATASET_NAMES
from gogooku3.lake import Lake, open_lake

#: Every raw dataset the fetch writes, the expanded flows and the features.
TABLES = (
    *(("raw", name) for name in DATASET_NAMES),
    ("interim", "trades_spec_daily"),
    ("features", "features"),
)


def table_rows(lake: Lake, start: dt.date, end: dt.date) -> list[tuple[str, int, int, str]]:
    """(table, partitions in range, rows in range, latest good date) per lake table."""
    out = []
    for layer, name in TABLES:
        days = [d for d in lake.list_partitions(layer, name) if start <= d <= end]
        rows = sum(lake.read_manifest(layer, name, d).rows for d in days)
        good = lake.latest_good(layer, name)
        out.append((f"{layer}/{name}", len(days), rows, good.isoformat() if good else "-"))
    return out


def rank_ic(features: pl.DataFrame, target: str, top: int = 8) -> pl.DataFrame:
    """Mean daily Spearman rank correlation of each feature with ``target`` (the planted signal shows
    up as features with a consistently non-zero IC; in ``--signal 0`` noise they hover at 0)."""
    numeric = [
        c
        for c, t in features.schema.items()
        if t.is_numeric() and not c.startswith("target_") and c not in ("Date", "Code")
    ]
    ranked = features.select(
        "Date",
        *[pl.col(c).rank().over("Date").alias(c) for c in [*numeric, target]],
    )
    per_day = ranked.group_by("Date").agg([pl.corr(c, target).alias(c) for c in numeric])
    means = per_day.select([pl.col(c).drop_nans().mean().alias(c) for c in numeric])
    return (
        means.transpose(include_header=True, header_name="feature", column_names=["mean_rank_ic"])
        .drop_nulls()
        .sort(pl.col("mean_rank_ic").abs(), descending=True)
        .head(top)
    )


def training_lines(summary: dict, market, run_dir: Path | None = None) -> list[str]:
    """Per model its out-of-sample RankIC@1d (with its standard error) and its fraction of the
    planted alpha's RankIC on the same test days (``run_dir``: the run's folder, when it ran
    elsewhere, e.g. in the task container)."""
    from gogooku3.training.checks import oracle_fractions, oracle_rank_ic
    from gogooku3.training.walkforward import oos_targets

    oracle, se, days = oracle_rank_ic(market, oos_targets(summary, run_dir))
    fractions = oracle_fractions(summary["oos"], oracle)
    lines = [f"oracle (planted alpha) RankIC@1d {oracle:.4f} +- {se:.4f} over {days} test days"]
    for model, by_h in summary["oos"].items():
        m = by_h["1d"]
        lines.append(
            f"  {model:<14} RankIC@1d {m['rank_ic']:+.4f} +- {m['rank_ic_se']:.4f}  "
            f"{fractions[model]:.2f} of the oracle"
        )
    return lines


def fold_lines(summary: dict) -> list[str]:
    """Per fold its test window and each model's test RankIC@1d."""
    models = list(summary["oos"])
    lines = [f"  {'fold':<5}{'test days':<25}" + "".join(f"{m:>14}" for m in models)]
    for f in summary["folds"]:
        ics = [f["metrics"][m]["1d"]["rank_ic"] for m in models]
        cells = "".join(f"{float('nan') if ic is None else ic:>+14.4f}" for ic in ics)
        lines.append(f"  {f['fold']:<5}{f['test_start'] + '..' + f['test_end']:<25}{cells}")
    return lines


def registry_lines(tracking_uri: str, model_name: str) -> list[str]:
    """The registered model's champion and challenger, with the challenger's promotion decision."""
    from gogooku3.config import MlflowSettings
    from gogooku3.tracking.registry import CHALLENGER, CHAMPION, connect

    client = connect(MlflowSettings(tracking_uri=tracking_uri, model_name=model_name))
    lines = [f"MLflow {tracking_uri}  (model {tracking_uri}/#/models/{model_name})"]
    for alias in (CHAMPION, CHALLENGER):
        try:
            v = client.get_model_version_by_alias(model_name, alias)
        except Exception:  # noqa: BLE001 - no such alias yet
            lines.append(f"  {alias:<11} none")
            continue
        decided = v.tags.get("promotion.reason")
        lines.append(f"  {alias:<11} v{v.version} (run {v.run_id})" + (f": {decided}" if decided else ""))
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--start", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--end", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--slack", type=Path)
    ap.add_argument("--emulator")
    ap.add_argument("--train", type=Path, help="a gogooku3 train --out folder to judge against the oracle")
    ap.add_argument("--market-seed", type=int, default=7, help="the emulator's market: its seed ...")
    ap.add_argument("--market-codes", type=int, help="... its codes ...")
    ap.add_argument("--market-start", type=dt.date.fromisoformat, help="... and its first day")
    ap.add_argument("--mlflow", help="the MLflow server the run was registered in (http://host:port)")
    ap.add_argument("--model", default="gogooku3-atft-gat-fan", help="the registered model")
    args = ap.parse_args(argv)

    lake = open_lake(args.lake)
    print(f"\nlake {lake.uri}, {args.start}..{args.end}\n")
    print(f"| {'table':<28} | partitions | {'rows':>10} | latest good |")
    print(f"|{'-' * 30}|------------|{'-' * 12}|-------------|")
    for table, parts, rows, good in table_rows(lake, args.start, args.end):
        print(f"| {table:<28} | {parts:>10} | {rows:>10,} | {good:>11} |")

    if args.emulator:
        with urllib.request.urlopen(f"{args.emulator}/_stats", timeout=5) as resp:
            stats = json.load(resp)
        print(
            f"\nJ-Quants emulator: {stats['requests_total']} requests, {stats['rate_limited']} rate-limited (429), "
            f"{stats['pages_served']} pages, {stats['rows_served']:,} rows served"
        )
    if args.slack and args.slack.exists():
        alerts = json.loads(args.slack.read_text() or "[]")
        print(f"Slack alerts captured: {len(alerts)}")
        for alert in alerts[:5]:
            print("  -", str(alert.get("body", {}).get("text", ""))[:160])

    if args.end in lake.list_partitions("features", "features"):
        feats = lake.read_range("features", "features", args.start, args.end)
        print(
            f"\nfeatures: {feats.height:,} rows x {sum(1 for c in feats.columns if not c.startswith('target_'))} columns"
        )
        print("strongest mean daily rank IC against target_ret_1d (the market plants a 5-day reversal,")
        print("a volume shock, foreigners' flow and ROE; see gogooku3/market/__init__.py):")
        for feature, ic in rank_ic(feats, "target_ret_1d").iter_rows():
            print(f"  {feature:<32} {ic:+.4f}")

    if args.train:
        from gogooku3.market import MarketConfig, generate_market

        summary = json.loads((args.train / "summary.json").read_text())
        market = generate_market(
            MarketConfig(
                seed=args.market_seed, n_codes=args.market_codes, start=args.market_start, end=args.end
            )
        )
        print(
            f"\nwalk-forward training ({summary['size']}, {len(summary['folds'])} folds, "
            f"{summary['n_codes']} codes x {summary['n_features']} features), out of sample:"
        )
        for line in training_lines(summary, market, args.train):
            print(line)
        print("\nfolds, test RankIC@1d:")
        for line in fold_lines(summary):
            print(line)
    if args.mlflow:
        print()
        for line in registry_lines(args.mlflow, args.model):
            print(line)


if __name__ == "__main__":
    main()
