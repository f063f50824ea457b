"""A job's AdapterConfig (platform_core.artifacts), from the job, its catalog entry, its dataset's
pixel settings and its base weights: the runner writes it next to the adapter, and the registry builds
a model version's manifest from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from platform_core.artifacts import DEFAULT_THRESHOLD, AdapterConfig, BaseWeights, Method, Preprocessing
from platform_core.jobs import repository as repo
from platform_core.jobs.models import Job
from platform_core.training import catalog
from platform_core.training import weights as W


def method_of(job: Job) -> Method:
    """`Job.method` as stored (`{"type", "lora": {"r", "alpha", "dropout"}}`, every value resolved)."""
    return Method.from_json(job.method)


def base_of(session: Session, job: Job, entry: catalog.BackboneEntry) -> BaseWeights:
    object_key = fmt = seed = None
    if job.weights.startswith(W.BASE_MODEL_PREFIX):
        registered = repo.get_base_model(session, job.weights, job.project_id)
        object_key, fmt = registered.object_key, registered.format
    elif job.weights == W.RANDOM:
        seed = int(job.seed)  # training seeds torch with it right before building the backbone
    return BaseWeights(
        entry.name, entry.arch, entry.family, job.weights, job.weights_sha256, object_key, fmt, seed
    )


def preprocessing_of(session: Session, job: Job, entry: catalog.BackboneEntry) -> Preprocessing:
    from platform_core.datasets import repository as datasets
    from platform_core.datasets.schemas import DatasetOptions

    dataset = datasets.find_dataset(session, job.dataset_id)
    opts = DatasetOptions.model_validate(dataset.options if dataset else {})
    return Preprocessing(
        cache_size=opts.cache_size,
        image_size=int((job.resolved or {}).get("image_size") or entry.input_size),
        mean=entry.mean,
        std=entry.std,
        min_image_size=opts.min_image_size,
        modalities=tuple(opts.modalities),
        burned_in_annotation=opts.burned_in_annotation,
    )


def describe(
    session: Session,
    job: Job,
    labels: Sequence[str],
    *,
    epoch: int,
    thresholds: Mapping[str, float],
    adapter_sha256: str,
) -> AdapterConfig:
    """The adapter of `job`'s epoch `epoch`; a label without a threshold gets the default one."""
    entry = catalog.get(job.base_model)
    labels = tuple(labels)
    return AdapterConfig(
        base=base_of(session, job, entry),
        method=method_of(job),
        lora_targets=entry.lora_targets,
        classifier=entry.classifier,
        labels=labels,
        preprocessing=preprocessing_of(session, job, entry),
        thresholds={label: float(thresholds.get(label, DEFAULT_THRESHOLD)) for label in labels},
        adapter_sha256=adapter_sha256,
        job_id=job.id,
        epoch=epoch,
    )
