"""The deployment files hold together: every Dockerfile, script, module and MEDTUNE_* setting they
name exists. Fast and engine-free: the compose files are read as YAML and checked piece by piece (the
stack test, tests/stack, builds and runs them)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, inspect, text

from platform_core.config import Settings
from tests.services import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CI_OVERRIDE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.ci.yml").read_text())
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "docker"
COMPOSE_TEXT = COMPOSE_FILE.read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SCRIPTS = sorted(DOCKER.rglob("*.sh"))
DOCKERFILES = sorted(DOCKER.rglob("Dockerfile.*"))
TORCH_STACK = ("torch", "torchvision", "timm", "peft", "grad-cam")
# Where the images put the repository (WORKDIR /app).
IMAGE_ROOT = "/app/"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; `$$` is a literal dollar.
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
MODULE_REF = re.compile(r"\b((?:api|worker|platform_core|medtune)(?:\.\w+)+):(\w+)\b")
MEDTUNE_VAR = re.compile(r"\bMEDTUNE_[A-Z0-9_]+\b")


def interpolations(source: str) -> Iterator[tuple[str, str, str]]:
    for match in INTERPOLATION.finditer(source.replace("$$", "")):
        yield match.group(1), match.group(2) or "", match.group(3) or ""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, for the forms this file uses."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        current = env.get(name)
        if op.endswith("-"):
            return current if current or (op == "-" and current is not None) else arg
        if op.endswith("?") and not current:
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return INTERPOLATION.sub(one, value).replace("$$", "$")


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def long_running(name: str) -> bool:
    return SERVICES[name].get("restart") != "no"


def command_text(service: dict[str, Any]) -> str:
    parts = []
    for key in ("command", "entrypoint"):
        value = service.get(key)
        if value:
            parts.append(" ".join(value) if isinstance(value, list) else str(value))
    return " ".join(parts)


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return " ".join(test) if isinstance(test, list) else str(test)


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("#"))
    )
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in joined.splitlines()
        if (parts := line.strip().split(None, 1))
    ]


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """The instructions of each build stage by name (an unnamed last stage is ""), with those a stage
    inherits `FROM` an earlier stage of the file first; ARGs before the first FROM go to every stage."""
    named: dict[str, list[tuple[str, str]]] = {}
    preamble: list[tuple[str, str]] = []
    current: list[tuple[str, str]] | None = None
    for instruction, args in dockerfile_instructions(path):
        if instruction == "FROM":
            image, _, name = args.partition(" AS ")
            current = [*preamble, *named.get(image.strip(), []), (instruction, args)]
            named[name.strip()] = current
        elif current is None:
            preamble.append((instruction, args))
        else:
            current.append((instruction, args))
    return named


def final(path: Path, stage: str = "") -> list[tuple[str, str]]:
    """The instructions that make the image of `stage` (the file's last stage when not named)."""
    return stages(path)[stage] if stage else list(stages(path).values())[-1]


def copied_paths(dockerfile: Path) -> dict[str, str]:
    """Image path -> source path (relative to the build context) for every COPY from the context."""
    workdir = "/"
    copied: dict[str, str] = {}
    for instruction, args in dockerfile_instructions(dockerfile):
        if instruction == "WORKDIR":
            workdir = args.rstrip("/") + "/"
        if instruction != "COPY" or "--from" in args:
            continue
        *sources, dest = [a for a in args.split() if not a.startswith("--")]
        dest = dest if dest.startswith("/") else workdir + dest.removeprefix("./")
        for src in sources:
            copied[dest + Path(src).name if dest.endswith("/") else dest] = src
    return copied


def built_services() -> dict[str, Path]:
    return {
        name: ROOT / svc["build"].get("context", ".") / svc["build"]["dockerfile"]
        for name, svc in SERVICES.items()
        if "build" in svc
    }


# --- the compose file -----------------------------------------------------------------------------


def test_compose_has_the_platform_services() -> None:
    assert {"postgres", "redis", "s3", "s3-setup", "mlflow", "api", "inference", "worker", "worker-cpu",
            "dicom"} <= set(SERVICES)  # fmt: skip


@pytest.mark.parametrize("name", sorted(built_services()))
def test_build_context_and_dockerfile_exist(name: str) -> None:
    build = SERVICES[name]["build"]
    assert (ROOT / build.get("context", ".")).is_dir()
    assert built_services()[name].is_file()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_what_exists(dockerfile: Path) -> None:
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and ln[0] != "#"}
    for src in copied_paths(dockerfile).values():
        assert (ROOT / src).exists(), f"{dockerfile.name} copies missing {src}"
        assert src.split("/")[0] not in ignored, f"{dockerfile.name} copies {src}, which .dockerignore drops"


