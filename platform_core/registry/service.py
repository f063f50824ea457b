"""Promote a job's checkpoint to a model version with a self-describing manifest; resolve references;
aliases with an AUROC gate; archive. Services flush, the caller commits."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from platform_core import tasks
from platform_core.artifacts import ADAPTER_FILE, CHECKPOINT_FILE, ModelManifest, store_manifest
from platform_core.db import outbox
from platform_core.errors import Conflict, Gone, Invalid, NotFound
from platform_core.ids import new_id
from platform_core.registry.models import BatchPrediction, ModelAlias, ModelVersion, RegisteredModel
from platform_core.registry.schemas import AliasSet, BatchCreate, ModelCreate
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.registry")

DEFAULT_ALIAS = "champion"
REF = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_\-]{0,99})(?::(?P<number>\d+)|@(?P<alias>[a-z][a-z0-9_\-]*))?$"
)
INFER_TASK = tasks.BATCH_PREDICTIONS
EVALUATE_TASK = tasks.EVALUATE_VERSION


# --- promotion --------------------------------------------------------------------------------


def promote(
    session: Session, store: ObjectStore, project_id: str, body: ModelCreate, tracking_uri: str | None = None
) -> ModelVersion:
    from platform_core.jobs import adapter
    from platform_core.jobs import repository as jobs
    from platform_core.splits.models import Split

    job = jobs.get_job(session, body.job_id, project_id)
    if job.status != "succeeded" or not job.adapter_key or not job.labels:
        raise Conflict(f"job {job.id} has not succeeded; only a finished job can be promoted", param="job_id")
    if job.data_erased:
        raise Conflict(f"job {job.id} trained on images erased since; it cannot be promoted", param="job_id")
    if adapter.method_of(job).type == "full":
        raise Invalid(
            "a fully fine-tuned model has no shared base to serve from; train with LoRA", param="job_id"
        )
    result = dict(job.result or {})
    best_epoch = int((job.best or {}).get("epoch") or result.get("best_epoch") or 0)
    if body.checkpoint == "best" or body.checkpoint == best_epoch:
        epoch = best_epoch
        data = store.get_bytes(f"{job.adapter_key}/{ADAPTER_FILE}")
        if hashlib.sha256(data).hexdigest() != job.adapter_sha256:
            raise Conflict(f"the adapter of job {job.id} no longer matches its recorded sha256")
        thresholds = dict(result.get("thresholds") or {})
        test_metrics: dict[str, Any] | None = {
            k: result[k] for k in ("macro", "per_label", "ci95", "n_test") if k in result
        }
    else:
        ckpt = jobs.checkpoint_at(session, job.id, int(body.checkpoint))
        if ckpt is None:
            raise NotFound(f"job {job.id} has no checkpoint for epoch {body.checkpoint}", param="checkpoint")
        epoch = ckpt.epoch
        data = store.get_bytes(f"{ckpt.object_prefix}/{CHECKPOINT_FILE}")
        if hashlib.sha256(data).hexdigest() != ckpt.sha256:
            raise Conflict(f"the checkpoint of epoch {epoch} no longer matches its recorded sha256")
        # Training evaluated its best epoch only: the infer worker evaluates this one (EVALUATE_TASK).
        thresholds, test_metrics = {}, None
    config = adapter.describe(session, job, job.labels, epoch=epoch, thresholds=thresholds,
                              adapter_sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
    split = session.get(Split, job.split_id) if job.split_id else None

    model = _get_or_create_model(session, project_id, body.name)
    model.latest_number += 1
    number = model.latest_number
    version_id = new_id("mv")
    prefix = f"models/{project_id}/{model.id}/{number}"
    macro = (test_metrics or {}).get("macro") or {}
    manifest = ModelManifest(
        adapter=config,
        id=version_id,
        model=body.name,
        version=number,
        prefix=prefix,
        thresholds_source="validation" if epoch == best_epoch else "pending",
        test_metrics=test_metrics,
        checkpoint_metric=job.checkpoint_metric,
        split_id=job.split_id,
        split_sha256=split.sha256 if split else None,
        dataset_id=job.dataset_id,
        dataset_version_id=job.dataset_version_id,
        mlflow_run_id=job.mlflow_run_id,
    )
    store.put_bytes(f"{prefix}/{ADAPTER_FILE}", data)
    store_manifest(store, manifest)
    version = ModelVersion(
        id=version_id,
        project_id=project_id,
        model_id=model.id,
        number=number,
        job_id=job.id,
        epoch=epoch,
        status="ready" if epoch == best_epoch else "evaluating",
        manifest=manifest.to_json(),
        prefix=prefix,
        adapter_sha256=config.adapter_sha256,
        test_auroc=macro.get("auroc"),
        data_erased=job.data_erased,
    )
    session.add(version)
    session.flush()
    if version.status == "evaluating":
        outbox.enqueue(session, EVALUATE_TASK, version.id)
    if tracking_uri:
        from platform_core.registry.tracking import register_version

        version.mlflow_version = register_version(
            tracking_uri, project_id, body.name, version, job.mlflow_run_id
        )
        session.flush()
    return version


def _get_or_create_model(session: Session, project_id: str, name: str) -> RegisteredModel:
    q = select(RegisteredModel).where(RegisteredModel.project_id == project_id, RegisteredModel.name == name)
    model = session.scalar(q.with_for_update())
    if model is not None:
        return model
    model = RegisteredModel(id=new_id("model"), project_id=project_id, name=name, latest_number=0)
    try:
        with session.begin_nested():
            session.add(model)
    except IntegrityError:  # created concurrently: use that one
        found = session.scalar(q.with_for_update())
        assert found is not None
        return found
    return model


# --- reading ----------------------------------------------------------------------------------


def get_model(session: Session, project_id: str, name: str) -> RegisteredModel:
    q = select(RegisteredModel).where(RegisteredModel.project_id == project_id, RegisteredModel.name == name)
    model = session.scalar(q)
    if model is None:
        raise NotFound(f"no model named '{name}'", param="model")
    return model


def list_models(
    session: Session, project_id: str, limit: int, after: str | None
) -> Sequence[RegisteredModel]:
    q = select(RegisteredModel).where(RegisteredModel.project_id == project_id)
    if after:
        q = q.where(RegisteredModel.id < after)
    return session.scalars(q.order_by(RegisteredModel.id.desc()).limit(limit)).all()


def list_versions(session: Session, model: RegisteredModel) -> Sequence[ModelVersion]:
    q = select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.number.desc())
    return session.scalars(q).all()


def aliases(session: Session, model: RegisteredModel) -> dict[str, str]:
    """alias -> version id."""
    q = select(ModelAlias).where(ModelAlias.model_id == model.id)
    return {a.alias: a.version_id for a in session.scalars(q)}


def version_by_number(session: Session, model: RegisteredModel, number: int) -> ModelVersion:
    q = select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.number == number)
    version = session.scalar(q)
    if version is None:
        raise NotFound(f"model '{model.name}' has no version {number}", param="version")
    return version


def resolve(
    session: Session, project_id: str, ref: str, serving: bool = True
) -> tuple[RegisteredModel, ModelVersion]:
    """`name` (its champion, else its latest ready version), `name:N` or `name@alias`.

    With `serving`, an archived version answers 410: it stopped serving but its record stays.
    """
    m = REF.match(ref)
    if m is None:
        raise NotFound(f"'{ref}' is not a model reference (name, name:N or name@alias)", param="model")
    model = get_model(session, project_id, m["name"])
    if m["number"]:
        version = version_by_number(session, model, int(m["number"]))
    else:
        alias = m["alias"] or DEFAULT_ALIAS
        version_id = aliases(session, model).get(alias)
        if version_id is not None:
            found = session.get(ModelVersion, version_id)
            assert found is not None
            version = found
        elif m["alias"]:
            raise NotFound(f"model '{model.name}' has no alias '{alias}'", param="model")
        else:
            q = select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.status == "ready")
            latest = session.scalar(q.order_by(ModelVersion.number.desc()).limit(1))
            if latest is None:
                if any(v.status == "evaluating" for v in list_versions(session, model)):
                    raise Conflict(f"no version of model '{model.name}' serves yet: being evaluated")
                raise Gone(f"every version of model '{model.name}' is archived", param="model")
            version = latest
    if serving and version.status == "archived":
        raise Gone(f"version {model.name}:{version.number} is archived and no longer serves", param="model")
    if serving and version.status == "evaluating":
        raise Conflict(
            f"version {model.name}:{version.number} is being evaluated (decision thresholds on validation, "
            "test metrics); it serves once that is done",
            param="model",
        )
    return model, version


# --- aliases and archiving ----------------------------------------------------------------------


# (holder, challenger) -> None, raising to refuse: replaces the point-AUROC check (evaluation.compare).
AliasGate = Callable[[ModelVersion, ModelVersion], None]


def set_alias(
    session: Session, project_id: str, name: str, alias: str, body: AliasSet, gate: AliasGate | None = None
) -> ModelAlias:
    model = get_model(session, project_id, name)
    session.scalar(select(RegisteredModel).where(RegisteredModel.id == model.id).with_for_update())
    version = version_by_number(session, model, body.version)
    if version.status == "archived":
        raise Gone(f"version {name}:{body.version} is archived", param="version")
    if version.data_erased:
        raise Conflict(
            f"version {name}:{body.version} was trained on images erased since; it cannot take an alias "
            "(train a new job on a new split and promote that)",
            param="version",
        )
    current = session.scalar(
        select(ModelAlias).where(ModelAlias.model_id == model.id, ModelAlias.alias == alias)
    )
    if current is not None and current.version_id != version.id and not body.force:
        holder = session.get(ModelVersion, current.version_id)
        if holder is not None and holder.status == "ready" and gate is not None:
            gate(holder, version)
        elif (
            holder is not None and holder.status == "ready" and _worse(version.test_auroc, holder.test_auroc)
        ):
            raise Conflict(
                f"version {body.version} has a lower test AUROC ({_fmt(version.test_auroc)}) than "
                f"{name}:{holder.number} ({_fmt(holder.test_auroc)}) which holds '{alias}'; "
                "send force: true to move it anyway",
                param="force",
            )
    if current is None:
        current = ModelAlias(id=new_id("alias"), model_id=model.id, alias=alias, version_id=version.id)
        session.add(current)
    else:
        current.version_id = version.id
    session.flush()
    return current


def _worse(new: float | None, old: float | None) -> bool:
    if old is None:
        return False
    return new is None or new < old


def _fmt(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.3f}"


def archive(session: Session, project_id: str, name: str, number: int) -> ModelVersion:
    model = get_model(session, project_id, name)
    version = version_by_number(session, model, number)
    if version.status != "archived":
        version.status = "archived"
        version.archived_at = datetime.now(UTC)
        for alias in session.scalars(select(ModelAlias).where(ModelAlias.version_id == version.id)):
            session.delete(alias)
    session.flush()
    return version


def version_aliases(session: Session, version: ModelVersion) -> list[str]:
    q = select(ModelAlias.alias).where(ModelAlias.version_id == version.id).order_by(ModelAlias.alias)
    return list(session.scalars(q))


# --- batch predictions --------------------------------------------------------------------------


def create_batch(session: Session, project_id: str, ref: str, body: BatchCreate) -> BatchPrediction:
    from platform_core.splits import service as splits

    _model, version = resolve(session, project_id, ref)
    splits.get_split(session, project_id, body.dataset_id, body.split_id)
    batch = BatchPrediction(
        id=new_id("bpred"),
        project_id=project_id,
        version_id=version.id,
        dataset_id=body.dataset_id,
        split_id=body.split_id,
        split=body.split,
        status="queued",
    )
    session.add(batch)
    session.flush()
    outbox.enqueue(session, INFER_TASK, batch.id)
    return batch


def get_batch(session: Session, project_id: str, batch_id: str) -> BatchPrediction:
    batch = session.get(BatchPrediction, batch_id)
    if batch is None or batch.project_id != project_id:
        raise NotFound(f"no batch prediction {batch_id}")
    return batch


def count_versions(session: Session, model: RegisteredModel) -> int:
    return int(session.scalar(select(func.count()).where(ModelVersion.model_id == model.id)) or 0)
