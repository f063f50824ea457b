"""`medtune up` and the deployed entry points end non-zero, with the reason, on an empty or short secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEDTUNE = Path(sys.executable).with_name("medtune")


def _env(tmp_path: Path, secret: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {"MEDTUNE_DATA_DIR": str(tmp_path), "MEDTUNE_DEID_SECRET": secret, "PYTHONPATH": str(ROOT)}
    return env | extra


@pytest.mark.parametrize("secret", ["", "0123456789abcdef"])
def test_medtune_up_refuses_to_start(tmp_path: Path, secret: str) -> None:
    out = subprocess.run(
        [str(MEDTUNE), "up", "--data-dir", str(tmp_path / "d"), "--port", "1", "--mlflow-port", "2"],
        cwd=tmp_path, env=_env(tmp_path, secret), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "at least 32 bytes" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "d" / "medtune.sqlite").exists()  # nothing migrated, nothing started


@pytest.mark.parametrize("secret", ["", "0123456789abcdef"])
def test_worker_entrypoint_refuses_to_start(tmp_path: Path, secret: str) -> None:
    marker = tmp_path / "ran"
    out = subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint-worker.sh"), "touch", str(marker)],
        cwd=tmp_path, env=_env(tmp_path, secret, MEDTUNE_ENV="production", WORKER_REQUIRE_GPU="0"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "at least 32 bytes" in out.stderr
    assert not marker.exists()
    ok = _env(tmp_path, "k" * 32, MEDTUNE_ENV="production", WORKER_REQUIRE_GPU="0")
    assert subprocess.run(["sh", str(ROOT / "docker" / "entrypoint-worker.sh"), "touch", str(marker)],
                          cwd=tmp_path, env=ok, timeout=120).returncode == 0  # fmt: skip
    assert marker.exists()


def test_api_migrate_step_refuses_a_short_secret(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "migrate.py")],
        cwd=tmp_path, env=_env(tmp_path, "short", MEDTUNE_ENV="production"), capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2
    assert "at least 32 bytes" in out.stderr
    assert not list(tmp_path.iterdir())
