"""A walk-forward run: panel -> folds -> per fold (normaliser, network, baselines, test predictions)
-> out-of-sample predictions, metrics, plots and the model artefacts, as ``gogooku3 train`` runs it.

Layout under ``out``::

    run.json                     what the run is (arguments + data fingerprint), written first
    folds/fold_K/                one finished fold (``done.json`` written last, atomically)
        weights.pt normaliser.json model_config.json predictions.parquet
    oos_predictions.parquet      Date, Code, model, fold, pred_ret_{h}d
    oos_targets.parquet          Date, Code, target_ret_{h}d of the test rows (what was scored)
    summary.json                 folds (dates, metrics per model) and oos (metrics per model)
    plots/*.png                  cumulative RankIC, decile bars, long-short curve
    model/                       the last fold's network: weights.pt, model_config.json,
                                 normaliser.json, features.json, graph.json, train_config.json

Resuming: a run started again with the same arguments on the same data finds the finished folds'
``done.json`` and starts at the first unfinished fold; every fold is seeded from (seed, fold) only,
so the resumed run ends with the metrics of an uninterrupted one. Different arguments or data on
an existing ``out`` are refused rather than mixed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from gogooku3.redaction import library_logger
from gogooku3.training.baselines import BestFeature, LightGBM, Ridge
from gogooku3.training.dataset import SEQ_LEN, DatasetError, Panel, load_panel, target_column
from gogooku3.training.folds import Fold, FoldPlan, walk_forward
from gogooku3.training.graph import GraphConfig
from gogooku3.training.metrics import daily_frame, evaluate, pred_column
from gogooku3.training.normalise import Normaliser
from gogooku3.training.samples import Rows, Samples, sample_rows
from gogooku3.training.trainer import EpochLog, TrainConfig, predict_network, train_network

log = library_logger(__name__)

NETWORK = "atft_gat_fan"
OOS_TARGETS = "oos_targets.parquet"
MODELS = (NETWORK, "ridge", "lightgbm", "best_feature")
DEFAULT_HORIZONS = (1, 5, 10, 20)


class RunError(ValueError):
    """The run cannot start (or resume) as asked; the message says why."""


@dataclass(frozen=True)
class RunConfig:
    start: dt.date
    end: dt.date
    out_dir: Path
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    seed: int = 0
    plan: FoldPlan = field(default_factory=FoldPlan)
    train: TrainConfig = field(default_factory=TrainConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    features: tuple[str, ...] | None = None
    threads: int | None = None

    def identity(self) -> dict:
        """What makes two runs the same run (the output directory and threads do not)."""
        d = asdict(self)
        d.pop("out_dir")
        d.pop("threads")
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return d


@dataclass
class FoldResult:
    fold: Fold
    dates: dict[str, str]
    predictions: pl.DataFrame
    info: dict


def usable_days(panel: Panel, seq_len: int = SEQ_LEN) -> tuple[int, int]:
    """[first, stop): from the first day with a full input window to the last day with a known
    shortest-horizon target."""
    has_sample = (panel.run >= seq_len).any(axis=1)
    shortest = int(np.argmin(panel.horizons))
    known = np.isfinite(panel.targets[:, :, shortest]).any(axis=1) & has_sample
    if not has_sample.any() or not known.any():
        raise RunError(
            f"no day of {panel.days[0]}..{panel.days[-1]} has a code with {seq_len} days of history "
            f"and a known {panel.horizons[shortest]}d target"
        )
    return int(np.argmax(has_sample)), int(len(known) - np.argmax(known[::-1]))


def prepare(cfg: RunConfig, lake) -> tuple[Panel, list[Fold]]:
    """Everything that can be checked before training: data, horizons, folds. Raises
    :class:`DatasetError`, :class:`FoldError` or :class:`RunError`."""
    if not cfg.horizons or len(set(cfg.horizons)) != len(cfg.horizons) or min(cfg.horizons) < 1:
        raise RunError(f"--horizons {cfg.horizons}: expected distinct positive trading-day counts")
    panel = load_panel(lake, cfg.start, cfg.end, cfg.horizons, features=cfg.features)
    panel.feature_index(cfg.graph.return_feature)
    first, stop = usable_days(panel)
    return panel, walk_forward(first, stop, cfg.plan, cfg.horizons)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` through a hidden temporary file and a rename: a reader (or a resumed
    run) sees the old file or the new one, never a prefix."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _json(obj) -> bytes:
    """Strict JSON (NaN and infinities, e.g. a validation RankIC never defined, become null)."""
    return (json.dumps(_finite(obj), indent=1, sort_keys=False, default=str, allow_nan=False) + "\n").encode()


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _keys(panel: Panel, rows: Rows) -> dict[str, pl.Series]:
    """The (Date, Code) columns of ``rows``, in row order."""
    days = np.concatenate([np.full(len(c), t) for t, c in rows])
    codes = np.concatenate([c for _, c in rows])
    return {
        "Date": pl.Series([panel.days[t] for t in days], dtype=pl.Date),
        "Code": pl.Series([panel.codes[i] for i in codes], dtype=pl.Utf8),
    }


def prediction_frame(
    panel: Panel, rows: Rows, fold: int, model: str, pred: np.ndarray, scale: np.ndarray
) -> pl.DataFrame:
    """(Date, Code, model, fold, pred_ret_{h}d) of ``rows``: ``pred`` in scaled units times ``scale``."""
    cols = _keys(panel, rows)
    n = len(cols["Code"])
    cols["model"] = pl.Series([model] * n, dtype=pl.Utf8)
    cols["fold"] = pl.Series([fold] * n, dtype=pl.Int64)
    for k, h in enumerate(panel.horizons):
        cols[pred_column(h)] = pl.Series(pred[:, k].astype(np.float64) * float(scale[k]), dtype=pl.Float64)
    return pl.DataFrame(cols)


def targets_frame(panel: Panel, rows: Rows) -> pl.DataFrame:
    """(Date, Code, target_ret_{h}d) of the rows: the raw targets the metrics score against."""
    cols = _keys(panel, rows)
    y = np.concatenate([panel.targets[t, c] for t, c in rows])
    for k, h in enumerate(panel.horizons):
        cols[target_column(h)] = pl.Series(y[:, k].astype(np.float64), dtype=pl.Float64, nan_to_null=True)
    return pl.DataFrame(cols)


def oos_targets(summary: dict, run_dir: Path | None = None) -> pl.DataFrame:
    """The (Date, Code, target_ret_{h}d) rows a run's out-of-sample metrics were scored against.
    ``run_dir``: where the run's folder is now, when not where it ran (the summary's paths are the
    run's own: a run in a task container wrote ``/lake/...``)."""
    folder = Path(summary["oos_predictions"]).parent if run_dir is None else Path(run_dir)
    return pl.read_parquet(folder / OOS_TARGETS)


