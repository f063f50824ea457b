"""Driving the compose stack from the tests: the compose command (v2 plugin or v1), the merged file
with the CI override, waits on healthchecks, and the wheelhouse served to the image builds."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "docker-compose.yml", ROOT / "docker-compose.ci.yml"]
# Services whose compose definition reserves a GPU; this machine has none.
GPU_SERVICES = ("worker", "inference")
WHEELHOUSE = ROOT / ".wheelhouse"


@functools.cache
def compose_command() -> list[str]:
    """`docker compose` where the v2 plugin is installed, else `docker-compose` (v1)."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if probe.returncode == 0 else ["docker-compose"]


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 600, check: bool = True,
        input_: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                         check=False, input=input_)  # fmt: skip
    if check and out.returncode != 0:
        raise AssertionError(
            f"{' '.join(args[:6])}... exited {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        )
    return out


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge, where image builds run: the network's gateway,
    or (Docker 20.10 lists none) the address of its bridge interface."""
    fmt = '{{range .IPAM.Config}}{{.Gateway}}{{end}} {{index .Options "com.docker.network.bridge.name"}}'
    gateway, _, interface = run(
        ["docker", "network", "inspect", "bridge", "--format", fmt]
    ).stdout.rpartition(" ")
    if gateway.strip():
        return gateway.strip()
    words = run(["ip", "-4", "-o", "addr", "show", interface.strip()]).stdout.split()
    return words[words.index("inet") + 1].split("/")[0]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Silent: a wheel fetched per line would bury the stack test's own output."""


@contextlib.contextmanager
def serve_wheelhouse() -> Iterator[tuple[str, str]]:
    """.wheelhouse over HTTP on the bridge, for PIP_FIND_LINKS in the builds: (host, URL). A fixed
    port: the URL is a build argument, and a new one would miss the layer cache."""
    port = int(os.environ.get("STACK_WHEELHOUSE_PORT", "3141"))
    handler = functools.partial(QuietHandler, directory=str(WHEELHOUSE))
    server = http.server.ThreadingHTTPServer((bridge_gateway(), port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield bridge_gateway(), f"http://{bridge_gateway()}:{port}/"
    finally:
        server.shutdown()
        server.server_close()


def short_port(port: str | dict[str, Any]) -> str:
    """A port in the short syntax: compose v1's `config` writes a published range in the long one,
    which it then refuses to read back."""
    if isinstance(port, str):
        return port
    host = f"{port['host_ip']}:" if port.get("host_ip") else ""
    return f"{host}{port['published']}:{port['target']}/{port.get('protocol', 'tcp')}"


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    tmp: Path
    key: str = ""

    def render(self) -> Path:
        """The merged compose file, less the GPU reservations (no NVIDIA runtime here): everything
        else is docker-compose.yml as shipped plus docker-compose.ci.yml."""
        args = [*compose_command(), "-p", self.project]
        for f in FILES:
            args += ["-f", str(f)]
        merged = yaml.safe_load(run([*args, "config"], env=self.full_env()).stdout)
        for svc in merged["services"].values():
            svc["ports"] = [short_port(p) for p in svc.get("ports", [])]
        for name in GPU_SERVICES:
            reservations = (
                merged["services"][name].get("deploy", {}).get("resources", {}).get("reservations", {})
            )
            reservations.pop("devices", None)
        path = self.tmp / "compose.yml"
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
        path.chmod(0o600)  # it holds the run's secrets
        return path

    def full_env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
        return clean | self.env

    def compose(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        base = [*compose_command(), "-p", self.project, "-f", str(self.render())]
        return run([*base, *args], env=self.full_env(), timeout=timeout, check=check)

    def exec(self, service: str, *command: str, index: int = 1) -> str:
        return self.compose("exec", "-T", "--index", str(index), service, *command, timeout=300).stdout

    def containers(self, service: str | None = None) -> list[str]:
        args = ["ps", "-q", *([service] if service else [])]
        return self.compose(*args).stdout.split()

    def container_name(self, container: str) -> str:
        return run(["docker", "inspect", "--format", "{{.Name}}", container]).stdout.strip().lstrip("/")

    def health(self, container: str) -> str:
        fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
        return run(["docker", "inspect", "--format", fmt, container]).stdout.strip()

    def wait_healthy(self, timeout: float = 900) -> None:
        """Every long-running container healthy (the one-shots exited 0), or the logs in the error."""
        deadline = time.monotonic() + timeout
        while True:
            states = {c: self.health(c) for c in self.containers()}
            bad = {c: s for c, s in states.items() if s in ("unhealthy", "dead")}
            exited = [c for c, s in states.items() if s == "exited" and self.exit_code(c) != 0]
            if bad or exited:
                raise AssertionError(f"containers failed: {bad} {exited}\n{self.logs(tail=80)}")
            if states and all(s in ("healthy", "exited") for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy after {timeout}s: {states}\n{self.logs(tail=80)}")
            time.sleep(3)

    def exit_code(self, container: str) -> int:
        return int(run(["docker", "inspect", "--format", "{{.State.ExitCode}}", container]).stdout)

    def up(self, *args: str) -> None:
        # --no-build: the images are built once by the fixture; `up` only starts what changed.
        self.compose("up", "-d", "--no-build", *args, timeout=900)
        self.wait_healthy()

    def api_urls(self) -> list[str]:
        urls = []
        for container in self.containers("api"):
            port = run(["docker", "port", container, "8000/tcp"]).stdout.split()[0].rsplit(":", 1)[1]
            urls.append(f"http://127.0.0.1:{port}")
        return sorted(urls)

    def tier_health(self) -> list[dict[str, Any]]:
        """GET /healthz of every inference replica, from inside its container (it has no host port)."""
        probe = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/healthz').read().decode())"
        n = len(self.containers("inference"))
        return [json.loads(self.exec("inference", "python", "-c", probe, index=i + 1)) for i in range(n)]

    def logs(self, tail: int = 200) -> str:
        out = self.compose("logs", "--no-color", "--tail", str(tail), check=False)
        return out.stdout[-20000:]

    def dump_logs(self) -> None:
        (ROOT / ".stack").mkdir(exist_ok=True)
        (ROOT / ".stack" / f"{self.project}.log").write_text(self.logs(tail=2000))
