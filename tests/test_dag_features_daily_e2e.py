"""``airflow dags test features_daily`` end to end with the DockerOperator running the task image FOR
REAL on a Docker engine started by include/scripts/dockerd.sh (skipped, with the reason, only where no
engine can be started and CI does not require one).

The lake is seeded from the synthetic market's ground truth (200 codes: fewer leave one-member sectors whose
sector z-scores are null and fail the gate, as they should; the fetch path has its own tests). The
run must write the features partitions equal to an in-process build of the same lake, gate them (the
validation and Data Docs saved, the latest-good marker advanced), record the features Asset event, and
say in its log that it ran the image on CPU because this engine has no GPU runtime. The container runs
as the image's non-root user, never as the (root) worker. A lake too small for its sectors fails the
gate: the run fails, publishes nothing, keeps the latest-good marker and alerts Slack once. (The build
on an S3 lake, in the container with the credentials it receives, runs in the compose deployment:
tests/test_deploy.py.)
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from airflow_harness import asset_events, dags_test, tail, task_states
from polars.testing import assert_frame_equal

from gogooku3.devtools.seed_lake import seed_lake
from gogooku3.devtools.slack_capture import running_slack_capture
from gogooku3.features import build_features_to_lake
from gogooku3.lake import open_lake
from gogooku3.market import MarketConfig, generate_market

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "include" / "scripts"
START, END = dt.date(2023, 1, 4), dt.date(2024, 3, 29)
FIRST, LAST = dt.date(2024, 3, 25), dt.date(2024, 3, 29)


@pytest.fixture(scope="module")
def task_image(docker_engine: None) -> None:
    """The task image for the current sources, on the engine the docker_engine fixture started (it skips
    without one, or fails under GOGOOKU3_REQUIRE_DOCKER=1: tests/docker_env.py)."""
    built = subprocess.run(
        ["bash", str(SCRIPTS / "build_images.sh")], capture_output=True, text=True, timeout=1200
    )
    assert built.returncode == 0, f"build_images.sh failed:\n{built.stderr[-3000:]}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seeded")
    market = generate_market(MarketConfig(seed=11, n_codes=200, start=START, end=END))
    seed_lake(open_lake(str(root / "lake")), market, START, END)
    return root / "lake"


@pytest.fixture
def copies(seeded: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the seeded lake: one the DAG builds in, one for the in-process reference build."""
    lake_dir, reference_dir = tmp_path / "lake", tmp_path / "reference"
    shutil.copytree(seeded, lake_dir)
    shutil.copytree(seeded, reference_dir)
    return lake_dir, reference_dir


def test_feature_build_runs_in_the_container_gates_and_publishes(
    task_image, copies, tmp_path, airflow_env_factory
) -> None:
    lake_dir, reference_dir = copies
    env = airflow_env_factory(tmp_path / "airflow_home")

    conf = {"start": FIRST.isoformat(), "end": LAST.isoformat()}
    proc = dags_test(env, "features_daily", LAST, conf=conf, GOGOOKU3_LAKE_URI=str(lake_dir))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, tail(proc)
    assert "engine has no GPU runtime; running the same image on CPU" in log
    assert 'could not select device driver ""' in log
    assert "running gogooku3/task-cpu:latest features build" in log and "--lake /lake" in log
    assert "as 10001:10001" in log

    lake, reference = open_lake(str(lake_dir)), open_lake(str(reference_dir))
    expected = build_features_to_lake(reference, FIRST, LAST)
    assert [m.date for m in expected] == [
        d for d in lake.list_partitions("features", "features") if d >= FIRST
    ]
    for m in expected:
        assert_frame_equal(
            lake.read_partition("features", "features", m.date),
            reference.read_partition("features", "features", m.date),
        )
        assert lake.read_manifest("features", "features", m.date).checksum == m.checksum
        assert "gx/validation.json" in lake.list_artifacts("features", "features", m.date)
        # written by the container's non-root user, not by the (root) worker that started it
        data = lake_dir / "features" / "features" / f"date={m.date}" / "part-00000.parquet"
        assert (data.stat().st_uid, data.stat().st_gid) == (10001, 10001)
    assert lake.latest_good("features", "features") == LAST

    (uri, extra), *_ = [(u, e) for u, e in asset_events(env) if u == "gogooku3://lake/features/features"]
    assert (extra["start"], extra["end"], extra["days"], extra["mode"]) == (
        FIRST.isoformat(),
        LAST.isoformat(),
        5,
        "cpu",
    )


def test_a_failing_gate_fails_the_run_publishes_nothing_and_alerts_once(
    task_image, tmp_path, airflow_env_factory
) -> None:
    # 30 codes leave most of the 33 sectors with one member: their sector z-scores are null, so the
    # features suite's coverage expectations fail on every day.
    lake_dir = tmp_path / "lake"
    market = generate_market(MarketConfig(seed=12, n_codes=30, start=START, end=END))
    lake = open_lake(str(lake_dir))
    seed_lake(lake, market, START, END)
    earlier = dt.date(2024, 3, 1)
    (good,) = build_features_to_lake(lake, earlier, earlier)
    marker = lake.mark_good("features", "features", earlier, validation_ref="an earlier passing run")
    token = "xoxb-gate-e2e-token"
    with running_slack_capture(expected_token=token) as slack:
        env = airflow_env_factory(tmp_path / "airflow_home", slack=slack, slack_token=token)
        conf = {"start": FIRST.isoformat(), "end": LAST.isoformat()}
        proc = dags_test(env, "features_daily", LAST, conf=conf, GOGOOKU3_LAKE_URI=str(lake_dir))
        messages = slack.messages()
    assert proc.returncode != 0, "a failed gate must fail the run"
    states = task_states(env, "features_daily")
    assert (states["build_features"], states["gate_features"]) == ("success", "failed"), states
    assert states["publish"] == "upstream_failed", states
    assert not [uri for uri, _ in asset_events(env) if uri == "gogooku3://lake/features/features"]
    assert lake.latest_good_marker("features", "features") == marker
    assert marker.checksum == good.checksum
    assert len(messages) == 1, messages
    text = str(messages[0]["body"])
    assert "gate_features" in text and "QualityGateFailed" in text
    assert "failed on 5 day(s)" in text and "expect_column_values_to_not_be_null" in text


def test_without_a_docker_engine_the_build_runs_in_process_and_says_so(
    copies, tmp_path, airflow_env_factory
) -> None:
    lake_dir, reference_dir = copies
    env = airflow_env_factory(tmp_path / "airflow_home")
    conf = {"start": LAST.isoformat(), "end": LAST.isoformat()}
    proc = dags_test(
        env,
        "features_daily",
        LAST,
        conf=conf,
        GOGOOKU3_LAKE_URI=str(lake_dir),
        DOCKER_HOST=f"unix://{tmp_path / 'no-engine.sock'}",
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, tail(proc)
    assert "NO DOCKER ENGINE; running the feature build IN-PROCESS" in log and "no-engine.sock" in log
    states = task_states(env, "features_daily")
    assert (states["build_features"], states["build_features_in_process"]) == ("skipped", "success"), states
    (expected,) = build_features_to_lake(open_lake(str(reference_dir)), LAST, LAST)
    lake = open_lake(str(lake_dir))
    assert lake.read_manifest("features", "features", LAST).checksum == expected.checksum
    assert lake.latest_good("features", "features") == LAST
    (extra,) = [e for u, e in asset_events(env) if u == "gogooku3://lake/features/features"]
    assert (extra["mode"], extra["engine"], extra["days"]) == ("in-process", "cpu", 1)
