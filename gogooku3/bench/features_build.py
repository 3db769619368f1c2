"""Benchmark: the feature build on the synthetic full market (``make bench``, ``make bench-gpu``).

Data: ``generate_market`` with 4,000 codes over 2020-2024 (~1,225 trading days, ~4.9M
daily_quotes rows incl. listings/delistings), with listed_info, TOPIX, statements and the
expanded trades_spec flows; ``quick`` uses 300 codes over 2023-2024.

Rows reported:

1. **CPU engine, full catalogue**: ``build_features`` from in-memory frames (prepare + every
   feature + targets, every row output; synthetic data generation and lake I/O excluded): wall
   time, rows/s on that wall time, CPU and kernel (``sys_s``) time, peak RSS of this process
   during the build (sampled every 10 ms, see gogooku3.bench.measure), and the time per stage;
   once **cold** (the first build in the process: every page is fresh, which a virtual machine
   makes expensive) and once **warm** (the same build again). ``values_per_s`` is rows x
   features / wall, the issue's measure. The **daily run** rows build the last day alone, from
   the same history and resumed from checkpoints (:func:`daily_rows`). A further row, **features only**, times
   ``compute_features`` alone on the prepared panel.
2. **Baseline subset, pandas vs CPU engine** (each the second of two runs): the subset of features listed in
   :data:`BASELINE_FEATURES` (returns, EMA deviations, rolling volatility, volume ratio, RSI,
   Bollinger %b, a cross-sectional z-score and rank) written in plain pandas
   ``groupby().rolling()/ewm()/transform()`` - the approach the origin system replaced - and
   the same subset compiled from the catalogue by the Polars engine, on the same panel, in the
   same run. This is a *subset* (labelled so), not the full catalogue.
3. **Per family** (:func:`family_rows`): each catalogue group's output features computed alone on
   the prepared panel, warm: what a family costs (the market-wide families of issue 14 included);
   and the peer table the ``peers`` family copies (:func:`peer_rows`), computed in ``prepare``,
   over every day and for one day.
4. **GPU engine vs CPU engine** (full catalogue, from the same prepared panel) where RAPIDS and a
   GPU are present: a warm-up call (kernel compilation, RMM pool) then a timed call; otherwise
   one row saying why it was skipped. ``FEATURES_BENCH_ENGINE=cpu`` skips the GPU rows.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import numpy as np
import polars as pl

from gogooku3.bench.measure import measure

#: The origin-style baseline subset (name -> what the pandas code computes).
BASELINE_FEATURES = (
    "ret_1d",
    "ret_5d",
    "ret_20d",
    "ema_5_dev",
    "ema_20_dev",
    "ema_60_dev",
    "vol_20d",
    "vol_60d",
    "volume_ratio_20d",
    "rsi_14",
    "bb_pct_b",
    "cs_z_ret_5d",
    "cs_rank_ret_5d",
)


def _gb(n: float) -> float:
    return round(n / 2**30, 2)


def _measured_row(case: str, features: int, rows: int, mem: Any, notes: str) -> dict:
    """One table row for a measured CPU step (``mem`` from :func:`gogooku3.bench.measure.measure`)."""
    return {
        "case": case,
        "features": features,
        "rows": rows,
        "wall_s": round(mem.wall_s, 2),
        "cpu_s": round(mem.cpu_s, 1),
        "sys_s": round(mem.sys_s, 1),
        "rows_per_s": int(rows / mem.wall_s),
        "values_per_s": int(rows * features / mem.wall_s),
        "peak_rss_gb": _gb(mem.peak_rss),
        "rss_growth_gb": _gb(mem.rss_growth),
        "notes": notes,
    }


def _subset_layers(names: tuple[str, ...]) -> list[list]:
    """Catalogue layers restricted to ``names`` and everything they depend on."""
    from gogooku3.features.catalogue import FEATURES, feature
    from gogooku3.features.prepare import BASE_COLUMNS
    from gogooku3.features.spec import Feature, validate

    need: dict[str, Feature] = {}
    stack = list(names)
    while stack:
        n = stack.pop()
        if n in need or n in BASE_COLUMNS:
            continue
        f = feature(n)
        need[n] = f
        stack.extend(f.inputs)
    ordered = tuple(f for f in FEATURES if f.name in need)
    ordered = tuple(
        Feature(f.name, f.op, f.inputs, f.group, f.description, f.window, f.params, f.name in names)
        for f in ordered
    )
    return validate(ordered, frozenset(BASE_COLUMNS))


def family_rows(panel: pl.DataFrame, features_s: float) -> list[dict]:
    """What each family of the catalogue costs: its output features (and the intermediates and
    inputs of other families they need, so shares overlap and do not sum to 100%) computed alone on
    the prepared panel by the CPU engine, warm, most expensive first."""
    from gogooku3.features.catalogue import FEATURES
    from gogooku3.features.engine_cpu import compute_features

    families: dict[str, list[str]] = {}
    for f in FEATURES:
        if f.output:
            families.setdefault(f.group, []).append(f.name)
    rows = []
    for family, names in families.items():
        layers = _subset_layers(tuple(names))
        computed = sum(len(layer) for layer in layers)
        _, mem = measure(lambda layers=layers: compute_features(panel, layers))
        rows.append(
            _measured_row(
                f"family {family}: CPU engine (Polars), warm",
                len(names),
                panel.height,
                mem,
                f"{computed} features computed ({computed - len(names)} intermediates or other "
                f"families' inputs); {mem.wall_s / features_s:.0%} of the features-only time",
            )
        )
    return sorted(rows, key=lambda r: -r["wall_s"])


def peer_rows(panel: pl.DataFrame) -> list[dict]:
    """What the peer table costs (:func:`gogooku3.features.peers.peer_columns`, a correlation
    matrix and a top-k per day, computed in ``prepare``): over every day (a backfill), and for the
    last day alone (a daily run), each the second of two runs."""
    from gogooku3.features.peers import PEER_COLUMNS, peer_columns

    last = panel.get_column("Date").max()
    days = panel.get_column("Date").n_unique()
    codes = panel.filter(pl.col("Date") == last).height
    rows = []
    for label, since, n_days in (("every day", None, days), ("the last day alone", last, 1)):
        peer_columns(panel, since)
        _, mem = measure(lambda since=since: peer_columns(panel, since))
        rows.append(
            _measured_row(
                f"peer table ({label}): numpy + numba, in prepare",
                len(PEER_COLUMNS),
                panel.height,
                mem,
                f"{n_days} day(s) x ~{codes} codes, {mem.wall_s / n_days * 1e3:.0f} ms per day; "
                f"second of two runs; load average {os.getloadavg()[0]:.1f}",
            )
        )
    return rows


def _stages(timings: Any) -> str:
    """Where a build's time went (a :class:`~gogooku3.features.BuildTimings`), for a row's notes."""
    ex = timings.extra
    return (
        f"prepare {timings.prepare_s:.1f} s (peer table {ex.get('peers_s', 0.0):.2f}), features "
        f"{timings.features_s:.1f} s (per-code series {ex.get('series_s', 0.0):.1f}, reorder to day "
        f"order {ex.get('reorder_s', 0.0):.2f}, cross-sections {ex.get('cross_section_s', 0.0):.2f}), "
        f"targets {timings.targets_s:.2f} s"
    )


def daily_rows(n_codes: int, start: dt.date, end: dt.date, full_build_s: float) -> list[dict]:
    """What ``features_daily`` computes for one new day: the market's last day built alone, the
    second of two runs each, two ways. Lake I/O is excluded, as in the full-build rows.

    * From the whole history (what the lake shell reads without checkpoints), in a fresh
      (spawned) process that generates the same market: its peak RSS is the daily run's own plus
      the in-memory market, not what the full builds left mapped.
    * Resumed from the checkpoints of the days :data:`~gogooku3.features.checkpoint.LOOKBACK_ROWS`
      before it and before it, in a second fresh process that holds only what the lake shell reads
      for it: the daily_quotes rows from the first checkpoint's day, the two checkpoints (made by
      an untimed build in the first process) and the other inputs.
    """
    import multiprocessing
    import tempfile

    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="gogooku3-daily-") as folder:
        with spawn.Pool(1) as pool:
            whole = pool.apply(_daily_whole_history, (n_codes, start, end, full_build_s, folder))
        with spawn.Pool(1) as pool:
            resumed = pool.apply(_daily_resumed, (folder, full_build_s))
    return [whole, resumed]


def _daily_row(label: str, quotes: pl.DataFrame, kwargs: dict, resume: Any, full_build_s: float) -> dict:
    from gogooku3.features import BuildTimings, build_features
    from gogooku3.features.catalogue import OUTPUT_FEATURES

    last = quotes.get_column("Date").max()
    timings = BuildTimings()

    def one_day() -> pl.DataFrame:
        return build_features(quotes, **kwargs, start=last, end=last, timings=timings, resume=resume)

    one_day()
    built, mem = measure(one_day)
    return _measured_row(
        f"CPU engine (Polars), daily run: the last day alone, {label}",
        len(OUTPUT_FEATURES),
        built.height,
        mem,
        f"{built.height} rows out of {quotes.height:,} read; {full_build_s / mem.wall_s:.1f}x less wall "
        f"than the warm full build; {_stages(timings)}; second of two runs; load average "
        f"{os.getloadavg()[0]:.1f}",
    )


def _daily_whole_history(
    n_codes: int, start: dt.date, end: dt.date, full_build_s: float, folder: str
) -> dict:
    """The whole-history daily row; leaves in ``folder`` what the resumed one reads."""
    from pathlib import Path

    from gogooku3.features import build_features
    from gogooku3.features.checkpoint import CHECKPOINT_COLUMNS, LOOKBACK_ROWS
    from gogooku3.features.testing import market_inputs

    mi = market_inputs(n_codes, start, end)
    days = mi.daily_quotes.get_column("Date").unique().sort()
    first, check = days[-1 - LOOKBACK_ROWS], days[-2]
    states = build_features(mi.daily_quotes, **mi.kwargs(), start=first, end=check, states=True)
    for name, day in (("state", first), ("check", check)):
        states.filter(pl.col("Date") == day).select("Date", "Code", *CHECKPOINT_COLUMNS).write_parquet(
            Path(folder) / f"{name}.parquet"
        )
    del states
    mi.daily_quotes.filter(pl.col("Date") >= first).write_parquet(Path(folder) / "quotes.parquet")
    for name, frame in mi.kwargs().items():
        if frame is not None:
            frame.write_parquet(Path(folder) / f"input_{name}.parquet")
    return _daily_row("from the whole history", mi.daily_quotes, mi.kwargs(), None, full_build_s)


def _daily_resumed(folder: str, full_build_s: float) -> dict:
    from pathlib import Path

    from gogooku3.features.checkpoint import LOOKBACK_ROWS, Resume

    root = Path(folder)
    kwargs = {p.stem.removeprefix("input_"): pl.read_parquet(p) for p in sorted(root.glob("input_*.parquet"))}
    resume = Resume(pl.read_parquet(root / "state.parquet"), pl.read_parquet(root / "check.parquet"))
    label = (
        f"resumed from checkpoints ({LOOKBACK_ROWS + 1} days read: the checkpoint's day to the output day)"
    )
    return _daily_row(label, pl.read_parquet(root / "quotes.parquet"), kwargs, resume, full_build_s)


def polars_subset(panel: pl.DataFrame) -> pl.DataFrame:
    from gogooku3.features.engine_cpu import compute_features

    return compute_features(panel, _subset_layers(BASELINE_FEATURES))


def pandas_subset(panel: pl.DataFrame) -> Any:
    """The baseline subset in plain pandas groupby/rolling/ewm (origin style)."""
    df = panel.select("Code", "Date", "px_close", "volume").to_pandas()
    df = df.sort_values(["Code", "Date"]).reset_index(drop=True)
    g = df.groupby("Code", sort=False)
    px = df["px_close"]
    for w in (1, 5, 20):
        raw = g["px_close"].pct_change(w)
        df[f"_r{w}"] = raw
        mu = raw.groupby(df["Date"]).transform("mean")
        sd = raw.groupby(df["Date"]).transform("std")
        df[f"ret_{w}d"] = raw.clip(mu - 5 * sd, mu + 5 * sd)
    for span in (5, 20, 60):
        ema = g["px_close"].transform(lambda s, span=span: s.ewm(span=span, adjust=False).mean())
        df[f"ema_{span}_dev"] = px / ema - 1
    r1 = df["_r1"]
    for w in (20, 60):
        df[f"vol_{w}d"] = r1.groupby(df["Code"]).rolling(w, min_periods=w).std().reset_index(
            level=0, drop=True
        ) * np.sqrt(252)
    vmean = g["volume"].rolling(20, min_periods=20).mean().reset_index(level=0, drop=True)
    df["volume_ratio_20d"] = df["volume"] / vmean
    delta = g["px_close"].diff()
    up, down = delta.clip(lower=0), (-delta).clip(lower=0)
    au = up.groupby(df["Code"]).transform(lambda s: s.ewm(alpha=1 / 14, adjust=False).mean())
    ad = down.groupby(df["Code"]).transform(lambda s: s.ewm(alpha=1 / 14, adjust=False).mean())
    df["rsi_14"] = 100 * au / (au + ad)
    mid = g["px_close"].rolling(20, min_periods=20).mean().reset_index(level=0, drop=True)
    sd = g["px_close"].rolling(20, min_periods=20).std().reset_index(level=0, drop=True)
    df["bb_pct_b"] = (px - (mid - 2 * sd)) / (4 * sd)
    r5 = df["ret_5d"]
    by_day = r5.groupby(df["Date"])
    df["cs_z_ret_5d"] = (r5 - by_day.transform("mean")) / by_day.transform("std")
    df["cs_rank_ret_5d"] = by_day.rank(pct=True)
    return df[["Code", "Date", *BASELINE_FEATURES]]


def _gpu_reason() -> str | None:
    if os.environ.get("FEATURES_BENCH_ENGINE", "").lower() == "cpu":
        return "skipped: FEATURES_BENCH_ENGINE=cpu"
    try:
        import cudf  # noqa: F401
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "skipped: no CUDA device visible"
    except Exception as e:  # noqa: BLE001 - any failure means no GPU engine here
        return f"skipped: no NVIDIA GPU / RAPIDS here ({type(e).__name__}: {str(e)[:80]})"
    return None


def run(quick: bool) -> list[dict]:
    from gogooku3.allocator import missing_settings

    missing = missing_settings()
    if missing:
        return _in_build_environment(quick, missing)
    return _run(quick)


def _in_build_environment(quick: bool, missing: dict[str, str]) -> list[dict]:
    """The rows, measured in a child process started with the allocator settings the feature
    task's container gets (:data:`gogooku3.allocator.BUILD_ENVIRONMENT`), which this process lacks."""
    import json
    import subprocess
    import sys

    code = "import json, sys; from gogooku3.bench.features_build import run; print(json.dumps(run(sys.argv[1] == '1')))"
    done = subprocess.run(
        [sys.executable, "-c", code, "1" if quick else "0"],
        env=os.environ | missing,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run(quick: bool) -> list[dict]:
    from gogooku3.features import BuildTimings, build_features
    from gogooku3.features.catalogue import OUTPUT_FEATURES
    from gogooku3.features.engine_cpu import compute_features
    from gogooku3.features.prepare import prepare_panel
    from gogooku3.features.testing import market_inputs

    n_codes = int(os.environ.get("FEATURES_BENCH_CODES", 300 if quick else 4000))
    start, end = (
        (dt.date(2023, 1, 1), dt.date(2024, 12, 31))
        if quick
        else (dt.date(2020, 1, 1), dt.date(2024, 12, 31))
    )
    t0 = time.perf_counter()
    mi = market_inputs(n_codes, start, end)
    gen_s = time.perf_counter() - t0
    rows_in = mi.daily_quotes.height
    n_days = mi.daily_quotes.get_column("Date").n_unique()
    cpus = os.cpu_count()
    size = f"{n_codes} codes x {n_days} days = {rows_in:,} rows (generated in {gen_s:.0f} s)"
    out: list[dict] = []

    def full_build(label: str, note: str) -> None:
        timings = BuildTimings()
        built, mem = measure(lambda: build_features(mi.daily_quotes, **mi.kwargs(), timings=timings))
        out.append(
            _measured_row(
                f"CPU engine (Polars), full build, {label}",
                len(OUTPUT_FEATURES),
                built.height,
                mem,
                f"{note}; {_stages(timings)}; {cpus} CPUs, Polars threads {pl.thread_pool_size()}, "
                f"load average {os.getloadavg()[0]:.1f}; allocator settings of the feature container "
                f"(gogooku3.allocator); {size}",
            )
        )

    # wall = build_features from in-memory frames (prepare + features + targets, every row
    # output); synthetic data generation and lake I/O excluded.
    full_build("cold", "first build in this process: every page it touches is fresh (sys_s)")
    full_build("warm", "the same build again, the allocator's pages already mapped")
    out.extend(daily_rows(n_codes, start, end, out[-1]["wall_s"]))
    panel = prepare_panel(mi.daily_quotes, **mi.kwargs())
    _, feat_mem = measure(lambda: compute_features(panel))
    feat_s = feat_mem.wall_s
    out.append(
        _measured_row(
            "features only: CPU engine (Polars), warm",
            len(OUTPUT_FEATURES),
            panel.height,
            feat_mem,
            "compute_features on the prepared panel (series, reorder, cross-sections; no "
            f"prepare or targets); target >= 1M rows/s; load average {os.getloadavg()[0]:.1f}",
        )
    )

    # Each side runs twice and the second run counts: the first one's cost is dominated by fresh
    # pages (sys_s), the more so after the other side (pandas' allocator and Polars' do not share
    # freed memory), which would make the ratio measure the machine's page faults.
    polars_subset(panel)
    pl_sub, pl_mem = measure(lambda: polars_subset(panel))
    pandas_subset(panel)
    pd_sub, pd_mem = measure(lambda: pandas_subset(panel))
    pl_s, pd_s = pl_mem.wall_s, pd_mem.wall_s
    # the two implementations must agree, or the comparison means nothing
    check = pl.from_pandas(pd_sub).sort("Code", "Date")
    worst = max(
        float(
            np.nanmax(
                np.abs(
                    check.get_column(c).to_numpy() - pl_sub.sort("Code", "Date").get_column(c).to_numpy(),
                    dtype=float,
                )
            )
            if check.height
            else 0.0
        )
        for c in ("ret_1d", "ema_20_dev", "vol_20d", "rsi_14", "cs_z_ret_5d")
    )
    out.append(
        _measured_row(
            "baseline subset: pandas groupby/rolling",
            len(BASELINE_FEATURES),
            panel.height,
            pd_mem,
            "origin approach, same subset, same panel; second of two runs",
        )
    )
    out.append(
        _measured_row(
            "baseline subset: CPU engine (Polars)",
            len(BASELINE_FEATURES),
            panel.height,
            pl_mem,
            f"{pd_s / pl_s:.1f}x pandas (wall; target >= 10x), second of two runs, including "
            f"the reorder to day order that pandas skips; max |pandas - polars| over 5 checked columns "
            f"{worst:.1e}",
        )
    )
    del pd_sub, check
    out.extend(family_rows(panel, feat_s))
    out.extend(peer_rows(panel))

    reason = _gpu_reason()
    if reason is not None:
        out.append({"case": "GPU engine (cuDF)", "notes": reason})
        return out
    from gogooku3.features.engine_gpu import compute_features_gpu, init_rmm_pool

    pool = init_rmm_pool()
    cpu_s = feat_s
    compute_features_gpu(panel)  # warm-up: NVRTC kernel build, pool first touch, cuDF JIT
    _, gpu_mem = measure(lambda: compute_features_gpu(panel))
    gpu_s = gpu_mem.wall_s
    out.append(
        {
            "case": "features only: GPU engine (cuDF)",
            "features": len(OUTPUT_FEATURES),
            "rows": panel.height,
            "wall_s": round(gpu_s, 2),
            "rows_per_s": int(panel.height / gpu_s),
            "values_per_s": int(panel.height * len(OUTPUT_FEATURES) / gpu_s),
            "peak_rss_gb": _gb(gpu_mem.peak_rss),
            "notes": f"{cpu_s / gpu_s:.1f}x the CPU engine; RMM pool {pool / 1e9:.1f} GB; includes host<->device copies",
        }
    )
    return out
