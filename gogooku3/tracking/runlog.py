"""A finished walk-forward run (``gogooku3 train --out DIR``) recorded in MLflow and registered.

One parent run per retrain, one nested run per fold:

* parent: params (the whole run config flattened, the data range, the data fingerprint, a hash of
  the feature list, the git commit and image tag given), the out-of-sample metrics per model and
  horizon (``oos.<model>.<metric>_<h>d``), artifacts (``summary.json``, ``run.json``, the fold table
  ``folds.csv``, ``plots/``, the out-of-sample predictions and targets, ``model_files/``: the saved
  network's folder), and the network as an ``mlflow.pytorch`` model registered as
  ``settings.model_name`` (the folder travels with it as extra files).
* fold K: its dates, per-epoch ``loss`` and ``valid_rank_ic_1d`` (step = epoch), each model's test
  metrics (``test.<model>.<metric>_<h>d``), training details, and the fold's checkpoint files.

Recording is idempotent: the parent run carries the run's key (the out folder's ``run.json``
identity and data fingerprint, plus what the caller adds, e.g. the Airflow run id) as a tag; a
finished run with the same key is returned as it is instead of being logged twice, so a retried
task does not register a second version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gogooku3.config import MlflowSettings
from gogooku3.tracking.registry import CHALLENGER, connect

log = logging.getLogger("gogooku3.tracking")

RUN_KEY_TAG = "gogooku3.run_key"
METRICS = ("rank_ic", "rank_ic_se", "icir", "ic", "hit_rate", "spread", "sharpe", "turnover")
#: A fold's dates in the summary (``Fold.describe``).
FOLD_DATES = ("train_start", "train_end", "valid_start", "valid_end", "test_start", "test_end")


class RunLogError(ValueError):
    """The out folder is not a finished walk-forward run; the message names what is missing."""


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_version: str
    experiment_id: str
    reused: bool  # True when an earlier attempt had already recorded this run


def flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """Nested dicts as dotted MLflow params (lists as JSON)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


def metric_items(prefix: str, by_model: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, float]:
    """``{prefix.model.metric_hd: value}`` for the finite metrics of ``{model: {"1d": {...}}}``."""
    out = {}
    for model, by_h in by_model.items():
        for h, m in by_h.items():
            for name in METRICS:
                v = m.get(name)
                if isinstance(v, int | float) and math.isfinite(v):
                    out[f"{prefix}.{model}.{name}_{h}"] = float(v)
    return out


