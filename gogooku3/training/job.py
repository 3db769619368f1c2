"""``gogooku3 train`` as a job: argument checks, device choice, the terminal's progress and tables.

The CLI (gogooku3/cli.py) parses options and calls :func:`run_training`; the retraining DAG runs
the same command in its container. A run whose home is ``s3://`` works in a local copy mirrored by
:class:`~gogooku3.training.runstore.RemoteRunFolder` (downloaded first, so a retry resumes; each
fold uploaded as it finishes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gogooku3.training.walkforward import MODELS, NETWORK, RunConfig, run_walk_forward

if TYPE_CHECKING:
    from rich.console import Console

    from gogooku3.config import Settings
    from gogooku3.training.runstore import RemoteRunFolder

DEVICES = ("auto", "cpu", "cuda")


def parse_horizons(text: str) -> tuple[int, ...]:
    """ "1,5,10,20" -> (1, 5, 10, 20); ValueError naming the bad part."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"--horizons {text!r}: {part!r} is not a positive number of trading days")
        out.append(int(part))
    if len(set(out)) != len(out):
        raise ValueError(f"--horizons {text!r} repeats a horizon")
    return tuple(out)


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without one is an error."""
    if device not in DEVICES:
        raise ValueError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU on this machine (use --device cpu or auto)")
    return device


def fold_table(summary_folds: Sequence[dict], horizon: int = 1):
    """A rich table: per fold its test window and each model's test RankIC / IC at ``horizon``."""
    from rich.table import Table

    table = Table(title=f"walk-forward folds: test RankIC@{horizon}d (IC)")
    for col in ("fold", "train", "valid", "test"):
        table.add_column(col)
    for model in MODELS:
        table.add_column(model, justify="right")
    for f in summary_folds:
        cells = [str(f["fold"])]
        for block in ("train", "valid", "test"):
            cells.append(f"{f[f'{block}_start']}..{f[f'{block}_end']}")
        for model in MODELS:
            m = f["metrics"].get(model, {}).get(f"{horizon}d")
            cells.append("-" if not m else f"{_num(m['rank_ic'])} ({_num(m['ic'])})")
        table.add_row(*cells)
    return table


def oos_table(oos: dict, horizons: Sequence[int]):
    from rich.table import Table

    table = Table(title="out-of-sample, all test days")
    for col in ("model", "horizon", "RankIC", "SE", "ICIR", "IC", "hit", "spread", "Sharpe", "turnover"):
        table.add_column(col, justify="right")
    for model in MODELS:
        for h in horizons:
            m = oos.get(model, {}).get(f"{h}d")
            if not m:
                continue
            table.add_row(
                model,
                f"{h}d",
                *(
                    _num(m[k])
                    for k in (
                        "rank_ic",
                        "rank_ic_se",
                        "icir",
                        "ic",
                        "hit_rate",
                        "decile_spread",
                        "spread_sharpe",
                        "turnover",
                    )
                ),
            )
    return table


def _num(v) -> str:
    return "nan" if v is None else f"{v:.4f}"


def run_training(
    cfg: RunConfig,
    lake_uri: str | None,
    settings: Settings,
    console: Console,
    summary_json: Path | None,
    remote: RemoteRunFolder | None = None,
) -> dict:
    """Open the lake, run (or resume) the walk-forward with rich progress, print the tables and
    write ``summary_json``; returns the summary. ``remote``: the run's home in object storage, of
    which ``cfg.out_dir`` is the local copy."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gogooku3.exchange_calendar import open_lake_following_exchange

    lake = open_lake_following_exchange(lake_uri or settings.lake_uri, settings.s3)
    if remote is not None:
        remote.pull()
    where = cfg.out_dir if remote is None else remote.uri
    with Progress(
        TextColumn("[bold]fold {task.fields[fold]}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("valid RankIC@1d {task.fields[ic]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[int, int] = {}

        def on_epoch(fold: int, entry) -> None:
            if fold not in tasks:
                tasks[fold] = progress.add_task(
                    "train", total=cfg.train.max_epochs, fold=fold, loss="-", ic="-"
                )
            progress.update(
                tasks[fold], completed=entry.epoch, loss=_num(entry.loss), ic=_num(entry.valid_rank_ic)
            )

        def on_fold(result, resumed: bool) -> None:
            net = result.info["models"][NETWORK]
            if resumed:
                progress.console.print(f"fold {result.fold.index}: finished earlier, resumed from {where}")
                return
            if remote is not None:
                remote.push_fold(result.fold.index)
            if result.fold.index in tasks:
                progress.update(
                    tasks[result.fold.index], total=progress.tasks[tasks[result.fold.index]].completed
                )
            progress.console.print(
                f"fold {result.fold.index}: {NETWORK} {cfg.train.size}, {net['parameters']:,} parameters, "
                f"best epoch {net['best_epoch']} of {net['epochs_run']}"
                f"{' (0: the ridge start)' if net.get('init') == 'ridge' else ''} (valid RankIC@1d "
                f"{_num(net['best_valid_rank_ic'])}), {net['train_samples_per_s']:,.0f} samples/s"
            )

        summary = run_walk_forward(cfg, lake, progress=on_epoch, on_fold=on_fold)
    if remote is not None:
        summary = remote.push_run(summary)
    console.print(fold_table(summary["folds"], min(cfg.horizons)))
    console.print(oos_table(summary["oos"], cfg.horizons))
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_bytes((cfg.out_dir / "summary.json").read_bytes())  # the run's own, byte for byte
    return summary
