"""Benchmark: walk-forward training (``make bench``).

Rows reported:

1. Dataset build for the full market (4,000 codes x 2019-01..2023-12, 1,223 trading days x 140
   features): seconds and peak RSS increase of :func:`gogooku3.training.dataset.load_panel` from a
   local features lake (the lake itself is seeded first and not timed). Target: < 6 GB. Quick:
   500 codes.
2. Network training throughput per size (``tiny``, ``small``) on this CPU: samples/s and s/epoch
   over one fold of a 1,000-code market (quick: 300 codes), two epochs.
3. The oracle fraction per model: a whole walk-forward run (``small`` network, 4 folds) on the
   1,000-code market, each model's out-of-sample RankIC@1d divided by the planted alpha's on the
   same days. Goal: the network >= 0.9 x oracle and no lower than ridge and LightGBM.

Memory: peak RSS increase = the process's RSS sampled every 10 ms during the step minus the RSS
before it (gogooku3.bench.measure).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from gogooku3.bench.measure import measure


def _lake(root: Path, n_codes: int, start: dt.date, end: dt.date):
    from gogooku3.devtools.seed_features import seed_features
    from gogooku3.lake import open_lake

    lake = open_lake(root)
    seed_features(lake, n_codes, start, end)
    return lake


def dataset_rows(quick: bool, tmp: Path) -> list[dict]:
    from gogooku3.training.dataset import load_panel

    n_codes = 500 if quick else 4000
    start, end = dt.date(2019, 1, 1), dt.date(2023, 12, 31)
    lake = _lake(tmp / "full", n_codes, start, end)
    panel, m = measure(lambda: load_panel(lake, start, end, (1, 5, 10, 20)))
    return [
        {
            "step": "dataset build (load_panel)",
            "codes": len(panel.codes),
            "days": len(panel.days),
            "features": len(panel.features),
            "seconds": round(m.wall_s, 1),
            "peak RSS increase (GB)": round(m.rss_growth / 1e9, 2),
            "arrays (GB)": round(panel.nbytes / 1e9, 2),
            "target": "< 6 GB",
        }
    ]


def training_rows(quick: bool, tmp: Path) -> list[dict]:
    import torch

    from gogooku3.market import MarketConfig, generate_market
    from gogooku3.training.checks import oracle_fractions, oracle_rank_ic
    from gogooku3.training.trainer import TrainConfig
    from gogooku3.training.walkforward import RunConfig, oos_targets, prepare, run_fold, run_walk_forward

    n_codes = 300 if quick else 1000
    start, end = dt.date(2022, 1, 1), dt.date(2023, 12, 31)
    lake = _lake(tmp / f"m{n_codes}", n_codes, start, end)
    rows = []
    for size in ("tiny", "small"):
        cfg = RunConfig(
            start=start,
            end=end,
            out_dir=tmp / f"fold_{size}",
            train=TrainConfig(size=size, max_epochs=2, patience=2),
        )
        panel, folds = prepare(cfg, lake)
        result, _ = run_fold(cfg, panel, folds[0])
        net = result.info["models"]["atft_gat_fan"]
        rows.append(
            {
                "step": f"train {size}, fold 0, 2 epochs",
                "codes": n_codes,
                "samples/s": round(net["train_samples_per_s"]),
                "s/epoch": round(net["seconds_per_epoch"], 1),
                "threads": torch.get_num_threads(),
            }
        )
    size = "tiny" if quick else "small"
    cfg = RunConfig(start=start, end=end, out_dir=tmp / "run", train=TrainConfig(size=size))
    summary, m = measure(lambda: run_walk_forward(cfg, lake))
    market = generate_market(MarketConfig(seed=7, n_codes=n_codes, start=start, end=end))
    oracle, se, days = oracle_rank_ic(market, oos_targets(summary))
    for model, fraction in oracle_fractions(summary["oos"], oracle).items():
        rows.append(
            {
                "step": f"walk-forward 4 folds ({size}), oracle fraction",
                "codes": n_codes,
                "model": model,
                "RankIC@1d": round(summary["oos"][model]["1d"]["rank_ic"], 4),
                "oracle RankIC@1d": f"{oracle:.4f} +- {se:.4f} ({days} days)",
                "fraction": round(fraction, 3),
                "run seconds": round(m.wall_s),
            }
        )
    return rows


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        return dataset_rows(quick, Path(tmp)) + training_rows(quick, Path(tmp))
