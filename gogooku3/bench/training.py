"""Benchmark: walk-forward training (``make bench``, or ``--only training``).

Rows reported:

1. Dataset build for the full market (4,000 codes x 2019-01..2023-12, 1,223 trading days x 140
   features): seconds and the peak RSS of a fresh process running
   :func:`gogooku3.training.dataset.load_panel` from a local features lake (the lake is seeded
   first, in this process, and not timed). Target: < 6 GB. Quick: 500 codes.
2. Network throughput per size: one epoch of fold 0 of the 1,000-code market (2022-2023, 122
   training days; quick: 300 codes), on this machine's device: training samples/s, seconds per
   epoch (training only, validation excluded), parameters, and on CUDA (bf16 autocast) the peak GPU
   memory. Sizes: ``tiny``, ``small``, ``base`` on a CPU; ``tiny``, ``base``, ``large`` on CUDA.
3. The oracle fraction: a whole walk-forward run (4 folds, at most 4 epochs with patience 1) per
   size on the 1,000-code market, each model's out-of-sample RankIC@1d divided by the planted
   alpha's on the same days. Goal: the network >= 0.9 x oracle and no lower than ridge and LightGBM.
   Sizes: ``GOGOOKU3_BENCH_WALKFORWARD_SIZES`` (comma-separated), by default ``tiny,small`` on a CPU
   (``base`` takes hours there: ~250 samples/s on two cores) and ``small,base`` on CUDA.

"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from gogooku3.bench.measure import measure

FULL = (dt.date(2019, 1, 1), dt.date(2023, 12, 31))
TRAIN_RANGE = (dt.date(2022, 1, 1), dt.date(2023, 12, 31))
SIZES_ENV = "GOGOOKU3_BENCH_WALKFORWARD_SIZES"


def _lake(root: Path, n_codes: int, start: dt.date, end: dt.date):
    from gogooku3.devtools.seed_features import seed_features
    from gogooku3.lake import open_lake

    lake = open_lake(root)
    seed_features(lake, n_codes, start, end)
    return lake


def _device() -> str:
    from gogooku3.training.job import resolve_device

    return resolve_device("auto")


def _load_panel_alone(root: str) -> dict:
    """In a fresh process: load the full panel; its time, the process's RSS before and its peak.

    The peak is sampled (:func:`measure`), not ``ru_maxrss``: Linux carries a process's maximum RSS
    across ``execve``, so a spawned child would report the parent's peak at fork (the seeding's).
    """
    from gogooku3.bench.measure import measure
    from gogooku3.lake import open_lake
    from gogooku3.training.dataset import load_panel

    lake = open_lake(root)
    panel, took = measure(lambda: load_panel(lake, *FULL, (1, 5, 10, 20)))
    return {
        "seconds": took.wall_s,
        "rss_before": took.start_rss,
        "peak_rss": took.peak_rss,
        "nbytes": panel.nbytes,
        "shape": (len(panel.days), len(panel.codes), len(panel.features)),
    }


def dataset_rows(quick: bool, tmp: Path) -> list[dict]:
    """Measured in a fresh process, so that nothing the seeding left in this one hides or adds to
    the dataset's memory."""
    import multiprocessing

    n_codes = 500 if quick else 4000
    _lake(tmp / "full", n_codes, *FULL)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_load_panel_alone, (str(tmp / "full"),))
    days, codes, features = got["shape"]
    return [
        {
            "step": "dataset build (load_panel, fresh process)",
            "codes": codes,
            "days": days,
            "features": features,
            "seconds": round(got["seconds"], 1),
            "peak RSS (GB)": round(got["peak_rss"] / 1e9, 2),
            "RSS before load (GB)": round(got["rss_before"] / 1e9, 2),
            "arrays (GB)": round(got["nbytes"] / 1e9, 2),
            "target": "< 6 GB",
        }
    ]


