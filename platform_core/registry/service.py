"""Promote a job's checkpoint to a model version with a self-describing manifest; resolve references;
aliases with an AUROC gate; archive; batch predictions. Queries live in repository.py, responses in
views.py. Services flush, the caller commits."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from platform_core import tasks
from platform_core.artifacts import ADAPTER_FILE, CHECKPOINT_FILE, ModelManifest, store_manifest
from platform_core.db import outbox
from platform_core.errors import Conflict, Gone, Invalid, NotFound
from platform_core.ids import new_id
from platform_core.registry import operating_point, repository
from platform_core.registry.models import BatchPrediction, ModelAlias, ModelVersion, RegisteredModel
from platform_core.registry.schemas import ALIAS_PATTERN, AliasSet, BatchCreate, ModelCreate
from platform_core.storage import ObjectStore

if TYPE_CHECKING:
    from platform_core.jobs.models import Job

log = logging.getLogger("medtune.registry")

DEFAULT_ALIAS = "champion"
REF = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_\-]{0,99})(?::(?P<number>\d+)|@(?P<alias>[a-z][a-z0-9_\-]*))?$"
)
INFER_TASK = tasks.BATCH_PREDICTIONS
EVALUATE_TASK = tasks.EVALUATE_VERSION


# --- promotion --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chosen:
    """The weights a promotion takes from its job: the best epoch's adapter, or one checkpoint."""

    epoch: int
    data: bytes
    best: bool  # the best epoch: training set its thresholds and tested it, so it serves at once
    thresholds: dict[str, Any]
    test_metrics: dict[str, Any] | None


def promote(
    session: Session, store: ObjectStore, project_id: str, body: ModelCreate, tracking_uri: str | None = None
) -> ModelVersion:
    """Copy the chosen weights under the model, write the manifest, record the version; a version other
    than the best epoch is evaluated by the infer worker (EVALUATE_TASK) before it serves."""
    job = promotable_job(session, project_id, body.job_id)
    chosen = choose_weights(session, store, job, body.checkpoint)
    model = repository.get_or_create_model(session, project_id, body.name)
    model.latest_number += 1
    manifest = build_manifest(session, job, chosen, body, model)
    store.put_bytes(f"{manifest.prefix}/{ADAPTER_FILE}", chosen.data)
    store_manifest(store, manifest)
    version = record_version(session, model, job, manifest, chosen)
    if tracking_uri:
        from platform_core.registry.tracking import register_version

        version.mlflow_version = register_version(
            tracking_uri, project_id, body.name, version, job.mlflow_run_id
        )
        session.flush()
    return version


def promotable_job(session: Session, project_id: str, job_id: str) -> Job:
    from platform_core.jobs import adapter
    from platform_core.jobs import repository as jobs

    job = jobs.get_job(session, job_id, project_id)
    if job.status != "succeeded" or not job.adapter_key or not job.labels:
        raise Conflict(f"job {job.id} has not succeeded; only a finished job can be promoted", param="job_id")
    if job.data_erased:
        raise Conflict(f"job {job.id} trained on images erased since; it cannot be promoted", param="job_id")
    if adapter.method_of(job).type == "full":
        raise Invalid(
            "a fully fine-tuned model has no shared base to serve from; train with LoRA", param="job_id"
        )
    return job


def choose_weights(session: Session, store: ObjectStore, job: Job, checkpoint: str | int) -> Chosen:
    """The bytes, checked against the sha256 recorded when training wrote them."""
    from platform_core.jobs import repository as jobs

    result = job.result or {}
    best_epoch = int((job.best or {}).get("epoch") or result.get("best_epoch") or 0)
    if checkpoint == "best" or checkpoint == best_epoch:
        data = store.get_bytes(f"{job.adapter_key}/{ADAPTER_FILE}")
        if hashlib.sha256(data).hexdigest() != job.adapter_sha256:
            raise Conflict(f"the adapter of job {job.id} no longer matches its recorded sha256")
        metrics: dict[str, Any] = {
            k: result[k] for k in ("macro", "per_label", "ci95", "n_test") if k in result
        }
        return Chosen(best_epoch, data, True, dict(result.get("thresholds") or {}), metrics)
    ckpt = jobs.checkpoint_at(session, job.id, int(checkpoint))
    if ckpt is None:
        raise NotFound(f"job {job.id} has no checkpoint for epoch {checkpoint}", param="checkpoint")
    data = store.get_bytes(f"{ckpt.object_prefix}/{CHECKPOINT_FILE}")
    if hashlib.sha256(data).hexdigest() != ckpt.sha256:
        raise Conflict(f"the checkpoint of epoch {ckpt.epoch} no longer matches its recorded sha256")
    # Training evaluated its best epoch only: the infer worker evaluates this one.
    return Chosen(ckpt.epoch, data, False, {}, None)


