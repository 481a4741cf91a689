"""Airflow DAG: euid-map's nightly refresh, installed from PyPI in the workers' environment.

    pip install euid-map        # puts `euid-map` and `euid-map-nightly` on the PATH

One task runs the nightly script (README, "Running it as a nightly job"): tonight's dataset
goes to /data/euid/YYYY-MM-DD from the newest finished night, always with --resume, so an
Airflow retry continues an interrupted run and a night that already finished is a no-op.
The exit code is the contract: 0 done, 2 some identities failed or stayed stale (the dataset
is complete and marks them; the task fails so someone looks, and the next night retries
them), 1 a run-level error (no _SUCCESS), 143 SIGTERM (the retry resumes). A sensor on
_SUCCESS gates the loading task, for DAGs where the load lives elsewhere.

On Kubernetes, a KubernetesPodOperator running the image built from the repository's
Dockerfile with the same command (`euid-map-nightly ...`) does the same.
"""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.sensors.filesystem import FileSensor

# Tonight's folder: the end of the daily data interval (the run that starts on 2 December
# covers 1 December; its folder is 2026-12-02, as cron's would be).
DAY = "{{ data_interval_end | ds }}"

with DAG(
    dag_id="euid_map_nightly",
    schedule="0 3 * * *",
    start_date=datetime(2026, 12, 1),
    catchup=False,
    max_active_runs=1,  # the output lock refuses overlapping runs anyway
    default_args={"retries": 2, "retry_delay": timedelta(minutes=15)},
) as dag:
    refresh = BashOperator(
        task_id="refresh",
        bash_command=(
            "euid-map-nightly /data/euid /exports/customers.csv customer_id "
            "--profile prod --log-format json"
        ),
        env={
            "EUID_CREDENTIALS_FILE": "/etc/euid-map/credentials.toml",
            "EUID_MAP_DAY": DAY,
        },
        append_env=True,
        execution_timeout=timedelta(hours=4),
    )
    finished = FileSensor(
        task_id="success_marker",
        filepath=f"/data/euid/{DAY}/_SUCCESS",
        poke_interval=60,
        timeout=15 * 60,
        mode="reschedule",
    )
    load = BashOperator(
        task_id="load",
        bash_command=f"echo load /data/euid/{DAY} into the warehouse",
    )
    refresh >> finished >> load
