"""``airflow dags test features_daily`` end to end with the DockerOperator running the task image FOR
REAL on a Docker engine started by include/scripts/dockerd.sh (skipped, with the reason, only where no
engine can be started).

The lake is seeded from the synthetic market's ground truth (200 codes: fewer leave one-member sectors whose
sector z-scores are null and fail the gate, as they should; the fetch path has its own tests). The
run must write the features partitions equal to an in-process build of the same lake, gate them (the
validation and Data Docs saved, the latest-good marker advanced), record the features Asset event, and
say in its log that it ran the image on CPU because this engine has no GPU runtime.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from airflow_harness import asset_events, dags_test, make_airflow_env, tail
from polars.testing import assert_frame_equal

from gogooku3.devtools.seed_lake import seed_lake
from gogooku3.features import build_features_to_lake
from gogooku3.lake import open_lake
from gogooku3.market import MarketConfig, generate_market

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "include" / "scripts"
START, END = dt.date(2023, 1, 4), dt.date(2024, 3, 29)
FIRST, LAST = dt.date(2024, 3, 25), dt.date(2024, 3, 29)


@pytest.fixture(scope="module")
def task_image() -> None:
    started = subprocess.run(
        ["bash", str(SCRIPTS / "dockerd.sh"), "start"], capture_output=True, text=True, timeout=300
    )
    if started.returncode != 0:
        pytest.skip(f"no Docker engine could be started here: {(started.stdout + started.stderr)[-600:]}")
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


def test_feature_build_runs_in_the_container_gates_and_publishes(task_image, seeded, tmp_path) -> None:
    lake_dir = tmp_path / "lake"
    shutil.copytree(seeded, lake_dir)
    reference_dir = tmp_path / "reference"
    shutil.copytree(seeded, reference_dir)
    env = make_airflow_env(tmp_path / "airflow_home")

    conf = {"start": FIRST.isoformat(), "end": LAST.isoformat()}
    proc = dags_test(env, "features_daily", LAST, conf=conf, GOGOOKU3_LAKE_URI=str(lake_dir))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, tail(proc)
    assert "engine has no GPU runtime; running the same image on CPU" in log
    assert 'could not select device driver ""' in log
    assert "running gogooku3/task-cpu:latest features build" in log and "--lake /lake" in log

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
    assert lake.latest_good("features", "features") == LAST

    (uri, extra), *_ = [(u, e) for u, e in asset_events(env) if u == "gogooku3://lake/features/features"]
    assert (extra["start"], extra["end"], extra["days"], extra["mode"]) == (
        FIRST.isoformat(),
        LAST.isoformat(),
        5,
        "cpu",
    )
