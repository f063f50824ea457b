"""The layers hold at run time as well as on paper: the import contracts in pyproject.toml pass, and
fresh interpreters that load each layer find no module of the layers it must not touch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Imports every module of the named packages (so a lazy import hidden in a rarely used module still
# counts), then runs the extra code, then prints which of the watched modules are loaded.
PROBE = """
import importlib, json, pkgutil, sys
packages, watched, extra = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3]
for name in packages:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(info.name)
exec(extra)
print(json.dumps(sorted(w for w in watched if w in sys.modules)))
"""

# The API as it serves: app built, lifespan run (engines, store, Celery client), /readyz answered.
SERVE_API = """
from fastapi.testclient import TestClient
from api.app import create_app
with TestClient(create_app()) as client:
    assert client.get("/readyz").status_code == 200, client.get("/readyz").text
"""

TORCH = ["torch", "torchvision", "timm", "peft"]


def loaded_after(packages: list[str], watched: list[str], tmp_path: Path, extra: str = "") -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {"MEDTUNE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(packages), ",".join(watched), extra],
        cwd=tmp_path,  # no ./.env, no embedded data dir in the repository
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return loaded


def test_import_contracts_are_kept() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    out = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(contracts) >= 3
    for contract in contracts:
        assert f"{contract['name']} KEPT" in out.stdout


def test_api_serves_without_torch(tmp_path: Path) -> None:
    loaded = loaded_after(["api"], [*TORCH, "celery"], tmp_path, SERVE_API)
    assert "celery" in loaded  # the probe did reach the broker check
    assert not set(loaded) & set(TORCH), f"the API loaded {loaded}"


def test_sdk_and_cli_load_no_server_code(tmp_path: Path) -> None:
    # `pip install medtune` has only httpx, pydantic, typer and rich: nothing else may load.
    watched = [*TORCH, "platform_core", "api", "worker", "fastapi", "celery", "sqlalchemy", "boto3", "mlflow"]
    assert loaded_after(["medtune"], watched, tmp_path) == []


def test_platform_core_knows_no_http_or_celery(tmp_path: Path) -> None:
    watched = ["fastapi", "starlette", "celery", "kombu", "api", "worker", "torch"]
    loaded = loaded_after(["platform_core"], watched, tmp_path)
    assert "torch" in loaded  # every module was imported, training ones included
    assert set(loaded) == {"torch"}, f"platform_core loaded {loaded}"


def test_probe_fails_loudly_on_a_broken_import(tmp_path: Path) -> None:
    # An import error in a layer is a failed test, never an empty list of loaded modules.
    with pytest.raises(AssertionError, match="ModuleNotFoundError"):
        loaded_after(["platform_core_missing"], [], tmp_path)
