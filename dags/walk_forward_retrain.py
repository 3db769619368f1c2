"""Weekly walk-forward retraining of ATFT-GAT-FAN, recorded in MLflow, with champion/challenger.

Schedule: Saturday 06:00 JST (:class:`~gogooku3_airflow.timetables.JstWeeklyTimetable`),
``catchup=False``; or on demand with ``dag_run.conf`` ``{"start", "end", "folds", "size",
"horizons", "epochs", "seed"}`` (a bad key or value fails at once, naming it).

Tasks:

1. ``plan_runtime``: the range (the latest good features and the ~3 years before them, or the conf's;
   features older than the previous trading day fail the run saying how stale) and the runtime: GPU
   container when the engine honours a GPU device request; otherwise the same image on CPU with the
   ``tiny`` size unless the conf names one (a warning with the engine's answer); in-process only
   where no Docker engine answers at all.
2. ``train`` (:class:`~gogooku3_airflow.operators.RetrainOperator`: the task image runs ``gogooku3
   train`` as a non-root user into ``models/atft-gat-fan/runs/<run id>/`` of the lake; a retry
   resumes at the first unfinished fold) or ``train_in_process``.
3. ``register``: a parent MLflow run with a nested run per fold (params, per-epoch and per-fold
   metrics, artifacts), the network logged with ``mlflow.pytorch`` and registered as
   ``gogooku3-atft-gat-fan``, the new version aliased ``challenger``.
4. ``promote`` (pool ``model_promotion``, one slot: never two at once): the champion loaded from the
   registry and scored with the challenger on the challenger's last test folds; ``champion`` moves
   only if the challenger beats it by the margin and is not below ridge. The decision and the figures
   go into the version's tags and to Slack as a notice.
5. ``publish``: an event for ``gogooku3://models/atft-gat-fan``.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from gogooku3_airflow import PROMOTION_POOL, tasks
from gogooku3_airflow.assets import MODEL_ATFT_GAT_FAN
from gogooku3_airflow.defaults import START_DATE, default_args, gpu_queue
from gogooku3_airflow.operators import RetrainOperator
from gogooku3_airflow.timetables import JstWeeklyTimetable


@dag(
    dag_id="walk_forward_retrain",
    schedule=JstWeeklyTimetable(),
    start_date=START_DATE,
    catchup=False,
    # Two retrains at once would race for the registry's aliases and the GPU.
    max_active_runs=1,
    default_args=default_args(),
    tags=["gogooku3", "training", "mlflow", "docker", "gpu"],
    doc_md=__doc__,
)
def walk_forward_retrain():
    @task
    def plan_runtime(logical_date=None, dag_run=None):
        return tasks.plan_retrain(logical_date=logical_date, dag_run=dag_run)

    @task.branch
    def choose(plan):
        return tasks.choose_training(plan)

    train_in_container = RetrainOperator(task_id="train", queue=gpu_queue())

    @task(queue=gpu_queue())
    def train_in_process(plan):
        return tasks.train_in_process(plan)

    @task(trigger_rule="none_failed_min_one_success")
    def register(plan, dag_run=None):
        return tasks.register_model(plan, dag_run=dag_run)

    @task(pool=PROMOTION_POOL)
    def promote(registered):
        return tasks.promote_model(registered)

    @task(outlets=[MODEL_ATFT_GAT_FAN], pool="asset_publish")
    def publish(promoted, registered, outlet_events=None):
        return tasks.publish_model(promoted, registered, outlet_events=outlet_events)

    plan = plan_runtime()
    registered = register(plan)
    choose(plan) >> [train_in_container, train_in_process(plan)] >> registered
    publish(promote(registered), registered)


walk_forward_retrain()