@pytest.mark.parametrize(
    ("dockerfile", "stage"),
    [(d, s) for d in DOCKERFILES for s in stages(d) if any(i == "ENTRYPOINT" for i, _ in final(d, s))],
    ids=lambda x: x.name if isinstance(x, Path) else x,
)
def test_dockerfile_entrypoint_and_its_scripts_are_in_the_image(dockerfile: Path, stage: str) -> None:
    copied = copied_paths(dockerfile)
    entrypoints = [json.loads(a) for i, a in final(dockerfile, stage) if i == "ENTRYPOINT"]
    program = entrypoints[-1][0]
    if not program.startswith(IMAGE_ROOT):
        return  # a program the image installs, e.g. mlflow
    assert program in copied, f"{dockerfile.name} runs {program} but does not copy it"
    script = ROOT / copied[program]
    assert os.access(script, os.X_OK), f"{script} is not executable"
    # Files the entrypoint runs from the image must be in the image too.
    for used in re.findall(rf"{IMAGE_ROOT}[\w/.-]+", script.read_text()):
        assert used in copied, f"{script.name} runs {used}, which {dockerfile.name} does not copy"


def test_bind_mounted_files_exist() -> None:
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script: Path) -> None:
    assert script.read_text().startswith("#!/bin/sh\n")
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_module_references_import(tmp_path: Path) -> None:
    sources = [command_text(s) + " " + healthcheck_text(s) for s in SERVICES.values()]
    sources += [p.read_text() for p in [*SCRIPTS, *DOCKERFILES]]
    refs = sorted({m.group(0) for src in sources for m in MODULE_REF.finditer(src)})
    assert {"api.asgi:app", "worker.app:celery_app"} <= set(refs)
    code = (
        "import importlib, json, sys\n"
        "for ref in sys.argv[1:]:\n"
        "    module, attr = ref.split(':')\n"
        "    getattr(importlib.import_module(module), attr)\n"
        "from worker.app import QUEUES\n"
        "print(json.dumps(list(QUEUES)))\n"
    )
    env = {**os.environ, "MEDTUNE_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code, *refs], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    consumed = {
        name: re.findall(r"--queues[= ](\S+)", command_text(SERVICES[name]))[0].split(",")
        for name in ("worker", "worker-cpu")
    }
    assert consumed["worker"] == ["train"]  # the GPU runs training only
    assert sorted(consumed["worker"] + consumed["worker-cpu"]) == sorted(
        json.loads(out.stdout.splitlines()[-1])
    )
    # Exactly one service runs the beat that requeues jobs of vanished workers.
    assert [n for n, svc in SERVICES.items() if "--beat" in command_text(svc)] == ["worker-cpu"]


def test_every_medtune_variable_is_a_setting() -> None:
    used = set(MEDTUNE_VAR.findall(COMPOSE_TEXT)) | set(MEDTUNE_VAR.findall(ENV_EXAMPLE.read_text()))
    for path in [*SCRIPTS, *DOCKERFILES]:
        used |= set(MEDTUNE_VAR.findall(path.read_text()))
    fields = set(Settings.model_fields)
    unknown = sorted(v for v in used if v.removeprefix("MEDTUNE_").lower() not in fields)
    assert not unknown, f"not fields of platform_core.config.Settings: {unknown}"
    assert "MEDTUNE_DEID_SECRET" in used


def test_env_example_covers_every_required_variable() -> None:
    example = env_example()
    required = {name for name, op, _ in interpolations(COMPOSE_TEXT) if op.endswith("?") or not op}
    assert {"MEDTUNE_DEID_SECRET", "POSTGRES_PASSWORD"} <= required
    assert required <= set(example), f"missing from .env.example: {sorted(required - set(example))}"
    # Secrets are left empty on purpose, so an unedited copy fails `docker compose up` at once.
    assert example["MEDTUNE_DEID_SECRET"] == ""


def _filled_in_env() -> dict[str, str]:
    env = env_example()
    for key, value in env.items():
        env[key] = value or f"{key.lower()}-0123456789abcdef"
    return env


