"""Server commands of the CLI: `db upgrade`, `admin create-project`, `admin create-key`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect, select

from platform_core.auth import service
from platform_core.auth.models import ApiKey
from platform_core.db.session import make_engine, make_sessionmaker
from tests.services import ROOT


def medtune(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env["MEDTUNE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "medtune.cli.main", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_db_upgrade_and_admin_commands(tmp_path: Path) -> None:
    done = medtune("db", "upgrade", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'medtune.sqlite'}")
    assert {"projects", "api_keys", "audit_events"} <= set(inspect(engine).get_table_names())

    assert medtune("admin", "create-project", "icu", data_dir=tmp_path).returncode == 0
    again = medtune("admin", "create-project", "icu", data_dir=tmp_path)
    assert again.returncode != 0 and "already exists" in (again.stdout + again.stderr)

    made = medtune("admin", "create-key", "--project", "icu", "--scopes", "datasets:read,jobs:read",
                   data_dir=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    raw = made.stdout.strip()
    assert raw.startswith("mt_")
    with make_sessionmaker(engine)() as s:
        principal = service.authenticate(s, raw)
        assert principal.scopes == frozenset({"datasets:read", "jobs:read"})
        assert raw not in [k.key_hash for k in s.scalars(select(ApiKey))]

    bad = medtune("admin", "create-key", "--project", "icu", "--scopes", "superuser", data_dir=tmp_path)
    assert bad.returncode == 1 and "unknown scope" in bad.stdout
    missing = medtune("admin", "create-key", "--project", "nope", data_dir=tmp_path)
    assert missing.returncode == 1 and "no project named" in missing.stdout


def test_server_commands_name_the_extra_when_it_is_missing() -> None:
    # Blocking platform_core in the import system is what a `pip install medtune` (no extra) looks like.
    code = (
        "import sys; sys.modules['platform_core'] = None\n"
        "from medtune.cli.main import app\n"
        "app(['db', 'upgrade'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'medtune[server]'" in done.stdout
