"""Validating a job before it runs (a task on the CPU queue): its split, its hyperparameters with every
"auto" resolved, and its base weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from platform_core import tasks
from platform_core.db import outbox
from platform_core.errors import Invalid, PlatformError
from platform_core.jobs import repository as repo
from platform_core.jobs.models import Job
from platform_core.jobs.status import error_code, fail, set_status
from platform_core.storage import ObjectStore
from platform_core.training import catalog
from platform_core.training import weights as W


def resolve_hyperparameters(
    requested: dict[str, Any],
    method: dict[str, Any],
    entry: catalog.BackboneEntry,
    n_train: int,
    positive_fraction: Sequence[float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fill every "auto" with a value chosen from the base model, the method and the training set."""
    kind = method["type"]
    hp = dict(requested)

    def pick(name: str, value: Any) -> None:
        if hp.get(name, "auto") == "auto":
            hp[name] = value

    pick("epochs", {"lora": 10, "full": 5, "linear_probe": 20}[kind])
    pick("batch_size", int(min(32, max(4, n_train // 8))))
    pick("learning_rate", {"lora": 5e-4, "full": 5e-5, "linear_probe": 1e-3}[kind])
    pick("weight_decay", 0.01 if kind != "linear_probe" else 0.0)
    pick("warmup_epochs", 1.0 if hp["epochs"] >= 5 else 0.0)
    pick("early_stopping_patience", max(2, hp["epochs"] // 3))
    pick("image_size", entry.input_size)
    pick("augmentation", "light")
    pick("class_weighting", any(p < 0.25 for p in positive_fraction))
    pick("gradient_checkpointing", kind == "full" and entry.family == "vit" and entry.input_size > 224)
    lora = dict(method.get("lora") or {})
    for name, value in (("r", 8), ("alpha", 16), ("dropout", 0.1)):
        if lora.get(name, "auto") == "auto":
            lora[name] = value
    if hp["batch_size"] < 1 or hp["epochs"] < 1 or hp["image_size"] < 16:
        raise Invalid(
            "epochs, batch_size and image_size must be positive (image_size >= 16)", param="hyperparameters"
        )
    return hp, {"type": kind, "lora": lora}


def training_rows(session: Session, job: Job) -> tuple[Any, list[str]]:
    """The job's verified split and label names; makes the split first when the job asked for one."""
    from platform_core.erasure.marks import split_erased
    from platform_core.splits import checks, repository
    from platform_core.splits import service as splits

    if job.split_id is None:
        request = job.split_request or {}
        split = splits.create_split(
            session,
            job.project_id,
            job.dataset_id,
            seed=request.get("seed"),
            fractions=request.get("fractions"),
        )
        job.split_id = split.id
        session.flush()
    record = repository.get_split(session, job.split_id, job.project_id)
    if record.erased_members:
        raise split_erased(record.id, record.erased_members)
    verified = checks.verify(session, job.split_id, job.project_id)
    version = repository.find_version(session, verified.record.dataset_version_id)
    assert version is not None
    job.dataset_version_id = version.id
    return verified, [str(n) for n in version.label_names]


def validate(session: Session, job_id: str, store: ObjectStore) -> None:
    job = repo.get_job(session, job_id, lock=True)
    if job.status != "validating_files":
        return
    if job.cancel_requested:
        set_status(session, job, "cancelled", "cancelled before validation")
        return
    try:
        entry = catalog.get(job.base_model)
        verified, labels = training_rows(session, job)
        train = [r for r in verified.rows if verified.assignment.get(r.image_id) == "train"]
        if job.train_subset is not None:
            subset = set(job.train_subset)
            train = [r for r in train if r.image_id in subset]
        if not train or not any(verified.assignment.get(r.image_id) == "val" for r in verified.rows):
            raise Invalid("the split has no training or no validation images", param="split")
        positive = [sum(1 for r in train if r.labels.get(n) == 1) / len(train) for n in labels]
        job.labels = labels
        job.resolved, job.method = resolve_hyperparameters(
            job.hyperparameters, job.method, entry, len(train), positive
        )
        check_weights(session, job, entry, store)
    except PlatformError as exc:
        fail(session, job, error_code(exc), exc.message, exc.param)
        return
    set_status(session, job, "queued", f"validated: {len(train)} training images, labels {', '.join(labels)}")
    outbox.enqueue(session, tasks.RUN_JOB, job.id)


def check_weights(session: Session, job: Job, entry: catalog.BackboneEntry, store: ObjectStore) -> None:
    if job.weights == W.RANDOM:
        job.weights_sha256 = None
        return
    if job.weights.startswith(W.BASE_MODEL_PREFIX):
        registered = repo.get_base_model(session, job.weights, job.project_id)
        if not store.exists(registered.object_key):
            raise W.WeightsUnavailable(
                f"the weights file of {registered.id} is missing from the object store"
            )
        job.weights_sha256 = registered.sha256
        return
    if not (W.pretrained_cached(entry) or hub_reachable(entry)):
        raise W.WeightsUnavailable(
            W.unavailable_message(entry, "not in the local cache and the hub is unreachable")
        )


def hub_reachable(entry: catalog.BackboneEntry) -> bool:
    return W.reachable(entry)