def build_manifest(
    session: Session, job: Job, chosen: Chosen, body: ModelCreate, model: RegisteredModel
) -> ModelManifest:
    """The next version's manifest: the job's adapter config plus identity, split, dataset and metrics."""
    from platform_core.jobs import adapter
    from platform_core.splits import repository as splits

    assert job.labels is not None  # promotable_job checked it
    config = adapter.describe(session, job, job.labels, epoch=chosen.epoch, thresholds=chosen.thresholds,
                              adapter_sha256=hashlib.sha256(chosen.data).hexdigest())  # fmt: skip
    split = splits.find_split(session, job.split_id)
    number = model.latest_number
    return ModelManifest(
        adapter=config,
        id=new_id("mv"),
        model=body.name,
        version=number,
        prefix=f"models/{model.project_id}/{model.id}/{number}",
        thresholds_source="validation" if chosen.best else "pending",
        test_metrics=chosen.test_metrics,
        checkpoint_metric=job.checkpoint_metric,
        split_id=job.split_id,
        split_sha256=split.sha256 if split else None,
        dataset_id=job.dataset_id,
        dataset_version_id=job.dataset_version_id,
        mlflow_run_id=job.mlflow_run_id,
        **operating_point.manifest_fields(
            job.result or {}, job.labels, body.operating_point, body.calibration, chosen.best
        ),
    )


def record_version(
    session: Session, model: RegisteredModel, job: Job, manifest: ModelManifest, chosen: Chosen
) -> ModelVersion:
    macro = (chosen.test_metrics or {}).get("macro") or {}
    version = ModelVersion(
        id=manifest.id,
        project_id=model.project_id,
        model_id=model.id,
        number=manifest.version,
        job_id=job.id,
        epoch=chosen.epoch,
        status="ready" if chosen.best else "evaluating",
        manifest=manifest.to_json(),
        prefix=manifest.prefix,
        adapter_sha256=manifest.adapter.adapter_sha256,
        test_auroc=macro.get("auroc"),
        data_erased=job.data_erased,
    )
    session.add(version)
    session.flush()
    if version.status == "evaluating":
        outbox.enqueue(session, EVALUATE_TASK, version.id)
    return version


# --- references -------------------------------------------------------------------------------


def resolve(
    session: Session, project_id: str, ref: str, serving: bool = True
) -> tuple[RegisteredModel, ModelVersion]:
    """`name` (its champion, else its latest ready version), `name:N` or `name@alias`.

    With `serving`, an archived version answers 410: it stopped serving but its record stays.
    """
    m = REF.match(ref)
    if m is None:
        raise NotFound(f"'{ref}' is not a model reference (name, name:N or name@alias)", param="model")
    model = repository.get_model(session, project_id, m["name"])
    if m["number"]:
        version = repository.version_by_number(session, model, int(m["number"]))
    else:
        version = _by_alias(session, model, m["alias"])
    if serving and version.status == "archived":
        raise Gone(f"version {model.name}:{version.number} is archived and no longer serves", param="model")
    if serving and version.status == "evaluating":
        raise Conflict(
            f"version {model.name}:{version.number} is being evaluated (decision thresholds on validation, "
            "test metrics); it serves once that is done",
            param="model",
        )
    return model, version


def _by_alias(session: Session, model: RegisteredModel, alias: str | None) -> ModelVersion:
    """The version holding `alias`; without one, the champion, else the latest ready version."""
    version_id = repository.aliases(session, model).get(alias or DEFAULT_ALIAS)
    if version_id is not None:
        found = repository.get_version(session, version_id)
        assert found is not None
        return found
    if alias:
        raise NotFound(f"model '{model.name}' has no alias '{alias}'", param="model")
    latest = repository.latest_ready(session, model)
    if latest is None:
        if repository.has_status(session, model, "evaluating"):
            raise Conflict(f"no version of model '{model.name}' serves yet: being evaluated")
        raise Gone(f"every version of model '{model.name}' is archived", param="model")
    return latest