def run_key(out_dir: Path, extra: Mapping[str, str] | None = None) -> str:
    run = json.loads((out_dir / "run.json").read_text())
    blob = json.dumps({"run": run, "extra": dict(extra or {})}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _check_finished(out_dir: Path) -> dict:
    from gogooku3.training.inference import MODEL_FILES

    need = ["run.json", "summary.json", "oos_predictions.parquet", "oos_targets.parquet"]
    need += [f"model/{name}" for name in MODEL_FILES]
    missing = [n for n in need if not (out_dir / n).is_file()]
    if missing:
        raise RunLogError(f"{out_dir} is not a finished walk-forward run: it lacks {', '.join(missing)}")
    return json.loads((out_dir / "summary.json").read_text())


def _fold_table_csv(summary: dict) -> str:
    import polars as pl

    rows = []
    for f in summary["folds"]:
        for model, by_h in f["metrics"].items():
            for h, m in by_h.items():
                rows.append(
                    {
                        "fold": f["fold"],
                        **{k: f[k] for k in FOLD_DATES},
                        "model": model,
                        "horizon": h,
                        **{name: m.get(name) for name in METRICS},
                    }
                )
    return pl.DataFrame(rows).write_csv()


def log_walk_forward(
    out_dir: str | Path,
    settings: MlflowSettings,
    *,
    tags: Mapping[str, str] | None = None,
    key_extra: Mapping[str, str] | None = None,
) -> LoggedRun:
    """Record the finished run in ``out_dir`` and register its network as a new version of
    ``settings.model_name`` with the alias ``challenger``. ``tags`` (e.g. ``git_commit``, ``image``,
    ``airflow_run_id``) go on the parent run, its params and the model version."""
    import mlflow

    out_dir = Path(out_dir)
    summary = _check_finished(out_dir)
    run_doc = json.loads((out_dir / "run.json").read_text())
    client = connect(settings)
    name = settings.model_name
    experiment = client.get_experiment_by_name(settings.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(settings.experiment)
    key = run_key(out_dir, key_extra)

    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if found and (version := _registered_version(client, name, found[0].info.run_id)) is not None:
        # A retried task (or a rerun of the same training): the alias and tags again, nothing else.
        log.info(
            "walk-forward run already recorded: MLflow run %s, %s v%s", found[0].info.run_id, name, version
        )
        _label(client, name, version, out_dir, key, run_doc, tags)
        return LoggedRun(found[0].info.run_id, version, experiment_id, reused=True)

    features = (out_dir / "model" / "features.json").read_bytes()
    params = flatten("", run_doc["run"], {})
    params.update(
        {
            "data_fingerprint": run_doc["data"],
            "features_sha256": hashlib.sha256(features).hexdigest(),
            "n_features": str(summary["n_features"]),
            "n_codes": str(summary["n_codes"]),
            **{k: str(v) for k, v in (tags or {}).items()},
        }
    )
    run_tags = {
        RUN_KEY_TAG: key,
        "mlflow.runName": f"retrain {summary['start']}..{summary['end']}",
        **(tags or {}),
    }
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(tags=run_tags) as parent:
        mlflow.log_params(params)
        mlflow.log_metrics(metric_items("oos", summary["oos"]))
        for file in ("summary.json", "run.json", "oos_predictions.parquet", "oos_targets.parquet"):
            mlflow.log_artifact(str(out_dir / file))
        mlflow.log_text(_fold_table_csv(summary), "folds.csv")
        if (out_dir / "plots").is_dir():
            mlflow.log_artifacts(str(out_dir / "plots"), "plots")
        mlflow.log_artifacts(str(out_dir / "model"), "model_files")
        for fold in summary["folds"]:
            _log_fold(out_dir, fold)
        info = _log_network(out_dir / "model", name)
        version = str(info.registered_model_version)
    _label(client, name, version, out_dir, key, run_doc, tags)
    log.info("recorded MLflow run %s; registered %s v%s as %s", parent.info.run_id, name, version, CHALLENGER)
    return LoggedRun(parent.info.run_id, version, experiment_id, reused=False)


def _label(
    client: Any,
    name: str,
    version: str,
    out_dir: Path,
    key: str,
    run_doc: dict,
    tags: Mapping[str, str] | None,
) -> None:
    """The version's tags (what promotion reads: the last day the network saw, the embargo) and the
    ``challenger`` alias."""
    seen = json.loads((out_dir / "model" / "train_config.json").read_text()).get("valid_end", "")
    labels = {
        "run_key": key,
        "seen_through": seen,
        "embargo": str(run_doc["run"]["plan"]["embargo"]),
        **(tags or {}),
    }
    for k, v in labels.items():
        client.set_model_version_tag(name, version, k, str(v))
    client.set_registered_model_alias(name, CHALLENGER, version)


def _log_fold(out_dir: Path, fold: dict) -> None:
    import mlflow

    k = fold["fold"]
    dates = {name: fold[name] for name in FOLD_DATES}
    with mlflow.start_run(run_name=f"fold {k}", nested=True):
        net = fold["models"]["atft_gat_fan"]
        mlflow.log_params(
            {
                "fold": k,
                **dates,
                "parameters": net["parameters"],
                "best_epoch": net["best_epoch"],
                "init": net.get("init", "random"),  # runs before the ridge start had none
            }
        )
        for epoch in net["history"]:
            step = int(epoch["epoch"])
            if epoch.get("loss") is not None:  # epoch 0 (the ridge start) trained nothing
                mlflow.log_metric("loss", epoch["loss"], step=step)
            if epoch.get("valid_rank_ic") is not None:
                mlflow.log_metric("valid_rank_ic_1d", epoch["valid_rank_ic"], step=step)
        mlflow.log_metrics(metric_items("test", fold["metrics"]))
        mlflow.log_metrics(
            {
                "train_samples_per_s": net["train_samples_per_s"],
                "seconds_per_epoch": net["seconds_per_epoch"],
                "best_valid_rank_ic_1d": net["best_valid_rank_ic"],
            }
        )
        mlflow.log_dict(fold["models"], "training.json")
        checkpoint = out_dir / "folds" / f"fold_{k}"
        if checkpoint.is_dir():
            mlflow.log_artifacts(str(checkpoint), "checkpoint")


def _log_network(model_dir: Path, name: str) -> Any:
    """The saved network as an ``mlflow.pytorch`` model (pickled module, the folder as extra files),
    registered as a new version of the model ``name``."""
    import importlib.metadata as md

    import mlflow.pytorch

    from gogooku3.training.inference import MODEL_FILES, SavedNetwork

    network = SavedNetwork.load(model_dir).network("cpu")
    # Listed, not inferred: inference imports the model in a subprocess (slow, and it guesses).
    requirements = [f"{dist}=={md.version(dist)}" for dist in ("torch", "torch_geometric", "numpy", "polars")]
    with tempfile.TemporaryDirectory() as tmp:
        extra = []
        for file in MODEL_FILES:
            target = Path(tmp) / file
            target.write_bytes((model_dir / file).read_bytes())
            extra.append(str(target))
        return mlflow.pytorch.log_model(
            network,
            name="model",
            registered_model_name=name,
            pip_requirements=requirements,
            extra_files=extra,
            # Pickled, not "pt2": torch.export traces forward with fixed shapes, while a day's graph
            # (and its number of edges) changes with every day.
            serialization_format="pickle",
        )


def _registered_version(client: Any, name: str, run_id: str) -> str | None:
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return str(versions[0].version) if versions else None


def git_commit(repo: str | Path | None = None) -> str:
    """``GOGOOKU3_GIT_COMMIT`` (set in the images at build time), else ``git rev-parse HEAD`` of the
    checkout, else ``unknown``."""
    import subprocess

    if commit := os.environ.get("GOGOOKU3_GIT_COMMIT"):
        return commit
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
