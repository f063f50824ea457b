"""Queries for registered models, their versions, aliases and batch predictions; the service decides, this
reads and writes. Other domains read the registry through here."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from platform_core.errors import NotFound
from platform_core.ids import new_id
from platform_core.registry.models import BatchPrediction, ModelAlias, ModelVersion, RegisteredModel

# --- models -----------------------------------------------------------------------------------


def find_model(session: Session, project_id: str, name: str, lock: bool = False) -> RegisteredModel | None:
    q = select(RegisteredModel).where(RegisteredModel.project_id == project_id, RegisteredModel.name == name)
    return session.scalar(q.with_for_update() if lock else q)


def get_model(session: Session, project_id: str, name: str) -> RegisteredModel:
    model = find_model(session, project_id, name)
    if model is None:
        raise NotFound(f"no model named '{name}'", param="model")
    return model


def model_by_id(session: Session, model_id: str) -> RegisteredModel:
    model = session.get(RegisteredModel, model_id)
    assert model is not None  # versions reference their model (foreign key)
    return model


def lock_model(session: Session, model: RegisteredModel) -> None:
    """Serialises alias changes (and numbering) on one model: the row lock is held to the commit."""
    session.scalar(select(RegisteredModel).where(RegisteredModel.id == model.id).with_for_update())


def get_or_create_model(session: Session, project_id: str, name: str) -> RegisteredModel:
    """The model, locked; created when new. A model created concurrently under the same name is used."""
    model = find_model(session, project_id, name, lock=True)
    if model is not None:
        return model
    model = RegisteredModel(id=new_id("model"), project_id=project_id, name=name, latest_number=0)
    try:
        with session.begin_nested():
            session.add(model)
    except IntegrityError:
        found = find_model(session, project_id, name, lock=True)
        assert found is not None
        return found
    return model


def list_models(
    session: Session, project_id: str, limit: int, after: str | None
) -> Sequence[RegisteredModel]:
    q = select(RegisteredModel).where(RegisteredModel.project_id == project_id)
    if after:
        q = q.where(RegisteredModel.id < after)
    return session.scalars(q.order_by(RegisteredModel.id.desc()).limit(limit)).all()


# --- versions ---------------------------------------------------------------------------------


def get_version(session: Session, version_id: str) -> ModelVersion | None:
    return session.get(ModelVersion, version_id)


def version_by_number(session: Session, model: RegisteredModel, number: int) -> ModelVersion:
    q = select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.number == number)
    version = session.scalar(q)
    if version is None:
        raise NotFound(f"model '{model.name}' has no version {number}", param="version")
    return version


def list_versions(
    session: Session, model: RegisteredModel, limit: int | None = None, after: str | None = None
) -> Sequence[ModelVersion]:
    """Newest number first; `after` (a version id) keeps the older ones."""
    q = select(ModelVersion).where(ModelVersion.model_id == model.id)
    if after:
        cursor = select(ModelVersion.number).where(ModelVersion.id == after).scalar_subquery()
        q = q.where(ModelVersion.number < cursor)
    return session.scalars(q.order_by(ModelVersion.number.desc()).limit(limit)).all()


def latest_ready(session: Session, model: RegisteredModel) -> ModelVersion | None:
    q = select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.status == "ready")
    return session.scalar(q.order_by(ModelVersion.number.desc()).limit(1))


def has_status(session: Session, model: RegisteredModel, status: str) -> bool:
    q = select(ModelVersion.id).where(ModelVersion.model_id == model.id, ModelVersion.status == status)
    return session.scalar(q.limit(1)) is not None


def ready_by_ae_title(session: Session, ae_title: str) -> tuple[ModelVersion, str] | None:
    """The ready version that answers studies sent to `ae_title`, with its model's name."""
    row = session.execute(
        select(ModelVersion, RegisteredModel.name)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(ModelVersion.dicom_ae_title == ae_title, ModelVersion.status == "ready")
    ).first()
    return None if row is None else (row[0], row[1])


# --- aliases ----------------------------------------------------------------------------------


def ae_title_used(session: Session, ae_title: str) -> bool:
    """Whether any model version, ready or not, answers to this called AE title."""
    return bool(session.scalar(select(func.count()).where(ModelVersion.dicom_ae_title == ae_title)))


def aliases(session: Session, model: RegisteredModel) -> dict[str, str]:
    """alias -> version id."""
    q = select(ModelAlias).where(ModelAlias.model_id == model.id)
    return {a.alias: a.version_id for a in session.scalars(q)}


def alias_numbers(session: Session, model: RegisteredModel) -> dict[str, int]:
    """alias -> version number."""
    q = (
        select(ModelAlias.alias, ModelVersion.number)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.model_id == model.id)
    )
    return {alias: number for alias, number in session.execute(q)}


def find_alias(session: Session, model: RegisteredModel, alias: str) -> ModelAlias | None:
    return session.scalar(
        select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)
    )


def version_aliases(session: Session, version: ModelVersion) -> list[str]:
    q = select(ModelAlias.alias).where(ModelAlias.version_id == version.id).order_by(ModelAlias.alias)
    return list(session.scalars(q))


def drop_aliases(session: Session, version: ModelVersion) -> None:
    for alias in session.scalars(select(ModelAlias).where(ModelAlias.version_id == version.id)):
        session.delete(alias)


# --- batch predictions ------------------------------------------------------------------------


def get_batch(session: Session, project_id: str, batch_id: str) -> BatchPrediction:
    batch = session.get(BatchPrediction, batch_id)
    if batch is None or batch.project_id != project_id:
        raise NotFound(f"no batch prediction {batch_id}")
    return batch


def find_batch(session: Session, batch_id: str) -> BatchPrediction | None:
    """The batch prediction by id alone, for the worker that runs it."""
    return session.get(BatchPrediction, batch_id)
