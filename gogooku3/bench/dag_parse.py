"""Benchmark: how long each DAG file in dags/ takes to parse, as the DAG processor does it (``make bench``).

Why it matters: the DAG processor re-imports every DAG file every ``min_file_process_interval`` (30 s by
default) and gives up on a file after ``dagbag_import_timeout``; a DAG file that pulls in Polars, boto3
or great_expectations at parse time costs that on every pass, for every file. The target is at most
:data:`TARGET_S` per file beyond Airflow itself. It is a speed goal, so it is measured here:
tests/test_dag_integrity.py keeps only a generous regression bound, since a 1 s timing assert
flakes on a loaded CI runner.

Method: every sample is a fresh Python subprocess with a throwaway ``AIRFLOW_HOME`` (SQLite, no example
DAGs, the project's plugins folder, no bytecode written into dags/), as in the integrity test. It first
imports Airflow, untimed, because the processor has it loaded already, then times:

* ``import s``: ``exec_module`` of the DAG file, i.e. the file and everything it imports on top of Airflow
  (what the target is about);
* ``DagBag s`` (a separate fresh subprocess, so the import above is not cached): a ``BundleDagBag`` of
  that one file, i.e. the import plus Airflow's own checks of the DAGs it defines.

Reported per file: median, min and max over the samples (full: 5, quick: 1), the target and whether
the median meets it, the heavy modules the import pulled in (should be none), and how long importing
Airflow itself took in the same processes (context, not counted against the target).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

#: Target for one DAG file's import, beyond Airflow itself (seconds).
TARGET_S = 1.0
#: Modules a DAG file must not import at parse time (the same list as tests/test_dag_integrity.py).
HEAVY = ("polars", "pandas", "torch", "aiohttp", "boto3", "botocore", "great_expectations", "cudf", "pyarrow")

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"

_IMPORT = """
import importlib.util, json, sys, time
t0 = time.perf_counter()
import airflow.sdk
import airflow.timetables.base
airflow_s = time.perf_counter() - t0
sys.path.insert(0, {dags!r})
spec = importlib.util.spec_from_file_location("dag_under_test", {file!r})
module = importlib.util.module_from_spec(spec)
t0 = time.perf_counter()
spec.loader.exec_module(module)
import_s = time.perf_counter() - t0
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"airflow_s": airflow_s, "import_s": import_s, "heavy": heavy}}))
"""

_DAGBAG = """
import json, time
from pathlib import Path
import airflow.sdk
from airflow.dag_processing.dagbag import BundleDagBag
t0 = time.perf_counter()
bag = BundleDagBag(dag_folder={file!r}, bundle_path=Path({dags!r}))
bag_s = time.perf_counter() - t0
print(json.dumps({{"bag_s": bag_s, "dags": len(bag.dags), "errors": len(bag.import_errors)}}))
"""


def dag_files() -> list[Path]:
    if not DAGS.is_dir():
        raise FileNotFoundError(f"dag_parse needs a source checkout: no dags/ folder at {DAGS}")
    return sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


def _probe(code: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=str(DAGS),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"DAG parse probe failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _airflow_env(home: Path) -> dict[str, str]:
    from gogooku3.devtools.airflow_env import isolated, local_airflow_env

    return isolated(os.environ) | local_airflow_env(home, ROOT) | {"PYTHONDONTWRITEBYTECODE": "1"}


def run(quick: bool) -> list[dict]:
    samples = 1 if quick else 5
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gogooku3-bench-airflow-") as home:
        env = _airflow_env(Path(home))
        for path in dag_files():
            imports = [
                _probe(_IMPORT.format(dags=str(DAGS), file=str(path), heavy=HEAVY), env)
                for _ in range(samples)
            ]
            bags = [_probe(_DAGBAG.format(dags=str(DAGS), file=str(path)), env) for _ in range(samples)]
            import_s = [s["import_s"] for s in imports]
            bag_s = [s["bag_s"] for s in bags]
            heavy = sorted({m for s in imports for m in s["heavy"]})
            median = statistics.median(import_s)
            rows.append(
                {
                    "dag file": path.name,
                    "samples": samples,
                    "import s (median)": round(median, 3),
                    "import s (min)": round(min(import_s), 3),
                    "import s (max)": round(max(import_s), 3),
                    "target s": TARGET_S,
                    "meets target": median <= TARGET_S,
                    "DagBag s (median)": round(statistics.median(bag_s), 3),
                    "DAGs / import errors": f"{bags[0]['dags']} / {bags[0]['errors']}",
                    "heavy modules": ", ".join(heavy) or "none",
                    "airflow import s (not counted)": round(
                        statistics.median(s["airflow_s"] for s in imports), 3
                    ),
                }
            )
    return rows
