"""MLflow for real (gogooku3.tracking): a walk-forward run recorded on the local MLflow server (S3
artifacts), registered, read back through the client; and champion/challenger promotion with the
champion really loaded from the registry and scored on the lake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from gogooku3.config import MlflowSettings
from gogooku3.lake import open_lake
from gogooku3.tracking import CHALLENGER, CHAMPION
from gogooku3.tracking.registry import connect, promote
from gogooku3.tracking.runlog import RunLogError, log_walk_forward
from gogooku3.training.promotion import PromotionPolicy, evaluation_days, mean_daily_rank_ic

pytestmark = pytest.mark.integration

#: A network that sees only ret_1d: its 20-day window still shows the planted 5-day reversal, which
#: a ridge on the day's ret_1d alone cannot use, so it should beat that ridge; and it is far weaker
#: than the network on every feature.
ONE_FEATURE = ("ret_1d",)


def _out(summary: dict) -> Path:
    return Path(summary["oos_predictions"]).parent


@pytest.fixture(scope="module")
def registry(mlflow_server):
    """This module's own experiment and registered model: the server is shared with other modules."""
    settings = MlflowSettings(
        tracking_uri=mlflow_server.tracking_uri, experiment="test_tracking", model_name="test-tracking-atft"
    )
    return settings, connect(settings)