def run_fold(
    cfg: RunConfig, panel: Panel, fold: Fold, progress: Callable[[int, EpochLog], None] | None = None
) -> tuple[FoldResult, dict[str, bytes]]:
    """Train every model on ``fold`` and predict its test days; returns the result and the network's
    artefact files (name -> bytes)."""
    import io

    import torch

    train_rows, valid_rows, test_rows = (sample_rows(panel, b) for b in (fold.train, fold.valid, fold.test))
    if not train_rows or not valid_rows or not test_rows:
        raise RunError(f"fold {fold.index} has an empty train, validation or test block")
    # Fit on the training days only; validation and test pass through it unchanged.
    samples = Samples(panel, Normaliser.fit(panel.x, train_rows, panel.features), cfg.graph)
    samples.fit_target_scale(fold.train)
    scale = samples.target_scale
    threads = cfg.threads or torch.get_num_threads()
    frames, info = [], {"models": {}}

    # The baselines first: the network may start from the fold's ridge (TrainConfig.init).
    fitted_baselines = []
    for baseline in (Ridge(), LightGBM(), BestFeature()):
        t0 = time.perf_counter()
        fitted = baseline.fit(samples, train_rows, valid_rows, seed=cfg.seed, threads=threads)
        frames.append(
            prediction_frame(
                panel, test_rows, fold.index, baseline.name, fitted.predict(samples, test_rows), scale
            )
        )
        detail: dict = {"seconds": time.perf_counter() - t0}
        if isinstance(fitted, Ridge):
            detail["alphas"] = fitted.alphas
        elif isinstance(fitted, BestFeature):
            detail["chosen"] = [{"feature": f, "sign": s, "train_rank_ic": r} for f, s, r in fitted.chosen]
        elif isinstance(fitted, LightGBM):
            detail["best_iterations"] = [b.best_iteration for b in fitted.boosters]
        info["models"][baseline.name] = detail
        fitted_baselines.append(fitted)
    ridge = fitted_baselines[0]

    t0 = time.perf_counter()
    net = train_network(
        samples,
        fold,
        cfg.train,
        seed=cfg.seed,
        progress=progress,
        linear_start=ridge.weights if cfg.train.init == "ridge" else None,
    )
    frames.insert(
        0,
        prediction_frame(
            panel,
            test_rows,
            fold.index,
            NETWORK,
            predict_network(net.model, samples, test_rows, cfg.train.device, cfg.seed),
            scale,
        ),
    )
    info["models"] = {
        NETWORK: {
            "parameters": net.parameters,
            "init": cfg.train.init,
            "best_epoch": net.best_epoch,
            "epochs_run": sum(e.epoch > 0 for e in net.history),
            "best_valid_rank_ic": net.best_valid_rank_ic,
            "train_samples_per_s": net.samples_per_s,
            "seconds_per_epoch": net.train_seconds / max(1, sum(e.epoch > 0 for e in net.history)),
            "seconds": time.perf_counter() - t0,
            "history": [asdict(e) for e in net.history],
        },
        **info["models"],
    }
    info["target_scale"] = scale.tolist()

    weights = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.model.state_dict().items()}, weights)
    artefacts = {
        "weights.pt": weights.getvalue(),
        "model_config.json": _json(net.model_config.to_dict()),
        "normaliser.json": samples.normaliser.to_json().encode(),
        "target_scale.json": _json(dict(zip([f"{h}d" for h in panel.horizons], scale.tolist(), strict=True))),
    }
    result = FoldResult(fold, fold.describe(panel.days), pl.concat(frames), info)
    return result, artefacts


