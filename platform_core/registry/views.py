"""Registered models, their versions and batch predictions as the API shows them, and their pages.
Whether a version is loaded is asked of the serving facade, which imports no torch."""

from __future__ import annotations

from sqlalchemy.orm import Session

from platform_core.errors import Gone
from platform_core.inference import serving
from platform_core.pagination import Page
from platform_core.registry import repository, service
from platform_core.registry.models import ModelVersion, RegisteredModel
from platform_core.registry.schemas import BatchOut, ModelDetail, ModelOut, VersionOut


def version_out(session: Session, v: ModelVersion, model: RegisteredModel | None = None) -> VersionOut:
    name = (model or repository.model_by_id(session, v.model_id)).name
    return VersionOut(
        id=v.id,
        model=name,
        version=v.number,
        ref=f"{name}:{v.number}",
        status=v.status,
        job_id=v.job_id,
        epoch=v.epoch,
        aliases=repository.version_aliases(session, v),
        test_auroc=v.test_auroc,
        mlflow_version=v.mlflow_version,
        loaded=serving.loaded(v.id),
        manifest=v.manifest,
        created_at=v.created_at,
        archived_at=v.archived_at,
        data_erased=v.data_erased,
    )


def model_out(session: Session, model: RegisteredModel) -> ModelOut:
    return ModelOut(
        id=model.id,
        name=model.name,
        latest_version=model.latest_number,
        aliases=repository.alias_numbers(session, model),
        created_at=model.created_at,
    )


def model_detail(session: Session, project_id: str, ref: str) -> ModelDetail:
    """A model by name (with the version `name` serves), or one version by `name:N` / `name@alias`."""
    try:
        model, version = service.resolve(session, project_id, ref, serving=False)
    except Gone:
        if ":" in ref or "@" in ref:
            raise
        # A model whose versions are all archived still exists; it just serves nothing.
        model, version = repository.get_model(session, project_id, ref), None
    serving_version = version if version is not None and version.status == "ready" else None
    return ModelDetail(
        **model_out(session, model).model_dump(),
        serving=version_out(session, serving_version, model) if serving_version else None,
    )


def named_model(session: Session, project_id: str, name: str) -> ModelOut:
    return model_out(session, repository.get_model(session, project_id, name))


def named_version(session: Session, project_id: str, name: str, number: int) -> VersionOut:
    model = repository.get_model(session, project_id, name)
    return version_out(session, repository.version_by_number(session, model, number), model)


def list_models(session: Session, project_id: str, limit: int, after: str | None) -> Page[ModelOut]:
    rows = repository.list_models(session, project_id, limit + 1, after)
    return Page.build(rows, limit, lambda m: model_out(session, m))


def list_versions(
    session: Session, project_id: str, name: str, limit: int, after: str | None
) -> Page[VersionOut]:
    """Newest first; `after` pages towards older versions."""
    model = repository.get_model(session, project_id, name)
    rows = repository.list_versions(session, model, limit + 1, after)
    return Page.build(rows, limit, lambda v: version_out(session, v, model))


def batch_out(session: Session, project_id: str, batch_id: str) -> BatchOut:
    b = repository.get_batch(session, project_id, batch_id)
    v = repository.get_version(session, b.version_id)
    assert v is not None
    return BatchOut(
        id=b.id,
        model=v.model_manifest.model,
        version=v.number,
        dataset_id=b.dataset_id,
        split_id=b.split_id,
        split=b.split,
        status=b.status,
        count=b.count,
        metrics=b.metrics,
        output_key=b.output_key,
        error=b.error,
        created_at=b.created_at,
        finished_at=b.finished_at,
    )