def throughput_rows(quick: bool, lake, n_codes: int, tmp: Path) -> list[dict]:
    import torch

    from gogooku3.training.folds import Block
    from gogooku3.training.graph import GraphConfig
    from gogooku3.training.normalise import Normaliser
    from gogooku3.training.samples import Samples, sample_rows
    from gogooku3.training.trainer import TrainConfig, train_network
    from gogooku3.training.walkforward import RunConfig, prepare

    device = _device()
    panel, folds = prepare(RunConfig(*TRAIN_RANGE, out_dir=tmp), lake)
    fold = folds[0]
    if quick:  # the first 20 training days only
        fold = replace(fold, train=Block(fold.train.start, fold.train.start + 20))
    samples = Samples(
        panel, Normaliser.fit(panel.x, sample_rows(panel, fold.train), panel.features), GraphConfig()
    )
    samples.fit_target_scale(fold.train)
    rows = []
    for size in ("tiny", "base", "large") if device == "cuda" else ("tiny", "small", "base"):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        net = train_network(samples, fold, TrainConfig(size=size, max_epochs=1, device=device), seed=0)
        row = {
            "step": f"train {size}, fold 0, 1 epoch",
            "device": device + (" (bf16)" if device == "cuda" else f" ({torch.get_num_threads()} threads)"),
            "codes": n_codes,
            "train days": len(fold.train),
            "parameters": net.parameters,
            "samples/s": round(net.samples_per_s),
            "s/epoch": round(net.train_seconds, 1),
        }
        if device == "cuda":
            row["peak GPU memory (GB)"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
        rows.append(row)
    return rows


def walkforward_sizes(device: str) -> list[str]:
    from gogooku3.model.config import SIZES

    default = "small,base" if device == "cuda" else "tiny,small"
    sizes = [s.strip() for s in os.environ.get(SIZES_ENV, default).split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise ValueError(f"{SIZES_ENV}: unknown size(s) {unknown}; expected some of {', '.join(SIZES)}")
    return sizes


def oracle_rows(quick: bool, lake, n_codes: int, tmp: Path) -> list[dict]:
    from gogooku3.market import MarketConfig, generate_market
    from gogooku3.training.checks import oracle_fractions, oracle_rank_ic
    from gogooku3.training.trainer import TrainConfig
    from gogooku3.training.walkforward import RunConfig, oos_targets, run_walk_forward

    device = _device()
    market = generate_market(MarketConfig(seed=7, n_codes=n_codes, start=TRAIN_RANGE[0], end=TRAIN_RANGE[1]))
    rows = []
    for size in ["tiny"] if quick else walkforward_sizes(device):
        cfg = RunConfig(
            *TRAIN_RANGE,
            out_dir=tmp / f"run_{size}",
            train=TrainConfig(size=size, max_epochs=4, patience=1, device=device),
        )
        summary, m = measure(lambda cfg=cfg: run_walk_forward(cfg, lake))
        oracle, se, days = oracle_rank_ic(market, oos_targets(summary))
        size_rows = []
        for model, fraction in oracle_fractions(summary["oos"], oracle).items():
            size_rows.append(
                {
                    "step": f"walk-forward 4 folds, network {size} ({device}), oracle fraction",
                    "codes": n_codes,
                    "model": model,
                    "RankIC@1d": round(summary["oos"][model]["1d"]["rank_ic"], 4),
                    "oracle RankIC@1d": f"{oracle:.4f} +- {se:.4f} ({days} days)",
                    "fraction": round(fraction, 3),
                    "run seconds": round(m.wall_s),
                }
            )
        rows += _reported(size_rows)
    return rows


def _reported(rows: list[dict]) -> list[dict]:
    """Each row on stderr as soon as it is measured: the whole benchmark takes hours on a CPU, and
    its table is printed only at the end."""
    for row in rows:
        print(f"training bench: {row}", file=sys.stderr, flush=True)
    return rows


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp_dir:
        tmp = Path(tmp_dir)
        n_codes = 300 if quick else 1000
        rows = _reported(dataset_rows(quick, tmp))
        lake = _lake(tmp / f"m{n_codes}", n_codes, *TRAIN_RANGE)
        rows += _reported(throughput_rows(quick, lake, n_codes, tmp / "throughput"))
        return rows + oracle_rows(quick, lake, n_codes, tmp)
