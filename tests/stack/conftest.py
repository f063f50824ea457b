"""The stack test's fixtures: the images built from the local base, the compose stack up with the CI
override, an API key. Collected only when MEDTUNE_STACK=1 (`make stack-test`): the normal run has no
Docker engine to expect, and .ci/run runs this after the suites."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import free_port
from tests.stack.compose import ROOT, Stack, serve_wheelhouse

if os.environ.get("MEDTUNE_STACK") != "1":
    collect_ignore_glob = ["test_*.py"]

TIMINGS = ROOT / ".stack" / "timings.json"


def host_ports() -> dict[str, str]:
    """Host ports that no one else holds, for one stack: its API range, MLflow UI and DICOM port."""
    base = 20000 + secrets.randbelow(400) * 10
    return {
        "API_PORTS": f"{base}-{base + 9}",
        "MLFLOW_PORT": str(free_port()),
        "DICOM_PORT": str(free_port()),
    }


def stack_env() -> dict[str, str]:
    """Fresh secrets for each run (hex, valid inside URLs) and the stack test's settings."""
    return {
        "MEDTUNE_DEID_SECRET": secrets.token_hex(32),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "MEDTUNE_S3_ACCESS_KEY_ID": "medtune",
        "MEDTUNE_S3_SECRET_ACCESS_KEY": secrets.token_hex(16),
        "MEDTUNE_INFERENCE_TOKEN": secrets.token_hex(32),
        "API_WORKERS": "1",
        "IMAGE_TAG": "stack",
        # A killed worker's message comes back after this long (the platform's default is 48 h).
        "MEDTUNE_BROKER_VISIBILITY_TIMEOUT_S": "15",
    } | host_ports()


@dataclass
class Images:
    """The images built once per session from the local base, and the wheelhouse they came from."""

    env: dict[str, str]
    timings: dict[str, int]


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    with serve_wheelhouse() as (host, url):
        env = stack_env() | {"WHEELHOUSE_HOST": host, "WHEELHOUSE_URL": url}
        builder = Stack("medtune-build", env, tmp_path_factory.mktemp("build"))
        started = time.monotonic()
        builder.compose("build", timeout=3600)
        built = Images(env, {"build_s": round(time.monotonic() - started)})
        yield built
        TIMINGS.parent.mkdir(exist_ok=True)
        previous = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
        TIMINGS.write_text(json.dumps(previous | built.timings, indent=2) + "\n")


@pytest.fixture(scope="session")
def stack(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(f"medtune-stack-{secrets.token_hex(3)}", dict(images.env), tmp_path_factory.mktemp("stack"))
    try:
        started = time.monotonic()
        s.up()
        images.timings["up_s"] = round(time.monotonic() - started)
        yield s
    finally:
        s.dump_logs()
        s.compose("down", "-v", "--remove-orphans", timeout=300, check=False)


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    project = stack.exec("api", "medtune", "admin", "create-project", "stack").strip()
    assert project
    key = stack.exec("api", "medtune", "admin", "create-key", "--project", "stack").strip().splitlines()[-1]
    stack.key = key
    with httpx.Client(base_url=stack.api_urls()[0], timeout=120) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flow")
