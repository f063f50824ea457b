"""Settings: embedded defaults, the de-identification secret kept 0600, production refuses defaults."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from platform_core.config import Settings


def test_embedded_defaults_live_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MEDTUNE_DATABASE_URL", "MEDTUNE_OBJECT_STORE_URL", "MEDTUNE_BROKER_URL", "MEDTUNE_ENV"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(data_dir=tmp_path / "d")
    assert s.db_url == f"sqlite:///{tmp_path / 'd' / 'medtune.sqlite'}"
    assert s.object_store_url == f"file://{tmp_path / 'd' / 'objects'}"
    assert s.broker_url == "filesystem://"
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'd' / 'mlflow.sqlite'}"
    assert s.broker_visibility_timeout_s == 48 * 3600


def test_env_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDTUNE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEDTUNE_OBJECT_STORE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("MEDTUNE_CORS_ORIGINS", '["https://app.example"]')
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.object_store_url == "s3://bucket/prefix"
    assert s.cors_origins == ["https://app.example"]


def test_embedded_secret_is_generated_once_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDTUNE_DEID_SECRET", raising=False)
    first = Settings(data_dir=tmp_path).resolved_secret()
    path = tmp_path / "deid-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert Settings(data_dir=tmp_path).resolved_secret() == first


def test_production_refuses_the_default_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDTUNE_DEID_SECRET", raising=False)
    with pytest.raises(RuntimeError, match="MEDTUNE_DEID_SECRET"):
        Settings(env="production", data_dir=tmp_path).check_startup()
    assert not (tmp_path / "deid-secret").exists()
    Settings(env="production", data_dir=tmp_path, deid_secret="a-real-secret-" + "x" * 32).check_startup()


@pytest.mark.parametrize("env", ["embedded", "production"])
@pytest.mark.parametrize("secret", ["", "short-but-not-empty", "x" * 31])
def test_empty_or_short_secrets_are_refused_in_every_mode(tmp_path: Path, env: str, secret: str) -> None:
    with pytest.raises(RuntimeError, match="at least 32 bytes"):
        Settings(env=env, data_dir=tmp_path, deid_secret=secret).check_startup()
    assert not (tmp_path / "deid-secret").exists()  # an empty value is an error, not "generate one"
    Settings(env=env, data_dir=tmp_path, deid_secret="x" * 32).check_startup()


def test_a_truncated_secret_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDTUNE_DEID_SECRET", raising=False)
    (tmp_path / "deid-secret").write_text("abc\n")
    with pytest.raises(RuntimeError, match="deid-secret is too short"):
        Settings(data_dir=tmp_path).resolved_secret()