# --- aliases and archiving ----------------------------------------------------------------------


# (holder, challenger) -> None, raising to refuse: replaces the point-AUROC check (evaluation.compare).
AliasGate = Callable[[ModelVersion, ModelVersion], None]


def assign_alias(
    session: Session,
    store: ObjectStore,
    project_id: str,
    name: str,
    alias: str,
    body: AliasSet,
    margin: float | None = None,
    tracking_uri: str | None = None,
) -> ModelAlias:
    """set_alias behind the configured gate (non-inferiority within `margin`, else the AUROC check),
    mirrored to MLflow's registry when one is configured."""
    if not re.match(ALIAS_PATTERN, alias):
        raise Invalid(
            "an alias is lowercase letters, digits, '-' and '_', starting with a letter", param="alias"
        )
    gate = None
    if margin is not None:
        from platform_core.evaluation.compare import noninferiority_gate

        gate = noninferiority_gate(
            session, store, repository.get_model(session, project_id, name), alias, margin
        )
    record = set_alias(session, project_id, name, alias, body, gate)
    if tracking_uri:
        from platform_core.registry import tracking

        version = repository.get_version(session, record.version_id)
        assert version is not None
        tracking.set_alias(tracking_uri, project_id, name, alias, version.mlflow_version)
    return record


def set_alias(
    session: Session, project_id: str, name: str, alias: str, body: AliasSet, gate: AliasGate | None = None
) -> ModelAlias:
    model = repository.get_model(session, project_id, name)
    repository.lock_model(session, model)
    version = repository.version_by_number(session, model, body.version)
    if version.status == "archived":
        raise Gone(f"version {name}:{body.version} is archived", param="version")
    if version.data_erased:
        raise Conflict(
            f"version {name}:{body.version} was trained on images erased since; it cannot take an alias "
            "(train a new job on a new split and promote that)",
            param="version",
        )
    current = repository.find_alias(session, model, alias)
    if current is not None and current.version_id != version.id and not body.force:
        holder = repository.get_version(session, current.version_id)
        if holder is not None and holder.status == "ready":
            (gate or _auroc_gate(name, alias))(holder, version)
    if current is None:
        current = ModelAlias(id=new_id("alias"), model_id=model.id, alias=alias, version_id=version.id)
        session.add(current)
    else:
        current.version_id = version.id
    session.flush()
    return current


def _auroc_gate(name: str, alias: str) -> AliasGate:
    """Without a non-inferiority margin: a challenger with a lower point test AUROC is refused."""

    def gate(holder: ModelVersion, challenger: ModelVersion) -> None:
        if _worse(challenger.test_auroc, holder.test_auroc):
            raise Conflict(
                f"version {challenger.number} has a lower test AUROC ({_fmt(challenger.test_auroc)}) than "
                f"{name}:{holder.number} ({_fmt(holder.test_auroc)}) which holds '{alias}'; "
                "send force: true to move it anyway",
                param="force",
            )

    return gate


def _worse(new: float | None, old: float | None) -> bool:
    if old is None:
        return False
    return new is None or new < old


def _fmt(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.3f}"


def archive(session: Session, project_id: str, name: str, number: int) -> ModelVersion:
    model = repository.get_model(session, project_id, name)
    version = repository.version_by_number(session, model, number)
    if version.status != "archived":
        version.status = "archived"
        version.archived_at = datetime.now(UTC)
        repository.drop_aliases(session, version)
    session.flush()
    return version


# --- batch predictions --------------------------------------------------------------------------


def create_batch(session: Session, project_id: str, ref: str, body: BatchCreate) -> BatchPrediction:
    from platform_core.datasets import repository as datasets
    from platform_core.splits import repository as splits

    _model, version = resolve(session, project_id, ref)
    if datasets.get_dataset(session, project_id, body.dataset_id) is None:
        raise NotFound(f"no dataset {body.dataset_id}")
    splits.get_split(session, body.split_id, project_id, body.dataset_id)
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
