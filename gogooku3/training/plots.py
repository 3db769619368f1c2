"""Plots of walk-forward out-of-sample predictions, one PNG each, per model:

* ``cumulative_rank_ic.png``: cumulative sum of the daily RankIC over the out-of-sample days. A
  straight rising line is a steady edge; flat stretches and drops show when it fails.
* ``decile_bars.png``: mean target per prediction decile 1..10 (grouped bars per model); a monotone
  staircase says the whole ranking carries signal, not just its tails.
* ``long_short.png``: cumulative sum of the daily top-minus-bottom decile spread. At 1 day it is the
  (uncompounded, cost-free) long-short curve; at ``h > 1`` days each day's spread is an h-day return
  and consecutive ones overlap, so the curve sums overlapping h-day spreads (about h times a
  tradable curve) - for comparing models, not a P&L.

Figures are drawn on matplotlib's Agg canvas through :class:`~matplotlib.figure.Figure` (no pyplot,
no global backend switch, nothing shown) and released once saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from gogooku3.training.metrics import N_QUANTILES, valid_pairs

DPI = 100


def decile_means(preds: pl.DataFrame, targets: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """(model, decile, mean_target): mean over days of the day's mean target in each prediction
    decile, deciles 1 (lowest predictions) to 10.

    On a valid day (as in :mod:`~gogooku3.training.metrics`) with ``n`` pairs, a name of ordinal
    prediction rank ``r`` (1..n, ties by Code) is in decile ``(r - 1) * 10 // n + 1``; when ``n`` is a
    multiple of 10 deciles 10 and 1 are exactly the top and bottom deciles of the decile spread."""
    return (
        valid_pairs(preds, targets, [horizon])
        .group_by("model", "Date", "decile")
        .agg(pl.col("target").mean())
        .group_by("model", "decile")
        .agg(pl.col("target").mean().alias("mean_target"))
        .sort("model", "decile")
        .collect()
    )


def _figure(title: str, xlabel: str, ylabel: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    fig.clear()
    return path


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no valid out-of-sample day", ha="center", va="center", transform=ax.transAxes)


def _cumulative(daily: pl.DataFrame, column: str, horizon: int, path: Path, title: str, ylabel: str) -> Path:
    fig, ax = _figure(title, "date (out-of-sample)", ylabel)
    rows = daily.filter(pl.col("horizon") == horizon).sort("model", "Date")
    models = rows["model"].unique().sort().to_list()
    for model in models:
        part = rows.filter(pl.col("model") == model)
        ax.plot(part["Date"].to_numpy(), np.cumsum(part[column].to_numpy()), label=model, linewidth=1.2)
    if models:
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.legend(loc="best")
        fig.autofmt_xdate()
    else:
        _no_data(ax)
    return _save(fig, path)


def _decile_bars(means: pl.DataFrame, horizon: int, path: Path) -> Path:
    fig, ax = _figure(
        f"mean {horizon}d target by prediction decile (per day, then over days)",
        "prediction decile (1 = lowest, 10 = highest)",
        f"mean target_ret_{horizon}d",
    )
    models: Sequence[str] = means["model"].unique().sort().to_list()
    deciles = np.arange(1, N_QUANTILES + 1)
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        part = means.filter(pl.col("model") == model)
        by_decile = dict(zip(part["decile"].to_list(), part["mean_target"].to_list(), strict=True))
        heights = [by_decile.get(int(d), np.nan) for d in deciles]
        ax.bar(deciles - 0.4 + width * (i + 0.5), heights, width=width, label=model)
    ax.set_xticks(deciles)
    if models:
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.legend(loc="best")
    else:
        _no_data(ax)
    return _save(fig, path)


def write_plots(
    daily: pl.DataFrame, preds: pl.DataFrame, targets: pl.DataFrame, out_dir: Path, horizon: int = 1
) -> list[Path]:
    """Write ``cumulative_rank_ic.png``, ``decile_bars.png`` and ``long_short.png`` at ``horizon`` into
    ``out_dir`` (created if missing); ``daily`` is :func:`~gogooku3.training.metrics.daily_frame` of
    the same predictions. Returns the paths written. A model or horizon without valid days still
    gets its (empty, labelled) figures, so a run always has all three files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlap = "" if horizon == 1 else f" (sum of overlapping {horizon}d spreads)"
    return [
        _cumulative(
            daily,
            "rank_ic",
            horizon,
            out_dir / "cumulative_rank_ic.png",
            f"cumulative daily RankIC at {horizon}d",
            "cumulative sum of daily RankIC",
        ),
        _decile_bars(decile_means(preds, targets, horizon), horizon, out_dir / "decile_bars.png"),
        _cumulative(
            daily,
            "spread",
            horizon,
            out_dir / "long_short.png",
            f"long-short: cumulative top-minus-bottom decile spread at {horizon}d{overlap}",
            f"cumulative sum of daily {horizon}d spread",
        ),
    ]
