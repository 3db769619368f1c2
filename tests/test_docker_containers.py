"""gogooku3.containers against a fake Docker engine API on 127.0.0.1 (the real engine is covered by
test_docker_image.py): what the GPU probe asks the engine for, that it cleans up after a refusal, and how
plan_task_runtime turns the answers into a mode with a reason."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gogooku3 import containers

pytest.importorskip("docker")

REFUSAL = 'could not select device driver "" with capabilities: [[gpu]]'


@dataclass
class FakeEngine:
    images: set[str]
    gpu: bool
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    base_url: str = ""

    def paths(self, method: str) -> list[str]:
        return [p for m, p, _ in self.requests if m == method]


def _handler(engine: FakeEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _reply(self, status: int, body: object = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            path = re.sub(r"^/v[\d.]+", "", self.path.split("?")[0])
            engine.requests.append((method, path, body))
            if path == "/_ping":
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")
            elif path == "/version":
                self._reply(200, {"ApiVersion": "1.41", "Version": "fake-20.10"})
            elif path == "/info":
                self._reply(200, {"Runtimes": {"runc": {}, **({"nvidia": {}} if engine.gpu else {})}})
            elif m := re.fullmatch(r"/images/(.+)/json", path):
                if m.group(1) in engine.images:
                    self._reply(200, {"Id": "sha256:" + "0" * 64, "RepoTags": [m.group(1)]})
                else:
                    self._reply(404, {"message": f"No such image: {m.group(1)}"})
            elif path == "/containers/create":
                self._reply(201, {"Id": "c0ffee", "Warnings": []})
            elif path == "/containers/c0ffee/json":
                self._reply(200, {"Id": "c0ffee", "Name": "/probe", "Config": {"Labels": {}}, "State": {}})
            elif path == "/containers/c0ffee/start":
                if engine.gpu:
                    self._reply(204)
                else:
                    self._reply(500, {"message": REFUSAL})
            elif path == "/containers/c0ffee/wait":
                self._reply(200, {"StatusCode": 0})
            elif path == "/containers/c0ffee" and method == "DELETE":
                self._reply(204)
            else:
                self._reply(404, {"message": f"fake engine: no route {method} {path}"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


@pytest.fixture
def engine_factory() -> Iterator:
    servers: list[ThreadingHTTPServer] = []

    def start(images: set[str], gpu: bool) -> FakeEngine:
        engine = FakeEngine(images=images, gpu=gpu)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(engine))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        engine.base_url = f"tcp://127.0.0.1:{server.server_address[1]}"
        return engine

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_availability_is_falsy_when_not_ok_and_unpacks() -> None:
    no = containers.Availability(False, "because")
    assert not no and list(no) == [False, "because"]
    ok, reason = containers.Availability(True, "fine")
    assert ok is True and reason == "fine"


def test_unreachable_engine_names_where_it_looked(tmp_path) -> None:
    sock = tmp_path / "absent.sock"
    result = containers.docker_reachable(f"unix://{sock}", timeout_s=2)
    assert not result
    assert str(sock) in result.reason
    plan = containers.plan_task_runtime(base_url=f"unix://{sock}")
    assert plan.mode == "in-process" and plan.image is None
    assert "in-process" in plan.reason and str(sock) in plan.reason


def test_gpu_refusal_is_reported_with_the_engines_message_and_cleaned_up(engine_factory) -> None:
    engine = engine_factory({"task:cpu"}, gpu=False)
    client = containers.docker_client(engine.base_url)
    try:
        result = containers.gpu_runtime_available(client, probe_image="task:cpu")
    finally:
        client.close()
    assert not result and REFUSAL in result.reason and "runc" in result.reason
    (create,) = [body for m, p, body in engine.requests if p == "/containers/create"]
    assert create["HostConfig"]["DeviceRequests"] == [
        {"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert create["NetworkDisabled"] is True and create["Entrypoint"] == ["true"]
    assert create["Labels"] == {containers.PROBE_LABEL: "gpu"}
    assert "/containers/c0ffee" in engine.paths("DELETE")  # the refused container is not left behind


def test_gpu_engine_is_detected_and_the_probe_removed(engine_factory) -> None:
    engine = engine_factory({"task:gpu"}, gpu=True)
    client = containers.docker_client(engine.base_url)
    try:
        result = containers.gpu_runtime_available(client, probe_image="task:gpu")
    finally:
        client.close()
    assert result and "nvidia" in result.reason
    assert "/containers/c0ffee/wait" in engine.paths("POST")
    assert "/containers/c0ffee" in engine.paths("DELETE")


def test_missing_probe_image_is_not_a_gpu_verdict(engine_factory) -> None:
    engine = engine_factory(set(), gpu=True)
    client = containers.docker_client(engine.base_url)
    try:
        result = containers.gpu_runtime_available(client, probe_image="absent:1")
    finally:
        client.close()
    assert not result and "absent:1" in result.reason and "not present" in result.reason
    assert engine.paths("POST") == []  # nothing was started


@pytest.mark.parametrize(
    ("images", "gpu", "mode", "image", "says"),
    [
        ({"cpu:1", "gpu:1"}, True, "gpu", "gpu:1", "GPU device request"),
        ({"cpu:1", "gpu:1"}, False, "cpu", "cpu:1", REFUSAL),
        ({"cpu:1"}, True, "cpu", "cpu:1", "gpu:1 is not present"),
        ({"cpu:1"}, False, "cpu", "cpu:1", REFUSAL),
        ({"gpu:1"}, False, "in-process", None, "cpu:1 is not present"),
        (set(), True, "in-process", None, "build_images.sh"),
    ],
)
def test_plan_task_runtime(engine_factory, images, gpu, mode, image, says) -> None:
    engine = engine_factory(images, gpu=gpu)
    plan = containers.plan_task_runtime(engine.base_url, cpu_image="cpu:1", gpu_image="gpu:1")
    assert (plan.mode, plan.image) == (mode, image)
    assert says in plan.reason
    assert plan.use_gpu == (mode == "gpu")


def test_plan_without_gpu_wish_does_not_probe(engine_factory) -> None:
    engine = engine_factory({"cpu:1", "gpu:1"}, gpu=True)
    plan = containers.plan_task_runtime(engine.base_url, cpu_image="cpu:1", gpu_image="gpu:1", want_gpu=False)
    assert (plan.mode, plan.image) == ("cpu", "cpu:1")
    assert "/containers/create" not in engine.paths("POST")


def test_task_images_from_environment() -> None:
    env = {containers.CPU_IMAGE_ENV: "reg/cpu:9", containers.GPU_IMAGE_ENV: ""}
    assert containers.task_images(env) == ("reg/cpu:9", containers.DEFAULT_GPU_IMAGE)
    assert containers.task_images({}) == (containers.DEFAULT_CPU_IMAGE, containers.DEFAULT_GPU_IMAGE)


def test_a_lake_the_user_can_already_use_is_left_alone(tmp_path) -> None:
    root = tmp_path / "lake"
    (root / "features" / "features").mkdir(parents=True)
    for path in (root, root / "features" / "features"):
        path.chmod(0o777)
    before = {p: p.stat() for p in (root, root / "features" / "features")}
    assert containers.grant_lake_access(root, [root / "features" / "features"], 10001, 10001, euid=1234) == []
    assert {p: (p.stat().st_uid, p.stat().st_mode) for p in before} == {
        p: (st.st_uid, st.st_mode) for p, st in before.items()
    }


def test_a_non_root_worker_is_told_which_directory_the_container_user_cannot_write(tmp_path) -> None:
    root = tmp_path / "lake"
    root.mkdir(mode=0o755)
    target = root / "features" / "features"
    with pytest.raises(containers.TaskUserError) as err:
        containers.grant_lake_access(root, [target], 10001, 10001, euid=1234)
    message = str(err.value)
    assert "runs as 10001:10001" in message and str(target) in message and "write" in message
    assert "GOGOOKU3_TASK_USER" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_a_root_worker_hands_an_unreadable_root_and_the_write_dirs_to_the_user(tmp_path) -> None:
    root = tmp_path / "lake"
    root.mkdir(mode=0o700)
    target = root / "features" / "features"
    changed = containers.grant_lake_access(root, [target], 10001, 10002)
    assert changed == [root, target]
    assert all((p.stat().st_uid, p.stat().st_gid) == (10001, 10002) for p in changed)
    assert (root / "features").stat().st_uid == 0  # only searched through, kept as it was


def test_image_user_reads_the_images_user_and_refuses_root() -> None:
    class Api:
        def __init__(self, user: str) -> None:
            self.user = user

        def inspect_image(self, image: str) -> dict:
            return {"Config": {"User": self.user}}

    assert containers.image_user(Api("10001:10001"), "img") == (10001, 10001)
    assert containers.image_user(Api("123"), "img") == (123, 123)
    for user, named in (("", "has no USER"), ("0", "never run as root"), ("root", "numeric uid:gid")):
        with pytest.raises(containers.TaskUserError, match=named):
            containers.image_user(Api(user), "img")
