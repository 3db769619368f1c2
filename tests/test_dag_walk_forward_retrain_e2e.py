"""``airflow dags test walk_forward_retrain`` end to end on the synthetic market's features, with the
real MLflow server (SQLite store, artifacts on the local S3 server), the Slack capture and, for the
first retrain, the task image run FOR REAL by the DockerOperator on the engine include/scripts/
dockerd.sh started (on CPU: this engine has no GPU runtime).

Two retrains: the first in the container on the market with its planted signal; the second on a
copy of the market without one (signal = 0), which can only be worse, in-process (the task images
pointed at absent tags: the runtime plan's last fallback). Whatever the first decided, the second
must not become champion; the registry, the version tags, Slack and the model Asset hold both
decisions.

A third retrain has its lake on the S3 server instead of a bind mount: the container reads the
features from S3 and writes its run folder there with the credentials the operator hands it
privately, and the register task records that run from S3.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
from airflow_harness import asset_events, dags_test, tail

from gogooku3.config import MlflowSettings
from gogooku3.devtools.s3_server import SECRET_ACCESS_KEY, upload_tree
from gogooku3.devtools.seed_features import CI_MARKET
from gogooku3.devtools.slack_capture import running_slack_capture
from gogooku3.lake import open_lake
from gogooku3.tracking import CHALLENGER, CHAMPION
from gogooku3.tracking.registry import connect

pytestmark = pytest.mark.integration

SATURDAY = dt.date(2024, 1, 6)
# Each retrain's limit: `make test` runs this module beside the other worker's tests, where a
# retrain in the container took up to ~15 min (2-3 min alone).
RETRAIN_TIMEOUT_S = 1800
CONF = {"start": "2022-01-04", "end": "2023-12-29", "folds": 2, "size": "tiny", "epochs": 1}
# The S3 retrain proves the plumbing (credentials, the run folder on S3, registration from it), not
# a decision, so it trains less: 18 months and one horizon (the two-retrain test needs the longer
# conf: on 18 months a noise retrain once beat ridge and became the first champion).
S3_CONF = {**CONF, "start": "2022-07-01", "horizons": [1]}
ABSENT = {
    "GOGOOKU3_TASK_IMAGE_CPU": "gogooku3/absent-cpu:none",
    "GOGOOKU3_TASK_IMAGE_GPU": "gogooku3/absent-gpu:none",
}
TOKEN = "xoxb-retrain-e2e-token"
SCRIPTS = Path(__file__).resolve().parents[1] / "include" / "scripts"


@pytest.fixture(scope="module")
def task_image(docker_engine: None) -> None:
    """The task image (with the training extra) for the current sources."""
    built = subprocess.run(
        ["bash", str(SCRIPTS / "build_images.sh")], capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, f"build_images.sh failed:\n{built.stderr[-3000:]}"


def _gated_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    lake = open_lake(dst)
    lake.mark_good("features", "features", CI_MARKET["end"] - dt.timedelta(days=2), validation_ref="test")
    return dst


def test_two_retrains_record_register_and_decide(
    task_image, features_lake_factory, mlflow_server, airflow_env_factory, tmp_path
):
    signal = _gated_copy(features_lake_factory(), tmp_path / "signal")
    noise = _gated_copy(features_lake_factory(signal=0.0), tmp_path / "noise")
    settings = MlflowSettings(
        tracking_uri=mlflow_server.tracking_uri, experiment="retrain-e2e", model_name="retrain-e2e-atft"
    )
    client = connect(settings)
    with running_slack_capture(expected_token=TOKEN) as slack:
        env = airflow_env_factory(
            tmp_path / "airflow_home",
            slack=slack,
            slack_token=TOKEN,
            mlflow=mlflow_server,
            mlflow_experiment="retrain-e2e",
        )
        env = {**env, "GOGOOKU3_MLFLOW_MODEL": settings.model_name}
        decisions = []
        for lake, images in ((signal, {}), (noise, ABSENT)):
            proc = dags_test(
                env,
                "walk_forward_retrain",
                SATURDAY,
                conf=CONF,
                GOGOOKU3_LAKE_URI=str(lake),
                timeout_s=RETRAIN_TIMEOUT_S,
                **images,
            )
            log = proc.stdout + proc.stderr
            assert proc.returncode == 0, tail(proc)
            assert "size tiny as dag_run.conf asks" in log
            run_folder = next((lake / "models" / "atft-gat-fan" / "runs").iterdir())
            assert (run_folder / "summary.json").is_file() and (run_folder / "model" / "weights.pt").is_file()
            if images:
                assert "retrain IN-PROCESS (no Docker engine)" in log
            else:
                assert "running gogooku3/task-cpu:latest train" in log and "--lake /lake" in log
                assert "as 10001:10001" in log and "no GPU device request" in log
                weights = run_folder / "model" / "weights.pt"
                assert (weights.stat().st_uid, weights.stat().st_gid) == (
                    10001,
                    10001,
                )  # the container wrote it
            versions = client.search_model_versions(f"name = '{settings.model_name}'")
            assert len(versions) == len(decisions) + 1  # each retrain registers exactly one version
            decisions.append(max(versions, key=lambda v: int(v.version)).version)
        messages = slack.messages()

    v1, v2 = decisions
    first, second = (client.get_model_version(settings.model_name, v) for v in decisions)
    assert client.get_model_version_by_alias(settings.model_name, CHALLENGER).version == v2
    promoted_first = first.tags["promotion.promote"] == "True"
    assert second.tags["promotion.promote"] == "False", second.tags["promotion.reason"]
    champion = (
        client.get_model_version_by_alias(settings.model_name, CHAMPION).version if promoted_first else None
    )
    assert champion == (v1 if promoted_first else None)
    assert second.tags["promotion.champion_version"] == (v1 if promoted_first else "")
    # Slack: one notice per decision, naming the version and the figures.
    texts = [m["body"]["text"] for m in messages]
    assert len(texts) == 2, texts
    assert (
        f"{settings.model_name} v{v1} {'promoted to champion' if promoted_first else 'not promoted'}"
        in texts[0]
    )
    assert f"{settings.model_name} v{v2} not promoted" in texts[1]
    assert all("RankIC@1d over" in t and "ridge" in t for t in texts)
    # The model asset's events: one per retrain.
    events = [e for uri, e in asset_events(env) if uri == "gogooku3://models/atft-gat-fan"]
    assert [(e["version"], e["promoted"]) for e in events] == [(v1, promoted_first), (v2, False)]


def test_a_retrain_on_an_s3_lake_runs_in_the_container_with_the_credentials_it_receives(
    task_image, features_lake_factory, mlflow_server, airflow_env_factory, tmp_path
):
    s3 = mlflow_server.s3
    gated = _gated_copy(features_lake_factory(), tmp_path / "signal")
    client = s3.client()
    upload_tree(client, gated, s3.bucket, "retrain-lake")
    lake_uri = s3.lake_uri("retrain-lake")
    settings = MlflowSettings(
        tracking_uri=mlflow_server.tracking_uri, experiment="retrain-e2e-s3", model_name="retrain-e2e-s3"
    )
    env = airflow_env_factory(
        tmp_path / "airflow_home", mlflow=mlflow_server, mlflow_experiment=settings.experiment
    )
    proc = dags_test(
        {**env, "GOGOOKU3_MLFLOW_MODEL": settings.model_name},
        "walk_forward_retrain",
        SATURDAY,
        conf=S3_CONF,
        GOGOOKU3_LAKE_URI=lake_uri,
        timeout_s=RETRAIN_TIMEOUT_S,
        **s3.env(),
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, tail(proc)
    assert "running gogooku3/task-cpu:latest train" in log and f"--lake {lake_uri}" in log
    assert f"--out {lake_uri}/models/atft-gat-fan/runs/" in log and "as 10001:10001" in log
    assert SECRET_ACCESS_KEY not in log
    # The container's run folder is on S3, complete (summary last) and naming its own S3 paths.
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket, Prefix="retrain-lake/models/")["Contents"]
    ]
    (summary_key,) = [k for k in keys if k.endswith("/summary.json") and "/folds/" not in k]
    run_key = summary_key.removesuffix("/summary.json")
    assert f"{run_key}/model/weights.pt" in keys and f"{run_key}/folds/fold_1/done.json" in keys
    summary = json.loads(client.get_object(Bucket=s3.bucket, Key=summary_key)["Body"].read())
    assert summary["oos_predictions"] == f"s3://{s3.bucket}/{run_key}/oos_predictions.parquet"
    # Registered from that folder: the served weights are the container's.
    registry = connect(settings)
    (version,) = registry.search_model_versions(f"name = '{settings.model_name}'")
    assert version.tags["promotion.promote"] in ("True", "False")  # and the promotion decided
    served = mlflow.artifacts.download_artifacts(
        run_id=version.run_id,
        artifact_path="model_files",
        dst_path=str(tmp_path / "served"),
        tracking_uri=settings.tracking_uri,
    )
    weights = client.get_object(Bucket=s3.bucket, Key=f"{run_key}/model/weights.pt")["Body"].read()
    assert (Path(served) / "weights.pt").read_bytes() == weights
