"""Model versions in the MLflow Model Registry: one registered model per project and name, one MLflow
version per medtune version, pointing at the training run; aliases mirrored. Tracking never fails a
promotion: errors are logged and the version records no MLflow number."""

from __future__ import annotations

import logging

from platform_core.registry.models import ModelVersion

log = logging.getLogger("medtune.registry")


def mlflow_name(project_id: str, name: str) -> str:
    return f"{project_id}.{name}"


def register_version(
    tracking_uri: str, project_id: str, name: str, version: ModelVersion, run_id: str | None
) -> str | None:
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        registered = mlflow_name(project_id, name)
        try:
            client.create_registered_model(registered, tags={"medtune.project_id": project_id})
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
                raise
        source = f"runs:/{run_id}/adapter" if run_id else f"medtune:{version.prefix}"
        mv = client.create_model_version(
            registered,
            source=source,
            run_id=run_id,
            tags={
                "medtune.version_id": version.id,
                "medtune.version": str(version.number),
                "medtune.adapter_sha256": version.adapter_sha256,
                "medtune.base_model": version.model_manifest.adapter.base.backbone,
                "medtune.test_auroc": "" if version.test_auroc is None else f"{version.test_auroc:.6f}",
            },
            description=f"medtune {name}:{version.number} (job {version.job_id}, epoch {version.epoch})",
        )
        return str(mv.version)
    except Exception as exc:
        log.warning(
            "MLflow registration of %s:%s failed: %s: %s", name, version.number, type(exc).__name__, exc
        )
        return None


def set_alias(tracking_uri: str, project_id: str, name: str, alias: str, mlflow_version: str | None) -> None:
    if mlflow_version is None:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        client.set_registered_model_alias(mlflow_name(project_id, name), alias, mlflow_version)
    except Exception as exc:
        log.warning("MLflow alias %s of %s failed: %s", alias, name, exc)
