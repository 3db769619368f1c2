"""The feature build: raw + interim lake tables -> ``features/features/date=D/``, behind a quality gate.

Schedule: the lake's Assets. A run starts when ``jquants_daily`` publishes ``raw/daily_quotes`` or
``trades_spec_weekly`` publishes ``interim/trades_spec_daily``, and builds the dates those events
carry (or ``dag_run.conf`` ``{"start", "end", "engine"}``; see :mod:`gogooku3_airflow.tasks`).

Tasks:

1. ``plan_runtime``: ask the Docker engine whether it honours a GPU device request. GPU container
   (cuDF + RMM pool, ``Dockerfile.gpu``) when it does; otherwise the same build in the CPU image,
   logged as a warning; only where no Docker engine is reachable at all, in-process (loudly).
2. ``build_features`` (:class:`~gogooku3_airflow.operators.FeatureBuildOperator`: the task image runs
   ``gogooku3 features build`` as a non-root user; lake as a bind mount with no network, or S3 with
   credentials in the container's private environment; auto-removed), or ``build_features_in_process``.
3. ``gate_features``: the features great-expectations suite on every built partition; a failure
   alerts Slack with the failing expectations and stops the run; passing partitions become the
   latest good ones.
4. ``publish``: an event for ``gogooku3://lake/features/features``.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from gogooku3_airflow import tasks
from gogooku3_airflow.assets import FEATURES, INTERIM_TRADES_SPEC_DAILY, RAW_DAILY_QUOTES
from gogooku3_airflow.defaults import START_DATE, default_args, gpu_queue
from gogooku3_airflow.operators import FeatureBuildOperator


@dag(
    dag_id="features_daily",
    schedule=RAW_DAILY_QUOTES | INTERIM_TRADES_SPEC_DAILY,
    start_date=START_DATE,
    catchup=False,
    # Builds of overlapping ranges would rewrite the same partitions: one at a time.
    max_active_runs=1,
    default_args=default_args(),
    tags=["gogooku3", "features", "docker", "gpu"],
    doc_md=__doc__,
)
def features_daily():
    @task
    def plan_runtime(logical_date=None, dag_run=None, triggering_asset_events=None):
        return tasks.plan_feature_build(
            logical_date=logical_date, dag_run=dag_run, triggering_asset_events=triggering_asset_events
        )

    @task.branch
    def choose(plan):
        return tasks.choose_build(plan)

    build_in_container = FeatureBuildOperator(task_id="build_features", queue=gpu_queue())

    @task(queue=gpu_queue())
    def build_features_in_process(plan):
        return tasks.build_features_in_process(plan)

    @task(trigger_rule="none_failed_min_one_success")
    def gate_features(plan):
        return tasks.gate_features(plan)

    @task(outlets=[FEATURES], pool="asset_publish")
    def publish(plan, gated, outlet_events=None):
        return tasks.publish_features(plan, gated, outlet_events=outlet_events)

    plan = plan_runtime()
    gated = gate_features(plan)
    choose(plan) >> [build_in_container, build_features_in_process(plan)] >> gated
    publish(plan, gated)


features_daily()