def test_env_example_unedited_is_refused() -> None:
    with pytest.raises(KeyError):
        interpolate(COMPOSE_TEXT, env_example())
    # Each secret on its own stops the deployment, the pseudonym key first of all.
    with pytest.raises(KeyError, match="MEDTUNE_DEID_SECRET"):
        interpolate(COMPOSE_TEXT, {**_filled_in_env(), "MEDTUNE_DEID_SECRET": ""})


@pytest.mark.parametrize("name", ["api", "worker"])
def test_platform_environment_makes_valid_production_settings(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    resolved = yaml.safe_load(interpolate(COMPOSE_TEXT, _filled_in_env()))
    medtune = {
        k: str(v) for k, v in resolved["services"][name]["environment"].items() if k.startswith("MEDTUNE_")
    }
    for key in list(os.environ):
        if key.startswith("MEDTUNE_"):
            monkeypatch.delenv(key)
    for key, value in medtune.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEDTUNE_DATA_DIR", str(tmp_path))  # the container's path is not writable here
    settings = Settings(_env_file=None)
    assert settings.env == "production"
    settings.check_startup()  # a non-default de-identification secret is set
    assert settings.db_url.startswith("postgresql+psycopg://medtune:")
    assert settings.object_store_url == "s3://medtune"
    assert settings.s3_endpoint_url == "http://s3:8333"
    assert settings.inference_nodes == ["http://inference:8000"]
    assert settings.s3_server_side_encryption == "AES256"
    assert (settings.broker_url or "").startswith("redis://redis:6379")
    assert (settings.result_backend or "").startswith("redis://redis:6379")
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.cors_origins == []


def test_worker_reserves_one_gpu_and_runs_one_job_at_a_time() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    command = command_text(worker)
    assert re.search(r"(--concurrency[= ]|-c )1\b", command)
    assert re.search(r"--prefetch-multiplier[= ]1\b", command)
    assert "worker.app:celery_app worker" in command
    # The image's default command (the file's last stage, target worker) is the same one-job worker.
    assert SERVICES["worker"]["build"]["target"] == "worker"
    (cmd,) = [json.loads(a) for i, a in final(DOCKER / "Dockerfile.torch", "worker") if i == "CMD"]
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    assert list(stages(DOCKER / "Dockerfile.torch"))[-1] == "worker"  # a build without --target


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_dockerfile_takes_a_base_image(dockerfile: Path) -> None:
    instructions = dockerfile_instructions(dockerfile)
    assert instructions[0][0] == "ARG" and instructions[0][1].startswith("BASE_IMAGE=")
    assert instructions[1] == ("FROM", "${BASE_IMAGE}") or instructions[1][1].startswith("${BASE_IMAGE} AS ")
    default = instructions[0][1].removeprefix("BASE_IMAGE=")
    if dockerfile.parent.name == "ci":
        assert default == "medtune-local/debian:bookworm"  # scripts/local-base.sh's image
    elif dockerfile.name == "Dockerfile.torch":
        assert default.startswith("nvidia/cuda:") and "cudnn-runtime" in default
    else:
        assert default.startswith("python:3.11-slim")
    assert "medtune-local/debian:bookworm" in (ROOT / "scripts" / "local-base.sh").read_text()


def test_inference_and_worker_images_share_the_torch_stage() -> None:
    torch_file = DOCKER / "Dockerfile.torch"
    assert set(stages(torch_file)) == {"torch", "inference", "worker"}
    for name, target in (("inference", "inference"), ("dicom", "inference"), ("worker", "worker"),
                         ("worker-cpu", "worker")):  # fmt: skip
        build = SERVICES[name]["build"]
        assert (build["dockerfile"], build["target"]) == ("docker/Dockerfile.torch", target), name
    text_ = torch_file.read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130" in text_
    pyproject = (ROOT / "pyproject.toml").read_text()
    for package in ("torch", "torchvision"):
        (pinned,) = re.findall(rf'"{package}==([\d.]+)"', pyproject)
        (arg,) = re.findall(rf"ARG {package.upper()}_VERSION=([\d.]+)", text_)
        assert arg == pinned, f"Dockerfile.torch installs {package} {arg}, pyproject pins {pinned}"


def test_api_image_installs_the_server_extra_without_the_torch_stack() -> None:
    text_ = (DOCKER / "Dockerfile.api").read_text()
    assert f"docker/requirements.py server --without {','.join(TORCH_STACK)}" in text_
    out = subprocess.run(
        [sys.executable, str(DOCKER / "requirements.py"), "server", "--without", ",".join(TORCH_STACK)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = {re.split(r"[<>=\[ ;]", line)[0].lower() for line in out.stdout.splitlines()}
    assert not names & set(TORCH_STACK)
    assert {"fastapi", "sqlalchemy", "celery", "boto3", "pydicom", "mlflow", "httpx"} <= names
    refused = subprocess.run(
        [sys.executable, str(DOCKER / "requirements.py"), "server", "--without", "tensorflow"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "tensorflow" in refused.stderr


def test_every_long_running_service_has_a_healthcheck() -> None:
    running = [n for n in SERVICES if long_running(n)]
    assert {"postgres", "redis", "s3", "mlflow", "api", "inference", "worker", "worker-cpu"} <= set(running)
    for name in running:
        assert healthcheck_text(SERVICES[name]).startswith(("CMD ", "CMD-SHELL ")), (
            f"{name} has no healthcheck"
        )
    assert "/readyz" in healthcheck_text(SERVICES["api"])
    assert "/healthz" in healthcheck_text(SERVICES["inference"])


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, svc in SERVICES.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            expected = "service_healthy" if long_running(dep) else "service_completed_successfully"
            assert cond["condition"] == expected, f"{name} -> {dep}"
    assert {"postgres", "redis", "s3-setup", "mlflow", "inference"} <= set(SERVICES["api"]["depends_on"])
    assert set(SERVICES["worker"]["depends_on"]) == set(SERVICES["api"]["depends_on"]) - {"inference"}


def test_api_can_be_scaled() -> None:
    api = SERVICES["api"]
    assert "container_name" not in api
    for port in api.get("ports", []):
        host = interpolate(str(port), {}).rsplit(":", 1)[0]
        assert "-" in host, f"a fixed host port {host} stops `--scale api=N`"


def test_api_migrates_before_serving() -> None:
    script = (DOCKER / "entrypoint-api.sh").read_text()
    assert script.index("/app/docker/migrate.py") < script.index("uvicorn api.asgi:app")


def test_mlflow_uses_postgres_and_s3_artifacts() -> None:
    command = command_text(SERVICES["mlflow"])
    assert "--backend-store-uri=postgresql" in command and "@postgres:5432/mlflow" in command
    assert "--artifacts-destination=s3://mlflow" in command
    assert "CREATE DATABASE mlflow" in (DOCKER / "postgres" / "init-mlflow-db.sql").read_text()
    assert '"mlflow"' in (DOCKER / "s3-setup.py").read_text()
    (pinned,) = re.findall(r"ARG MLFLOW_VERSION=(\S+)", (DOCKER / "Dockerfile.mlflow").read_text())
    import mlflow

    assert pinned == mlflow.__version__  # the server speaks the client's version


# --- the migration step the API container runs ------------------------------------------------------


def _run_migrate(url: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {
        "MEDTUNE_ENV": "production",
        "MEDTUNE_DATABASE_URL": url,
        "MEDTUNE_DEID_SECRET": "a-private-deployment-secret-of-40-bytes",
        "MEDTUNE_DATA_DIR": str(tmp_path),
    }
    return subprocess.Popen(
        [sys.executable, str(DOCKER / "migrate.py")],
        cwd=tmp_path,  # as in the image: no ./.env of the developer's
        env=env | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_migrate_builds_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'medtune.sqlite'}"
    proc = _run_migrate(url, tmp_path)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    engine = create_engine(url)
    assert {"projects", "api_keys", "audit_events", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_migrate_refuses_the_default_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {"MEDTUNE_ENV": "production", "MEDTUNE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(DOCKER / "migrate.py")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "MEDTUNE_DEID_SECRET must be set" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing migrated, no secret file made


@pytest.mark.services
def test_migrate_replicas_wait_for_the_lock(pg_url: str, tmp_path: Path) -> None:
    (literal,) = re.findall(r"^MIGRATION_LOCK = (\S+)", (DOCKER / "migrate.py").read_text(), re.M)
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    with engine.connect() as holder:
        # Another replica is migrating: this one must wait for it, not race it.
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": int(literal, 0)})
        proc = _run_migrate(pg_url, tmp_path)
        try:
            deadline = time.monotonic() + 60
            while holder.execute(waiting).scalar_one() == 0:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "migrate.py never queued on the lock"
                time.sleep(0.1)
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": int(literal, 0)})
        output, _ = proc.communicate(timeout=120)
    engine.dispose()
    assert proc.returncode == 0, output


# --- the worker command and its healthcheck, run as written ------------------------------------------


@pytest.mark.services
@pytest.mark.slow
def test_worker_command_consumes_and_its_healthcheck_answers(redis_url: str, tmp_path: Path) -> None:
    worker = SERVICES["worker"]
    db = 8 + secrets.randbelow(8)  # a Redis database of its own: no other test's queues or workers
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "HOSTNAME": socket.gethostname(),  # as in a container, where %h and $HOSTNAME agree
        "MEDTUNE_DATA_DIR": str(tmp_path),
        "MEDTUNE_BROKER_URL": f"{redis_url}/{db}",
        "MEDTUNE_RESULT_BACKEND": f"{redis_url}/{db}",
    }
    (kind, health) = worker["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            worker["command"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            return "ready." in (tmp_path / "worker.log").read_text()

        wait_for(ready, timeout=90, what="the worker to start")
        check = subprocess.run(["sh", "-c", health.replace("$$", "$")], cwd=tmp_path, env=env, timeout=60)
        assert check.returncode == 0
        roundtrip = (
            "from worker.app import celery_app\n"
            "print(celery_app.send_task('system.ping', queue='train').get(timeout=30)['pong'])\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", roundtrip],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == "True", out.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.slow
def test_api_entrypoint_migrates_then_serves_and_its_healthcheck_answers(tmp_path: Path) -> None:
    # The script as the image runs it, with the image's /app and port 8000 swapped for this machine's.
    port = str(free_port())
    script = tmp_path / "entrypoint-api.sh"
    script.write_text(
        (DOCKER / "entrypoint-api.sh").read_text().replace(IMAGE_ROOT, f"{ROOT}/").replace("8000", port)
    )
    (kind, *health) = SERVICES["api"]["healthcheck"]["test"]
    assert kind == "CMD"
    health = [sys.executable if arg == "python" else arg.replace("8000", port) for arg in health]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "MEDTUNE_ENV": "production",
        "MEDTUNE_DEID_SECRET": "a-private-deployment-secret-of-40-bytes",
        "MEDTUNE_DATA_DIR": str(tmp_path / "data"),
    }
    with (tmp_path / "api.log").open("wb") as log:
        proc = subprocess.Popen(
            ["sh", str(script)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            return subprocess.run(health, capture_output=True, timeout=30).returncode == 0

        wait_for(healthy, timeout=90, interval=0.5, what="the API healthcheck")
        engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'medtune.sqlite'}")
        assert "projects" in inspect(engine).get_table_names()  # migrated before serving
        engine.dispose()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


# --- the inference tier and the stack test's override ---------------------------------------------


def test_inference_tier_reserves_a_gpu_and_serves_on_port_8000() -> None:
    inference = SERVICES["inference"]
    devices = inference["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "ports" not in inference  # reached on the compose network only
    (cmd,) = [json.loads(a) for i, a in final(DOCKER / "Dockerfile.torch", "inference") if i == "CMD"]
    assert cmd[:2] == ["medtune", "serve"] and cmd[cmd.index("--port") + 1] == "8000"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert "http://inference:8000" in COMPOSE_TEXT


def test_ci_override_builds_every_image_from_the_local_base() -> None:
    args = CI_OVERRIDE["x-local-args"]
    assert args["BASE_IMAGE"].startswith("${LOCAL_BASE:-medtune-local/debian:bookworm}")
    assert args["PIP_NO_INDEX"] == "1" and "WHEELHOUSE_URL" in args["PIP_FIND_LINKS"]
    overridden = CI_OVERRIDE["services"]
    for name, svc in SERVICES.items():
        if "build" in svc:
            assert overridden[name]["build"]["args"] == args, name
    for name in ("postgres", "redis", "s3"):
        build = overridden[name]["build"]
        assert (ROOT / build["dockerfile"]).is_file() and build["dockerfile"].startswith("docker/ci/")
        assert build["args"] == args


def test_files_a_service_runs_from_its_image_are_in_it() -> None:
    for name, svc in SERVICES.items():
        if "build" not in svc:
            continue
        build = svc["build"]
        copied = set(copied_paths(ROOT / build["dockerfile"]))
        for used in re.findall(rf"{IMAGE_ROOT}[\w/.-]+", command_text(svc)):
            assert used in copied, f"{name} runs {used}, which {build['dockerfile']} does not copy"
