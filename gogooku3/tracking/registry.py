"""The model registry's champion and challenger of the registered model (``settings.model_name``,
default :data:`MODEL_NAME`).

A newly recorded version gets the alias ``challenger`` (:mod:`.runlog`). :func:`promote` loads the
``champion`` (if any) from the registry, scores both on the challenger's most recent test folds
(the rule, days and figures: :mod:`gogooku3.training.promotion`) and moves ``champion`` to the
challenger only when the rule says so. The decision, its reason and the figures go into the
challenger version's tags (``promotion.*``) either way; the caller tells Slack.

Promotion must never run twice at once (two challengers could both see the same champion and
both move the alias): the Airflow task runs in a pool of one slot.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gogooku3.config import ConfigError, MlflowSettings
from gogooku3.training.promotion import (
    Decision,
    PromotionPolicy,
    decide,
    evaluation_days,
    mean_daily_rank_ic,
)

log = logging.getLogger("gogooku3.tracking")

#: The default registered model (:attr:`gogooku3.config.MlflowSettings.model_name`).
MODEL_NAME = MlflowSettings().model_name
CHALLENGER, CHAMPION = "challenger", "champion"


def connect(settings: MlflowSettings) -> Any:
    """An ``MlflowClient`` for ``settings`` (the fluent API pointed at the same server)."""
    import mlflow

    if not settings.configured:
        raise ConfigError(
            "no MLflow tracking server: set the mlflow connection or MLFLOW_TRACKING_URI (http://host:port)"
        )
    if settings.username:
        # MLflow's client reads basic-auth credentials from these; never put them in the URI.
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.password.get()
    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient(settings.tracking_uri)


@dataclass(frozen=True)
class PromotionResult:
    decision: Decision
    model_name: str
    challenger_version: str
    champion_version: str | None  # the champion before the decision
    champion_after: str  # the version the champion alias points at now

    def message(self) -> str:
        d = self.decision
        if d.promote:
            head = f"{self.model_name} v{self.challenger_version} is the new champion"
            if self.champion_version:
                head += f" (was v{self.champion_version})"
        else:
            live = f"v{self.champion_after}" if self.champion_after else "no champion"
            head = f"{self.model_name} v{self.challenger_version} stays challenger; {live} stays live"
        champion = "-" if d.champion_rank_ic is None else f"{d.champion_rank_ic:.4f}"
        return (
            f"{head}: {d.reason}. RankIC@1d over {d.days} test days {d.first_day}..{d.last_day}: "
            f"challenger {d.challenger_rank_ic:.4f}, champion {champion}, ridge {d.ridge_rank_ic:.4f}"
        )


def _alias_version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _recorded(tags: dict[str, str]) -> Decision:
    """The :class:`Decision` a version's ``promotion.*`` tags hold."""

    def number(key: str, missing: float | None) -> float | None:
        text = tags.get(f"promotion.{key}", "")
        return float(text) if text else missing

    return Decision(
        promote=tags["promotion.promote"] == "True",
        reason=tags.get("promotion.reason", ""),
        challenger_rank_ic=number("challenger_rank_ic", float("nan")),
        ridge_rank_ic=number("ridge_rank_ic", float("nan")),
        champion_rank_ic=number("champion_rank_ic", None),
        days=int(tags.get("promotion.days") or 0),
        first_day=tags.get("promotion.first_day") or None,
        last_day=tags.get("promotion.last_day") or None,
        margin=number("margin", 0.0),
    )


def promote(
    settings: MlflowSettings,
    lake: Any,
    policy: PromotionPolicy,
    *,
    challenger_version: str | None = None,
    device: str = "cpu",
) -> PromotionResult:
    """Champion/challenger for ``challenger_version`` (default: the version aliased ``challenger``)."""
    import mlflow.pytorch
    import polars as pl

    from gogooku3.training.inference import SavedNetwork

    client = connect(settings)
    name = settings.model_name
    challenger = (
        client.get_model_version(name, challenger_version)
        if challenger_version
        else _alias_version(client, name, CHALLENGER)
    )
    if challenger is None:
        raise ConfigError(f"{name} has no version aliased {CHALLENGER!r} to promote")
    version = str(challenger.version)
    if "promotion.promote" in challenger.tags:
        # Decided before (a retried task): the recorded decision stands, applied again.
        recorded = _recorded(challenger.tags)
        if recorded.promote:
            client.set_registered_model_alias(name, CHAMPION, version)
        before = challenger.tags.get("promotion.champion_version") or None
        result = PromotionResult(
            recorded, name, version, before, version if recorded.promote else (before or "")
        )
        log.info("decided earlier: %s", result.message())
        return result
    champion = _alias_version(client, name, CHAMPION)
    if champion is not None and str(champion.version) == version:
        raise ConfigError(f"{name} v{version} is already the champion")

    with tempfile.TemporaryDirectory(prefix="gogooku3-promote-") as tmp:
        run_dir = Path(
            mlflow.artifacts.download_artifacts(
                run_id=challenger.run_id, artifact_path="", dst_path=f"{tmp}/run"
            )
        )
        summary = json.loads((run_dir / "summary.json").read_text())
        embargo = int(json.loads((run_dir / "run.json").read_text())["run"]["plan"]["embargo"])
        preds = pl.read_parquet(run_dir / "oos_predictions.parquet")
        targets = pl.read_parquet(run_dir / "oos_targets.parquet")

        champion_ic = None
        seen = None
        if champion is not None:
            # Downloaded once, by the version the alias named above: the module and its folder are
            # the same model even if the alias moved meanwhile.
            champion_dir = Path(
                mlflow.artifacts.download_artifacts(
                    f"models:/{name}/{champion.version}", dst_path=f"{tmp}/champion"
                )
            )
            served = SavedNetwork.load(champion_dir / "extra_files")
            seen = served.seen_through
        days = evaluation_days(summary, policy.eval_folds, embargo, seen)
        network = preds.filter(pl.col("model") == "atft_gat_fan")
        ridge = preds.filter(pl.col("model") == "ridge")
        challenger_ic = mean_daily_rank_ic(network, targets, days) if days else float("nan")
        ridge_ic = mean_daily_rank_ic(ridge, targets, days) if days else float("nan")
        if champion is not None and days:
            module = mlflow.pytorch.load_model(str(champion_dir), map_location=device)
            champion_ic = mean_daily_rank_ic(
                served.predict(lake, days, device=device, model=module), targets, days
            )
        elif champion is not None:
            champion_ic = float("nan")

    decision = decide(challenger_ic, ridge_ic, champion_ic, policy, days)
    before = str(champion.version) if champion is not None else None
    client.set_model_version_tag(name, version, "promotion.champion_version", before or "")
    for key, value in decision.to_dict().items():
        if key != "promote":
            text = "" if value is None else str(value)
            client.set_model_version_tag(name, version, f"promotion.{key}", text)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    # Last: a retry after a failure before this line decides again rather than trusting half the tags.
    client.set_model_version_tag(name, version, "promotion.promote", str(decision.promote))
    after = version if decision.promote else (before or "")
    result = PromotionResult(decision, name, version, before, after)
    log.info("%s", result.message())
    return result
