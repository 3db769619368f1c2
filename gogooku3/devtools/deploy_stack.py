"""Drive the docker-compose deployment on this host: the deploy test, ``make deploy-up`` and
``make backfill`` use it.

    python -m gogooku3.devtools.deploy_stack up [--local] [--emulator]   # waits for every healthcheck
    python -m gogooku3.devtools.deploy_stack backfill DAG START END [--max-active N]
    python -m gogooku3.devtools.deploy_stack down                         # and its volumes

A :class:`Stack` is one compose project (``-p``) over docker-compose.airflow.yml (plus
docker-compose.local.yml where the images were built here) with its own env file: the stack's
secrets and settings. :func:`fresh_env_file` writes one with random secrets, so even a throw-away
stack passes the production secrets check. Every command runs the compose CLI the host has
(Debian's ``docker-compose`` 1.29, or ``docker compose``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gogooku3.devtools.airflow_env import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.airflow.yml"
LOCAL_FILE = REPO_ROOT / "docker-compose.local.yml"
DEFAULT_PROJECT = "gogooku3"
DEFAULT_ENV_FILE = REPO_ROOT / ".env"


class StackError(RuntimeError):
    pass


def compose_cli() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    raise StackError("no compose CLI: install Debian's docker-compose (include/scripts/dockerd.sh does)")


def fresh_env_file(path: Path, **settings: str) -> Path:
    """An env file with a random value for every secret .env.example ships (production mode passes),
    the Docker socket's group, and ``settings`` on top."""
    from cryptography.fernet import Fernet

    from gogooku3.deployment import parse_env_file, secret_names

    example = parse_env_file((REPO_ROOT / ".env.example").read_text())
    values = dict(example)
    for name in secret_names(example):
        if example[name]:
            values[name] = secrets.token_urlsafe(24)
    values["AIRFLOW_FERNET_KEY"] = Fernet.generate_key().decode()
    sock = Path("/var/run/docker.sock")
    if sock.exists():
        values["DOCKER_GID"] = str(sock.stat().st_gid)
    values.update(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


@dataclass
class Stack:
    project: str = DEFAULT_PROJECT
    env_file: Path = DEFAULT_ENV_FILE
    local: bool = False
    profiles: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def _base(self) -> list[str]:
        cmd = [*compose_cli(), "-p", self.project, "-f", str(COMPOSE_FILE)]
        if self.local:
            cmd += ["-f", str(LOCAL_FILE)]
        cmd += ["--env-file", str(self.env_file)]
        for profile in self.profiles:
            cmd += ["--profile", profile]
        return cmd

    def _env(self) -> dict[str, str]:
        # The stack's settings come from its env file only, never from the caller's environment.
        keep = ("PATH", "HOME", "DOCKER_HOST", "LANG", "TMPDIR")
        return {k: v for k, v in os.environ.items() if k in keep} | dict(self.extra_env)

    def compose(
        self, *args: str, check: bool = True, timeout: float = 900, capture: bool = True
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self._base(), *args],
            cwd=REPO_ROOT,
            env=self._env(),
            capture_output=capture,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise StackError(
                f"compose {' '.join(args)} exited {done.returncode}:\n{(done.stdout or '')[-3000:]}{(done.stderr or '')[-3000:]}"
            )
        return done

    def env_value(self, name: str) -> str:
        from gogooku3.deployment import parse_env_file

        return parse_env_file(self.env_file.read_text()).get(name, "")

    def container_ids(self) -> dict[str, list[str]]:
        """Service -> its containers' ids (every container of the project, running or not)."""
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--format",
                '{{.ID}} {{.Label "com.docker.compose.service"}}',
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        services: dict[str, list[str]] = {}
        for line in out.splitlines():
            cid, _, service = line.partition(" ")
            services.setdefault(service, []).append(cid)
        return services

    def inspect(self) -> dict[str, list[dict]]:
        """Service -> ``docker inspect`` of its containers."""
        return {
            service: json.loads(
                subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
            )
            for service, ids in self.container_ids().items()
        }

    def states(self) -> dict[str, str]:
        """Service -> ``healthy``, ``starting``, ``unhealthy``, ``exited(N)`` or ``running`` (no healthcheck)."""
        out = {}
        for service, info in self.inspect().items():
            for c in info:
                state = c["State"]
                if state.get("Health"):
                    out[service] = state["Health"]["Status"]
                elif state["Status"] == "exited":
                    out[service] = f"exited({state['ExitCode']})"
                else:
                    out[service] = state["Status"]
        return out

    def container_hostnames(self) -> dict[str, str]:
        """Service -> its container's hostname (what Airflow records as a task instance's hostname)."""
        return {service: info[0]["Config"]["Hostname"] for service, info in self.inspect().items()}

    def up(self, timeout_s: float = 600) -> dict[str, str]:
        """``up -d`` and wait until every service is healthy (the init job: exited 0). Raises
        :class:`StackError` with the failing services' last log lines otherwise."""
        self.compose("up", "-d", timeout=timeout_s)
        return self.wait_healthy(timeout_s)

    def wait_healthy(self, timeout_s: float = 600) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.states()
            bad = {
                s: v
                for s, v in states.items()
                if v == "unhealthy" or (v.startswith("exited") and v != "exited(0)")
            }
            if bad:
                raise StackError(f"services failed: {bad}\n{self.logs(*bad, tail=40)}")
            pending = {s: v for s, v in states.items() if v not in ("healthy", "exited(0)")}
            if states and not pending:
                return states
            if time.monotonic() > deadline:
                raise StackError(
                    f"not healthy within {timeout_s:.0f} s: {pending}\n{self.logs(*pending, tail=40)}"
                )
            time.sleep(3)

    def logs(self, *services: str, tail: int = 200) -> str:
        done = self.compose("logs", "--no-color", f"--tail={tail}", *services, check=False)
        return (done.stdout or "") + (done.stderr or "")

    def port(self, service: str, container_port: int) -> int:
        """The host port published for ``service``'s ``container_port``."""
        out = self.compose("port", service, str(container_port)).stdout.strip()
        return int(out.rsplit(":", 1)[1])

    def airflow(self, *args: str, service: str = "airflow-scheduler", timeout: float = 300) -> str:
        """``airflow ARGS`` inside a running component (the image's entrypoint is ``airflow``)."""
        return self.compose("exec", "-T", service, "airflow", *args, timeout=timeout).stdout

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "30", check=False, timeout=300)