def test_recorded_run_is_readable_back_from_s3(registry, walk_forward_factory, mlflow_server, tmp_path):
    import mlflow

    settings, client = registry
    summary = walk_forward_factory()
    logged = log_walk_forward(
        _out(summary), settings, tags={"git_commit": "abc123", "image": "gogooku3-task:test"}
    )
    assert not logged.reused
    version = client.get_model_version(settings.model_name, logged.model_version)
    assert client.get_model_version_by_alias(settings.model_name, CHALLENGER).version == version.version
    assert (
        version.run_id == logged.run_id and version.tags["seen_through"] == summary["folds"][-1]["valid_end"]
    )

    run = client.get_run(logged.run_id)
    assert run.data.params["git_commit"] == "abc123" and run.data.params["image"] == "gogooku3-task:test"
    assert run.data.params["train.size"] == "tiny" and run.data.params["plan.n_folds"] == "4"
    assert len(run.data.params["features_sha256"]) == 64
    oos = summary["oos"]["atft_gat_fan"]["1d"]["rank_ic"]
    assert run.data.metrics["oos.atft_gat_fan.rank_ic_1d"] == pytest.approx(oos)

    folds = client.search_runs(
        [logged.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{logged.run_id}'"
    )
    assert sorted(r.data.params["fold"] for r in folds) == ["0", "1", "2", "3"]
    fold0 = next(r for r in folds if r.data.params["fold"] == "0")
    history = summary["folds"][0]["models"]["atft_gat_fan"]["history"]
    losses = client.get_metric_history(fold0.info.run_id, "loss")
    # epoch 0 is the ridge start: scored on validation, no training loss
    assert history[0]["epoch"] == 0 and history[0]["loss"] is None and fold0.data.params["init"] == "ridge"
    trained = [(e["epoch"], pytest.approx(e["loss"])) for e in history[1:]]
    assert [(m.step, m.value) for m in losses] == trained
    valid = client.get_metric_history(fold0.info.run_id, "valid_rank_ic_1d")
    assert [(m.step, m.value) for m in valid] == [
        (e["epoch"], pytest.approx(e["valid_rank_ic"])) for e in history
    ]

    # Artifacts: through the MLflow client, and really in the S3 bucket.
    got = Path(
        mlflow.artifacts.download_artifacts(run_id=logged.run_id, artifact_path="", dst_path=str(tmp_path))
    )
    assert json.loads((got / "summary.json").read_text()) == json.loads(
        (_out(summary) / "summary.json").read_text()
    )
    assert pl.read_parquet(got / "oos_predictions.parquet").equals(
        pl.read_parquet(summary["oos_predictions"])
    )
    assert {"cumulative_rank_ic.png", "decile_bars.png", "long_short.png"} <= {
        p.name for p in (got / "plots").iterdir()
    }
    assert (got / "model_files" / "weights.pt").read_bytes() == (
        _out(summary) / "model" / "weights.pt"
    ).read_bytes()
    assert pl.read_csv(got / "folds.csv").height == 4 * 4 * 4  # folds x models x horizons
    keys = [
        o["Key"]
        for o in mlflow_server.s3.client()
        .list_objects_v2(
            Bucket=mlflow_server.s3.bucket, Prefix=f"mlflow/{logged.experiment_id}/{logged.run_id}/"
        )
        .get("Contents", [])
    ]
    assert any(k.endswith("artifacts/summary.json") for k in keys)

    # A retried task records nothing twice.
    again = log_walk_forward(
        _out(summary), settings, tags={"git_commit": "abc123", "image": "gogooku3-task:test"}
    )
    assert again.reused and (again.run_id, again.model_version) == (logged.run_id, logged.model_version)


def test_an_unfinished_run_is_refused(registry, tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(RunLogError, match="lacks summary.json"):
        log_walk_forward(tmp_path, registry[0])


def test_champion_challenger(registry, walk_forward_factory, features_lake_factory):
    settings, client = registry
    lake = open_lake(features_lake_factory())
    policy = PromotionPolicy(margin=0.002, eval_folds=2)

    # First version: it becomes champion only if it beats ridge on its last two test folds.
    weak = walk_forward_factory(features=ONE_FEATURE)
    first = log_walk_forward(_out(weak), settings)
    result = promote(settings, lake, policy)
    d = result.decision
    preds, targets = pl.read_parquet(weak["oos_predictions"]), _targets(weak)
    days = evaluation_days(weak, 2, 20)
    net_ic = mean_daily_rank_ic(preds.filter(pl.col("model") == "atft_gat_fan"), targets, days)
    ridge_ic = mean_daily_rank_ic(preds.filter(pl.col("model") == "ridge"), targets, days)
    assert (d.challenger_rank_ic, d.ridge_rank_ic, d.champion_rank_ic) == (net_ic, ridge_ic, None)
    assert d.promote and net_ic > ridge_ic, d.reason
    assert client.get_model_version_by_alias(settings.model_name, CHAMPION).version == first.model_version
    tags = client.get_model_version(settings.model_name, first.model_version).tags
    assert tags["promotion.promote"] == "True" and tags["promotion.reason"] == d.reason

    # Second: the full network. The champion is loaded from the registry and scored on the days
    # after it last learnt anything; those are its own last fold's test days, so its score there
    # is its own out-of-sample RankIC on them.
    strong = walk_forward_factory()
    second = log_walk_forward(_out(strong), settings)
    result = promote(settings, lake, policy)
    d = result.decision
    seen = dt.date.fromisoformat(weak["folds"][-1]["valid_end"])
    days = evaluation_days(strong, 2, 20, seen)
    assert days and days[0] >= dt.date.fromisoformat(weak["folds"][-1]["test_start"])
    own = preds.filter(pl.col("model") == "atft_gat_fan")
    assert d.champion_rank_ic == pytest.approx(mean_daily_rank_ic(own, targets, days), abs=1e-6)
    assert d.days == len(days) and result.champion_version == first.model_version
    strong_preds = pl.read_parquet(strong["oos_predictions"])
    expect_ridge = mean_daily_rank_ic(strong_preds.filter(pl.col("model") == "ridge"), _targets(strong), days)
    assert d.ridge_rank_ic == expect_ridge
    expect_promote = (
        d.challenger_rank_ic > max(d.champion_rank_ic + 0.002, 0.0) and d.challenger_rank_ic >= expect_ridge
    )
    assert d.promote == expect_promote, d.reason
    live = client.get_model_version_by_alias(settings.model_name, CHAMPION).version
    assert live == (second.model_version if d.promote else first.model_version)
    assert client.get_model_version_by_alias(settings.model_name, CHALLENGER).version == second.model_version
    assert (
        client.get_model_version(settings.model_name, second.model_version).tags["promotion.champion_version"]
        == first.model_version
    )
    assert f"v{second.model_version}" in result.message()

    # A retried promote task: the recorded decision stands, nothing is scored or moved again.
    again = promote(settings, lake, policy, challenger_version=second.model_version)
    assert (again.decision.promote, again.decision.reason, again.decision.days) == (
        d.promote,
        d.reason,
        d.days,
    )
    assert again.decision.champion_rank_ic == pytest.approx(d.champion_rank_ic)
    assert client.get_model_version_by_alias(settings.model_name, CHAMPION).version == live


def _targets(summary: dict) -> pl.DataFrame:
    from gogooku3.training.walkforward import oos_targets

    return oos_targets(summary)
