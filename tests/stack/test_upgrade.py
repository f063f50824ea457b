"""Migrations on deploy: a stack running the previous schema's API image, with data in it, swapped to
the new image; the API container's migrate step runs Alembic up to the current head and the data is
still served. The previous image is the code before the last commit that changed the migrations,
built once with today's Dockerfile.api (the old one pulled from a registry) and kept by its tag."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.stack.compose import ROOT, Stack, run
from tests.stack.conftest import Images, host_ports

SERVICES = ("postgres", "redis", "s3", "s3-setup", "mlflow")


def alembic_head(tree: Path) -> str:
    config = Config()
    config.set_main_option("script_location", str(tree / "migrations"))
    (head,) = ScriptDirectory.from_config(config).get_heads()
    return str(head)


def previous_tree(tmp: Path) -> tuple[str, Path]:
    """(commit, its files with today's docker/): the parent of the last commit that changed migrations."""
    last = run(["git", "log", "-1", "--format=%H", "--", "migrations/versions"]).stdout.strip()
    commit = run(["git", "rev-parse", f"{last}^"]).stdout.strip()
    tree = tmp / commit[:12]
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    for path in (ROOT / "docker").rglob("*"):
        if path.is_file():
            target = tree / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            target.chmod(path.stat().st_mode)
    (tree / ".dockerignore").write_bytes((ROOT / ".dockerignore").read_bytes())
    return commit, tree


def build_previous_api(images: Images, tmp: Path) -> tuple[str, str]:
    """(image tag, its Alembic head); built only when no image has that tag yet."""
    commit, tree = previous_tree(tmp)
    tag = f"medtune-stack/api:prev-{commit[:12]}"
    if run(["docker", "image", "inspect", tag], check=False).returncode != 0:
        env = images.env
        args = ["--build-arg", f"BASE_IMAGE={env.get('LOCAL_BASE', 'medtune-local/debian:bookworm')}",
                "--build-arg", f"PIP_FIND_LINKS={env['WHEELHOUSE_URL']}", "--build-arg", "PIP_NO_INDEX=1",
                "--build-arg", f"PIP_TRUSTED_HOST={env['WHEELHOUSE_HOST']}"]  # fmt: skip
        run(["docker", "build", "-f", "docker/Dockerfile.api", "-t", tag, *args, str(tree)], timeout=1800)
    return tag, alembic_head(tree)


@pytest.fixture(scope="module")
def upgraded(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    env = images.env | host_ports() | {"IMAGE_TAG": "upgrade"}  # beside the main stack, still up
    return Stack("medtune-upgrade", env, tmp_path_factory.mktemp("up"))


def test_new_image_migrates_a_running_deployment(images: Images, upgraded: Stack, tmp_path: Path) -> None:
    previous, old_head = build_previous_api(images, tmp_path)
    new_head = alembic_head(ROOT)
    for repo in ("medtune/mlflow", "medtune-ci/s3", "medtune-ci/postgres", "medtune-ci/redis"):
        run(["docker", "tag", f"{repo}:stack", f"{repo}:upgrade"])
    run(["docker", "tag", previous, "medtune/api:upgrade"])
    try:
        upgraded.up(*SERVICES)
        upgraded.up("--no-deps", "api")
        psql = ["psql", "-U", "medtune", "-d", "medtune", "-tAc", "SELECT version_num FROM alembic_version"]
        assert upgraded.exec("postgres", *psql).strip() == old_head
        upgraded.exec("api", "medtune", "admin", "create-project", "kept")
        key = upgraded.exec("api", "medtune", "admin", "create-key", "--project", "kept").split()[-1]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=upgraded.api_urls()[0], headers=headers, timeout=60) as client:
            body = {"name": "kept", "task": "binary", "labels": ["finding"]}
            made = client.post("/v1/datasets", json=body)
            assert made.status_code == 201, made.text

        # The deployment takes the new image under the same tag, as after a pull, and recreates the API.
        run(["docker", "tag", "medtune/api:stack", "medtune/api:upgrade"])
        upgraded.up("--no-deps", "api")
        assert upgraded.exec("postgres", *psql).strip() == new_head
        with httpx.Client(base_url=upgraded.api_urls()[0], headers=headers, timeout=60) as client:
            got = client.get(f"/v1/datasets/{made.json()['id']}")
            assert got.status_code == 200, got.text
            assert got.json()["name"] == "kept"
    finally:
        upgraded.dump_logs()
        upgraded.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