AirflowCli = Callable[..., str]


class PausedDagError(StackError):
    pass


def local_airflow(home: Path) -> AirflowCli:
    """``airflow ARGS`` against ``make airflow``'s instance (its home, DB and DAG folder)."""
    from gogooku3.devtools.airflow_env import local_airflow_env

    env = local_airflow_env(home)

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done.stdout

    return run


def jst_bound(day: str) -> str:
    """A backfill bound: a plain ``YYYY-MM-DD`` is that JST day's midnight (the pipeline's dates are
    JST trading dates, and Airflow would read a bare date as UTC midnight, nine hours later, which
    drops the first day: its run's data interval starts at 00:00 JST); anything else as given."""
    try:
        parsed = dt.date.fromisoformat(day)
    except ValueError:
        return day
    return f"{parsed.isoformat()}T00:00:00+09:00" if len(day) == 10 else day


def is_paused(airflow: AirflowCli, dag_id: str) -> bool:
    out = airflow("dags", "list", "--output", "json")
    # Airflow may log a warning or two on stdout before the JSON (one line).
    listing = next((line for line in out.splitlines() if line.startswith("[")), None)
    if listing is None:
        raise StackError(f"airflow dags list printed no JSON:\n{out[-2000:]}")
    dags = {d["dag_id"]: d for d in json.loads(listing)}
    if dag_id not in dags:
        raise StackError(f"no DAG {dag_id!r} in the deployment (known: {', '.join(sorted(dags))})")
    return str(dags[dag_id]["is_paused"]).lower() == "true"


def backfill(
    airflow: AirflowCli,
    dag_id: str,
    start: str,
    end: str,
    max_active: int | None = None,
    unpause: bool = False,
) -> str:
    """``airflow backfill create`` through ``airflow`` (a deployment's :meth:`Stack.airflow` or
    :func:`local_airflow`): the DAG's own timetable decides which runs fall in [start, end], both JST
    days (:func:`jst_bound`).

    The scheduler starts no run of a paused DAG, backfills included. Unpausing also starts the DAG's
    schedule (for jquants_daily, with catchup, every trading day since its start date), so a paused
    DAG is refused unless ``unpause`` says to unpause it.
    """
    out = ""
    if is_paused(airflow, dag_id):
        if not unpause:
            raise PausedDagError(
                f"DAG {dag_id} is paused, so its backfill runs would never start. Unpausing it also "
                "starts its schedule (with catchup, every missed interval since its start date): "
                "unpause it in the UI, or pass --unpause (make backfill ... UNPAUSE=1)"
            )
        out += airflow("dags", "unpause", dag_id)
    args = [
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        jst_bound(start),
        "--to-date",
        jst_bound(end),
    ]
    if max_active:
        args += ["--max-active-runs", str(max_active)]
    return out + airflow(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gogooku3.devtools.deploy_stack")
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE)
    parser.add_argument(
        "--local", action="store_true", help="the images `make images` built (docker-compose.local.yml)"
    )
    parser.add_argument(
        "--emulator", action="store_true", help="also the J-Quants emulator (--profile emulator)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("status")
    b = sub.add_parser("backfill")
    b.add_argument("dag_id")
    b.add_argument("start")
    b.add_argument("end")
    b.add_argument("--max-active", type=int)
    b.add_argument(
        "--unpause", action="store_true", help="unpause the DAG first (it starts its schedule too)"
    )
    b.add_argument(
        "--airflow-home",
        type=Path,
        help="backfill in `make airflow`'s instance (this home) instead of the compose deployment",
    )
    args = parser.parse_args(argv)
    if args.command == "backfill" and args.airflow_home:
        try:
            print(
                backfill(
                    local_airflow(args.airflow_home),
                    args.dag_id,
                    args.start,
                    args.end,
                    args.max_active,
                    args.unpause,
                )
            )
        except StackError as exc:
            print(f"deploy_stack: error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command != "down" and not args.env_file.exists():
        print(
            f"deploy_stack: error: {args.env_file} is missing (cp .env.example .env and set its secrets)",
            file=sys.stderr,
        )
        return 2
    stack = Stack(args.project, args.env_file, args.local, ("emulator",) if args.emulator else ())
    try:
        if args.command == "up":
            for service, state in sorted(stack.up().items()):
                print(f"{service:24} {state}")
        elif args.command == "status":
            for service, state in sorted(stack.states().items()):
                print(f"{service:24} {state}")
        elif args.command == "down":
            stack.down()
        else:
            print(backfill(stack.airflow, args.dag_id, args.start, args.end, args.max_active, args.unpause))
    except StackError as exc:
        print(f"deploy_stack: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
