"""Settings for every process: pydantic-settings with the MEDTUNE_ prefix and embedded defaults."""

from __future__ import annotations

import os
import secrets
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me"
SECRET_FILE = "deid-secret"
# HMAC-SHA256 keys shorter than its 32-byte output weaken every pseudonym; an empty one (an unfilled
# copy of .env.example) lets anyone recompute them.
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDTUNE_", env_file=".env", extra="ignore")

    env: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path("./.medtune")

    database_url: str | None = None
    object_store_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_server_side_encryption: str | None = None  # "AES256" or "aws:kms"
    s3_kms_key_id: str | None = None

    broker_url: str | None = None
    result_backend: str | None = None
    # Longer than the longest training run, or Redis redelivers a running job to a second worker.
    broker_visibility_timeout_s: int = 48 * 3600

    mlflow_tracking_uri: str | None = None
    mlflow_ui_url: str | None = None

    deid_secret: str = DEFAULT_SECRET

    max_upload_bytes: int = 2 * 1024**3
    max_request_bytes: int = 4 * 1024**3
    max_zip_uncompressed_bytes: int = 8 * 1024**3
    max_zip_ratio: float = 200.0
    # Caps checked before the work they bound (platform_core.dicom.read.Caps): the bytes a Deflated
    # Explicit VR file may inflate to (unset: max_upload_bytes), Rows x Columns x frames x samples of
    # any image (a large CR or mammogram is under 25 Mpx), members per zip, images per predict request.
    max_inflated_bytes: int | None = Field(default=None, ge=1)
    max_pixels: int = Field(default=64_000_000, ge=1)
    max_zip_members: int = Field(default=50_000, ge=1)
    max_predict_instances: int = Field(default=64, ge=1, le=256)  # 256: PredictJson's own ceiling
    # Parts per multipart body (/files, STOW-RS): past it the body is refused with 413, counted as the
    # parts begin, so a body of many tiny parts costs no memory or work beyond the cap.
    max_multipart_parts: int = Field(default=10_000, ge=1)
    cors_origins: list[str] = Field(default_factory=list)
    # Per API key, per API process: predictions running at once and event streams open at once; past
    # either the API answers 429 with Retry-After. An open stream re-reads its key this often (seconds)
    # and ends once the key is revoked or its project deleted.
    max_concurrent_predictions_per_key: int = Field(default=4, ge=1)
    max_streams_per_key: int = Field(default=20, ge=1)
    stream_key_recheck_s: float = Field(default=30.0, gt=0, le=30)

    # How often the beat looks for running jobs whose worker stopped beating (and requeues them).
    stale_job_check_s: float = 60.0
    # Deliveries of one task (an image's pixel work, a job's run or validation, a batch prediction)
    # that may die with their worker process (killed, out of memory) before the work ends with reason
    # worker_crash instead of being redelivered again.
    max_task_attempts: int = 3
    # Jobs of one project that run at once; more stay `queued` and start as running ones end. 0: no limit.
    max_running_jobs_per_project: int = 2
    # Tests only: a worker task dies (os._exit) when it reaches an id listed in this file (worker/faults.py).
    test_crash_file: Path | None = None

    # PACS (platform_core.pacs): the DICOM listener's own AE title (C-ECHO, C-MOVE destination), where it
    # listens, and who may associate: entries "AE", "AE@host" or "*@host"; empty refuses every caller.
    # PACS node secrets are encrypted with a key derived (HKDF) from the de-identification secret.
    dicom_ae_title: str = Field(default="MEDTUNE", min_length=1, max_length=16)
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(default=11112, ge=1, le=65535)
    dicom_allowed_callers: list[str] = Field(default_factory=list)
    # An import whose worker stopped beating this long is sent again by the beat (it resumes).
    pacs_import_stale_s: float = Field(default=120.0, gt=0)

    adapter_cache_size: int = 16
    # bf16 autocast for serving where the hardware has it (CUDA bf16, AVX-512 BF16/AMX): 1.9-2.5x faster
    # on ViT-S/ResNet-50 here, probabilities within ~0.003 of fp32. Off: answers stay fp32-exact.
    inference_bf16: bool = False
    batch_window_ms: float = 5.0
    max_batch_size: int = 32
    # The deployed mode's inference tier (`medtune serve` replicas): comma-separated base URLs. Set, the
    # API forwards predictions there (routed by base model: platform_core.inference.routing) and loads
    # no model itself; unset, it serves in process. A token, when set, is what the API sends and the
    # tier requires (Bearer); keep the tier on a private network either way.
    inference_urls: str = ""
    inference_timeout_s: float = Field(default=120.0, gt=0)
    inference_token: str | None = None
    # The alias gate (platform_core.evaluation.compare): set, a version takes an alias only if its test
    # AUROC is shown non-inferior to the holder's by DeLong's test (lower 95% CI bound of the difference
    # above -margin, per label); unset, the gate compares point AUROCs.
    alias_noninferiority_margin: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        data = self.data_dir.resolve()
        self.data_dir = data
        if self.database_url is None:
            self.database_url = f"sqlite:///{data / 'medtune.sqlite'}"
        if self.object_store_url is None:
            self.object_store_url = f"file://{data / 'objects'}"
        if self.broker_url is None:
            self.broker_url = "filesystem://"
        if self.result_backend is None:
            self.result_backend = f"db+sqlite:///{data / 'celery-results.sqlite'}"
        if self.mlflow_tracking_uri is None:
            self.mlflow_tracking_uri = f"sqlite:///{data / 'mlflow.sqlite'}"
        return self

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url

    @property
    def inference_nodes(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.inference_urls.split(",") if u.strip()]

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    def resolved_secret(self) -> str:
        """The de-identification secret; embedded mode makes one once and keeps it (0600)."""
        if self.deid_secret != DEFAULT_SECRET:
            return _long_enough(self.deid_secret, "MEDTUNE_DEID_SECRET")
        if self.env == "production":
            raise RuntimeError(
                "MEDTUNE_DEID_SECRET must be set to a private value in production "
                "(it keys every pseudonym; losing or changing it splits patients across uploads)"
            )
        path = self.data_dir / SECRET_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return _long_enough(path.read_text().strip(), str(path))

    def check_startup(self) -> None:
        """Refuse to run a deployment that would pseudonymise with a default secret."""
        self.resolved_secret()


def _long_enough(secret: str, source: str) -> str:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise RuntimeError(
            f"the de-identification secret from {source} is {'empty' if not secret else 'too short'}: "
            f"it needs at least {MIN_SECRET_BYTES} bytes (make one with `openssl rand -hex 32`)"
        )
    return secret


def check_or_exit(settings: Settings | None = None) -> None:
    """For process entry points: a settings problem ends the process with its message, not a traceback."""
    try:
        (settings or get_settings()).check_startup()
    except RuntimeError as exc:
        sys.stderr.write(f"medtune: {exc}\n")
        raise SystemExit(2) from None


@lru_cache
def get_settings() -> Settings:
    return Settings()
