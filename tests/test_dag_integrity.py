"""DAG integrity: every file in dags/ parses, fast, without heavy imports, and follows the conventions.

Each check runs Airflow in a fresh subprocess (a throwaway AIRFLOW_HOME, the project's plugins
folder), as the DAG processor would, so the test process's own imports cannot hide a problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gogooku3.devtools import airflow_env as local_env
from gogooku3.devtools.airflow_env import isolated, local_airflow_env
from gogooku3.quality.suites import SUITE_NAMES

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
POOLS_FILE = ROOT / local_env.POOLS_FILE
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))

#: Modules a DAG file must not import at parse time (the DAG processor parses every file often).
HEAVY = ("polars", "pandas", "torch", "aiohttp", "boto3", "botocore", "great_expectations", "cudf", "pyarrow")
#: Regression bound on one DAG file's import, beyond Airflow itself (which the processor has loaded).
#: The speed target is 1.0 s, measured by ``python -m gogooku3.bench --only dag_parse``
#: (gogooku3/bench/dag_parse.py); asserting that here flaked (0.7 s measured on a loaded 2-core runner).
#: 5 s still catches what matters at parse time, e.g. Polars, pandas or great_expectations imported
#: at module level (seconds each), which the heavy-module check names as well.
IMPORT_REGRESSION_BOUND_S = 5.0


# As docker-compose.airflow.yml may set it (GOGOOKU3_RETRY_DELAY_S); the DAGs' default is 120 s.
RETRY_DELAY_S = 7.0


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The one local Airflow environment (no DB needed: nothing here runs a DAG)."""
    home = tmp_path_factory.mktemp("airflow_home")
    return isolated(os.environ) | local_airflow_env(home) | {"PYTHONDONTWRITEBYTECODE": "1"}