def run_walk_forward(
    cfg: RunConfig,
    lake,
    *,
    progress: Callable[[int, EpochLog], None] | None = None,
    on_fold: Callable[[FoldResult, bool], None] | None = None,
) -> dict:
    """Run (or resume) ``cfg`` on ``lake``; returns the summary also written to ``summary.json``."""
    from gogooku3.training.plots import write_plots

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    panel, folds = prepare(cfg, lake)
    out = cfg.out_dir
    (out / "folds").mkdir(parents=True, exist_ok=True)
    identity = {"run": cfg.identity(), "data": panel.fingerprint}
    run_file = out / "run.json"
    if run_file.exists():
        before = json.loads(run_file.read_text())
        if before != json.loads(_json(identity)):
            raise RunError(
                f"{out} holds a run with other arguments or data ({run_file}); use another --out or "
                "remove it to start over"
            )
    else:
        write_atomic(run_file, _json(identity))

    results: list[FoldResult] = []
    for fold in folds:
        fold_dir = out / "folds" / f"fold_{fold.index}"
        done = fold_dir / "done.json"
        if done.exists():
            info = json.loads(done.read_text())
            result = FoldResult(
                fold, info["dates"], pl.read_parquet(fold_dir / "predictions.parquet"), info["info"]
            )
            resumed = True
        else:
            fold_dir.mkdir(parents=True, exist_ok=True)
            result, artefacts = run_fold(cfg, panel, fold, progress)
            for name, data in artefacts.items():
                write_atomic(fold_dir / name, data)
            buf = _parquet_bytes(result.predictions)
            write_atomic(fold_dir / "predictions.parquet", buf)
            write_atomic(done, _json({"dates": result.dates, "info": result.info}))
            resumed = False
        results.append(result)
        if on_fold is not None:
            on_fold(result, resumed)

    preds = pl.concat([r.predictions for r in results]).sort("model", "Date", "Code")
    test_rows = [r for f in folds for r in sample_rows(panel, f.test)]
    targets = targets_frame(panel, test_rows)
    horizons = list(cfg.horizons)
    oos_path = out / "oos_predictions.parquet"
    write_atomic(oos_path, _parquet_bytes(preds))
    write_atomic(out / OOS_TARGETS, _parquet_bytes(targets))
    by_fold = evaluate(preds, targets, horizons, by_fold=True)
    summary = {
        "oos_predictions": str(oos_path.resolve()),
        "start": cfg.start.isoformat(),
        "end": cfg.end.isoformat(),
        "horizons": horizons,
        "models": list(MODELS),
        "seed": cfg.seed,
        "size": cfg.train.size,
        "n_codes": len(panel.codes),
        "n_features": len(panel.features),
        "folds": [
            {"fold": r.fold.index, **r.dates, "metrics": by_fold.get(r.fold.index, {}), **r.info}
            for r in results
        ],
        "oos": evaluate(preds, targets, horizons),
        "config": identity,
    }
    daily = daily_frame(preds, targets, horizons)
    summary["plots"] = [
        str(p) for p in write_plots(daily, preds, targets, out / "plots", horizon=min(horizons))
    ]
    _write_model(out / "model", folds[-1], cfg, panel)
    summary = _finite(summary)
    write_atomic(out / "summary.json", _json(summary))
    return summary


def _write_model(model_dir: Path, last: Fold, cfg: RunConfig, panel: Panel) -> None:
    """The network to serve: the last fold's (trained on the most recent data), with everything
    inference needs to rebuild its inputs."""
    model_dir.mkdir(parents=True, exist_ok=True)
    src = cfg.out_dir / "folds" / f"fold_{last.index}"
    for name in ("weights.pt", "model_config.json", "normaliser.json", "target_scale.json"):
        write_atomic(model_dir / name, (src / name).read_bytes())
    write_atomic(model_dir / "features.json", _json(list(panel.features)))
    write_atomic(model_dir / "graph.json", _json(cfg.graph.to_dict()))
    write_atomic(
        model_dir / "train_config.json",
        # The fold's dates: a later comparison scores this network only on days after it saw any.
        _json({**cfg.train.to_dict(), "seq_len": SEQ_LEN, "fold": last.index, **last.describe(panel.days)}),
    )


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


__all__ = ["MODELS", "NETWORK", "DatasetError", "RunConfig", "RunError", "prepare", "run_walk_forward"]