def _run_json(code: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=str(DAGS),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_there_are_dag_files() -> None:
    assert [p.name for p in DAG_FILES], "dags/ has no DAG files"
    assert (DAGS / ".airflowignore").read_text().count("gogooku3_airflow/") == 1


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_without_heavy_modules(dag_file: Path, airflow_env: dict[str, str]) -> None:
    # Airflow itself is imported first (the DAG processor already has it); what is timed is the
    # DAG file and everything it pulls in on top.
    out = _run_json(
        f"""
        import importlib.util, json, sys, time
        sys.path.insert(0, {str(DAGS)!r})
        import airflow.sdk
        import airflow.timetables.base
        spec = importlib.util.spec_from_file_location("dag_under_test", {str(dag_file)!r})
        module = importlib.util.module_from_spec(spec)
        t0 = time.perf_counter()
        spec.loader.exec_module(module)
        elapsed = time.perf_counter() - t0
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        print(json.dumps({{"elapsed": elapsed, "heavy": heavy}}))
        """,
        airflow_env,
    )
    assert out["heavy"] == [], f"{dag_file.name} imports heavy modules at parse time: {out['heavy']}"
    assert out["elapsed"] < IMPORT_REGRESSION_BOUND_S, (
        f"{dag_file.name} took {out['elapsed']:.2f}s to import (target 1.0 s: see the dag_parse benchmark)"
    )


@pytest.fixture(scope="module")
def dagbag(airflow_env: dict[str, str]) -> dict:
    """What the DagBag sees: import errors and, per DAG, the attributes the conventions need."""
    return _run_json(
        f"""
        import json
        from pathlib import Path
        from airflow.dag_processing.dagbag import BundleDagBag
        from airflow.plugins_manager import get_timetables_plugins
        from airflow.serialization.encoders import encode_timetable
        from airflow.serialization.serialized_objects import DagSerialization

        pools = set(json.loads(Path({str(POOLS_FILE)!r}).read_text())) | {{"default_pool"}}
        bag = BundleDagBag(dag_folder={str(DAGS)!r}, bundle_path=Path({str(DAGS)!r}), known_pools=pools)
        dags = {{}}
        for dag_id, dag in bag.dags.items():
            tasks = {{}}
            for t in dag.tasks:
                tasks[t.task_id] = {{
                    "owner": t.owner,
                    "retries": t.retries,
                    "callbacks": len(t.on_failure_callback or []) if isinstance(t.on_failure_callback, list)
                                 else int(t.on_failure_callback is not None),
                    "backoff": float(t.retry_exponential_backoff or 0),
                    "retry_delay_s": t.retry_delay.total_seconds(),
                    "pool": t.pool,
                    "queue": t.queue,
                    "outlets": len(t.outlets or []),
                    "upstream": sorted(t.upstream_task_ids),
                }}
            tt = dag.timetable
            DagSerialization.serialize_dag(dag)  # raises if the timetable is not registered
            dags[dag_id] = {{
                "fileloc": dag.fileloc,
                "tags": sorted(dag.tags or []),
                "timezone": str(getattr(dag.timezone, "name", dag.timezone)),
                # As the scheduler will see it (raises if a custom timetable is not registered).
                "timetable": encode_timetable(tt)["__type"],
                "timetable_tz": str(encode_timetable(tt)["__var"].get("timezone", "")),
                "catchup": dag.catchup,
                "max_active_runs": dag.max_active_runs,
                "tasks": tasks,
            }}
        print(json.dumps({{
            "import_errors": {{k: v[-2000:] for k, v in bag.import_errors.items()}},
            "dags": dags,
            "registered_timetables": sorted(get_timetables_plugins()),
            "warnings": sorted(w.message for w in bag.dag_warnings),
        }}))
        """,
        # as the compose deployment parses them: the GPU-bound tasks on their own queue, the first
        # retry's delay from its environment
        airflow_env | {"GOGOOKU3_GPU_QUEUE": "gpu", "GOGOOKU3_RETRY_DELAY_S": str(RETRY_DELAY_S)},
    )


def test_dagbag_has_no_import_errors(dagbag: dict) -> None:
    assert dagbag["import_errors"] == {}
    assert dagbag["warnings"] == [], "a DAG uses a pool missing from include/airflow/pools.json"
    loaded_files = {Path(d["fileloc"]).name for d in dagbag["dags"].values()}
    assert loaded_files == {p.name for p in DAG_FILES}, "a DAG file defines no DAG"
    assert "jquants_daily" in dagbag["dags"]


DAG_IDS = ("features_daily", "jquants_daily", "trades_spec_weekly", "walk_forward_retrain")


def test_the_dag_folder_holds_exactly_the_known_dags(dagbag: dict) -> None:
    assert sorted(dagbag["dags"]) == sorted(DAG_IDS), "add a new DAG to DAG_IDS (and give it a shape test)"


@pytest.mark.parametrize("dag_id", DAG_IDS, ids=DAG_IDS)
def test_every_dag_follows_the_conventions(dagbag: dict, dag_id: str) -> None:
    d = dagbag["dags"][dag_id]
    assert d["tags"], f"{dag_id} has no tags"
    # JST schedule: the DAG's timezone (from its start_date) and its timetable are JST.
    assert d["timezone"] == "Asia/Tokyo", f"{dag_id} is scheduled in {d['timezone']}, not JST"
    # An asset-scheduled DAG has no clock of its own: it runs when a JST-scheduled DAG publishes.
    jst_timetable = (
        d["timetable"].endswith("JpxTradingDayTimetable")
        or d["timetable_tz"] == "Asia/Tokyo"
        or d["timetable"] == "airflow.timetables.simple.AssetTriggeredTimetable"
    )
    assert jst_timetable, f"{dag_id}: timetable {d['timetable']} is not a JST schedule"
    for task_id, t in d["tasks"].items():
        where = f"{dag_id}.{task_id}"
        assert t["owner"] and t["owner"] != "airflow", f"{where} has no owner"
        assert t["retries"] >= 1, f"{where} has no retries"
        assert t["backoff"] > 0, f"{where} retries without exponential backoff"
        assert t["retry_delay_s"] == RETRY_DELAY_S, f"{where} ignores GOGOOKU3_RETRY_DELAY_S"
        if t["outlets"]:  # asset events one at a time across runs (include/airflow/pools.json)
            assert t["pool"] == "asset_publish", f"{where} publishes asset events outside asset_publish"
        assert t["callbacks"] >= 1, f"{where} has no on_failure_callback"


#: The tasks that want the GPU host: the feature build and the training, in a container or in-process.
GPU_TASKS = {
    "features_daily": {"build_features", "build_features_in_process"},
    "walk_forward_retrain": {"train", "train_in_process"},
}


def test_gpu_bound_tasks_go_to_the_configured_queue_and_the_rest_to_the_default(dagbag: dict) -> None:
    for dag_id, d in dagbag["dags"].items():
        on_gpu = {task_id for task_id, t in d["tasks"].items() if t["queue"] == "gpu"}
        assert on_gpu == GPU_TASKS.get(dag_id, set()), dag_id
        others = {t["queue"] for task_id, t in d["tasks"].items() if task_id not in on_gpu}
        assert others <= {"default"}, (dag_id, others)


def test_jquants_daily_shape(dagbag: dict) -> None:
    d = dagbag["dags"]["jquants_daily"]
    assert d["timetable"] == "gogooku3_airflow.timetables.JpxTradingDayTimetable"
    assert d["timetable"] in dagbag["registered_timetables"], "timetable not registered by the plugin"
    assert d["catchup"] is True
    assert 1 <= d["max_active_runs"] <= 8
    fetched = (
        "trading_calendar",
        "listed_info",
        "daily_quotes",
        "statements",
        "topix",
        "indices",
        "short_selling",
        "weekly_margin_interest",
        "earnings_calendar",
        "dividends",
        "futures",
        "index_option",
        "daily_margin_interest",
        "short_selling_positions",
    )
    # every dataset with a raw suite is gated between its fetch and the publish
    gated = (
        "daily_quotes",
        "indices",
        "short_selling",
        "weekly_margin_interest",
        "earnings_calendar",
        "dividends",
        "futures",
        "index_option",
        "daily_margin_interest",
        "short_selling_positions",
    )
    assert set(d["tasks"]) == {*fetched, *(f"gate_{name}" for name in gated), "publish"}
    for api_task in fetched:
        assert d["tasks"][api_task]["pool"] == "jquants_api"
    up = {task_id: t["upstream"] for task_id, t in d["tasks"].items()}
    assert up["trading_calendar"] == []  # the exchange decides first whether the day is a trading day
    assert up["listed_info"] == ["trading_calendar"]
    assert all(up[name] == ["listed_info"] for name in fetched[2:])
    assert all(up[f"gate_{name}"] == [name] for name in gated)
    # the calendar and listed_info reach publish through the others
    assert up["publish"] == sorted([*fetched[2:], *(f"gate_{name}" for name in gated)])
    assert {n for n in fetched if n in SUITE_NAMES} == set(gated)


def test_features_daily_shape(dagbag: dict) -> None:
    d = dagbag["dags"]["features_daily"]
    assert d["timetable"] == "airflow.timetables.simple.AssetTriggeredTimetable"
    up = {task_id: t["upstream"] for task_id, t in d["tasks"].items()}
    assert up["plan_runtime"] == []
    assert up["choose"] == ["plan_runtime"]
    assert up["build_features"] == ["choose"]
    assert up["build_features_in_process"] == ["choose", "plan_runtime"]
    assert up["gate_features"] == ["build_features", "build_features_in_process", "plan_runtime"]
    assert up["publish"] == ["gate_features", "plan_runtime"]


def test_trades_spec_weekly_shape(dagbag: dict) -> None:
    d = dagbag["dags"]["trades_spec_weekly"]
    assert d["timetable"] == "gogooku3_airflow.timetables.JpxPublicationDayTimetable"
    assert d["timetable"] in dagbag["registered_timetables"]
    assert d["timetable_tz"] == "Asia/Tokyo"
    assert d["catchup"] is True
    assert d["tasks"]["fetch_trades_spec"]["pool"] == "jquants_api"
    assert d["tasks"]["expand"]["upstream"] == ["fetch_trades_spec"]
    assert d["tasks"]["publish"]["upstream"] == ["expand", "gate"]


def test_walk_forward_retrain_shape(dagbag: dict) -> None:
    d = dagbag["dags"]["walk_forward_retrain"]
    assert d["timetable"] == "gogooku3_airflow.timetables.JstWeeklyTimetable"
    assert d["timetable"] in dagbag["registered_timetables"]
    assert d["timetable_tz"] == "Asia/Tokyo"
    assert d["catchup"] is False and d["max_active_runs"] == 1
    assert d["tasks"]["promote"]["pool"] == "model_promotion"
    up = {task_id: t["upstream"] for task_id, t in d["tasks"].items()}
    assert up["plan_runtime"] == []
    assert up["choose"] == ["plan_runtime"]
    assert up["train"] == ["choose"]
    assert up["train_in_process"] == ["choose", "plan_runtime"]
    assert up["register"] == ["plan_runtime", "train", "train_in_process"]
    assert up["promote"] == ["register"]
    assert up["publish"] == ["promote", "register"]
