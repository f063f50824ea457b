"""The steps before and during training: open the run's context, load samples, build the trainer, start
tracking, fit. Each reads the `RunContext` and commits what it changes in a short transaction."""

from __future__ import annotations

from typing import Any

import torch

from platform_core.datasets import repository as datasets
from platform_core.db.session import unit_of_work
from platform_core.jobs import adapter, status, validation
from platform_core.jobs import repository as repo
from platform_core.jobs.run.context import (
    CheckpointRef,
    Fitting,
    RunContext,
    RunHandle,
    SplitData,
    TrackerFactory,
)
from platform_core.jobs.run.hooks import Hooks
from platform_core.splits import repository as splits
from platform_core.training import catalog, checkpoints
from platform_core.training import data as D
from platform_core.training import weights as W
from platform_core.training.loop import LoopConfig, LoopOutcome, Trainer
from platform_core.training.network import build_model

PARTS = ("train", "val", "test")


def open_context(handle: RunHandle) -> RunContext:
    """Read the job, its verified split, its registered base weights and its last checkpoint."""
    with handle.sessions() as s:
        job = repo.get_job(s, handle.job_id)
        verified, labels = validation.training_rows(s, job)
        registered = (
            repo.get_base_model(s, job.weights, job.project_id)
            if job.weights.startswith(W.BASE_MODEL_PREFIX)
            else None
        )
        last = repo.last_checkpoint(s, job.id)
        last_ref = (
            CheckpointRef(last.object_prefix, last.sha256, last.epoch, dict(last.metrics)) if last else None
        )
        keys = datasets.cache_keys(s, [r.image_id for r in verified.rows])
        s.expunge(job)
    return RunContext(
        handle=handle,
        job=job,
        entry=catalog.get(job.base_model),
        hp=dict(job.resolved or {}),
        method=adapter.method_of(job),
        labels=labels,
        verified=verified,
        cache_keys=keys,
        registered=registered,
        last=last_ref,
    )


def load_samples(ctx: RunContext) -> SplitData:
    """The split's samples by part, with their cached pixels and labels."""
    samples = _samples(ctx)
    torch.manual_seed(ctx.job.seed)
    ctx.handle.event(f"loading {sum(len(v) for v in samples.values())} images from the pixel cache")
    pixels = {k: D.load_pixels(ctx.handle.store, v, ctx.image_size) for k, v in samples.items()}
    ys = {k: D.labels_array(v) for k, v in samples.items()}
    return SplitData(samples, pixels, ys)


def _samples(ctx: RunContext) -> dict[str, list[D.Sample]]:
    out: dict[str, list[D.Sample]] = {part: [] for part in PARTS}
    skipped = 0
    subset = set(ctx.job.train_subset) if ctx.job.train_subset is not None else None
    for r in ctx.verified.rows:
        part = ctx.verified.assignment.get(r.image_id)
        if part == "train" and subset is not None and r.image_id not in subset:
            continue  # a data-volume experiment's run trains on its subset only
        key = ctx.cache_keys.get(r.image_id)
        values = [r.labels.get(n) for n in ctx.labels]
        # Binary: an unknown label leaves the image out; multi-label: unknown counts as negative.
        if part not in out or key is None or (len(ctx.labels) == 1 and values[0] is None):
            skipped += 1
            continue
        out[part].append(D.Sample(r.image_id, key, tuple(float(v or 0) for v in values)))
    if skipped:
        ctx.handle.event(f"{skipped} images left out (no pixel cache or unknown label)", level="warn")
    return out


def _weights(ctx: RunContext) -> W.ResolvedWeights:
    registered = ctx.registered
    if registered is not None:
        store = ctx.handle.store
        state = W.load_registered(store, registered.object_key, registered.sha256, registered.format)
        return W.ResolvedWeights("registered", registered.id, registered.sha256, state)
    if ctx.job.weights == W.PRETRAINED:
        return W.ResolvedWeights(W.PRETRAINED, ctx.entry.hf_hub_id or ctx.entry.arch, None)
    return W.ResolvedWeights(W.RANDOM, W.RANDOM, None)


def _loop_config(ctx: RunContext, data: SplitData) -> LoopConfig:
    hp, options = ctx.hp, ctx.handle.options
    return LoopConfig(
        epochs=int(hp["epochs"]),
        learning_rate=float(hp["learning_rate"]),
        weight_decay=float(hp["weight_decay"]),
        warmup_epochs=float(hp["warmup_epochs"]),
        early_stopping_patience=hp.get("early_stopping_patience"),
        checkpoint_metric=ctx.job.checkpoint_metric,
        precision=options.precision,
        device=options.device,
        seed=ctx.job.seed,
        pos_weight=D.positive_weights(data.ys["train"]) if hp.get("class_weighting") else None,
    )


def build_trainer(ctx: RunContext, data: SplitData) -> Fitting:
    """The model on its base weights, its trainer and loaders, and the checkpoint to resume from."""
    size, hp, job = ctx.image_size, ctx.hp, ctx.job
    model = build_model(
        ctx.entry, len(ctx.labels), ctx.method, _weights(ctx), size, bool(hp.get("gradient_checkpointing"))
    )
    trainer = Trainer(model, ctx.entry.mean, ctx.entry.std, ctx.labels, _loop_config(ctx, data))
    pin = trainer.device.type == "cuda"
    workers = ctx.handle.options.loader_threads
    train_ds = D.CacheDataset(
        data.pixels["train"], data.ys["train"], D.augmentation(str(hp["augmentation"]), size)
    )
    train_loader = D.make_loader(train_ds, ctx.batch_size, True, job.seed, workers, pin)
    val_ds = D.CacheDataset(data.pixels["val"], data.ys["val"])
    val_loader = D.make_loader(val_ds, ctx.batch_size, False, job.seed, workers, pin)
    resume = None
    if ctx.last is not None:
        resume = checkpoints.load(ctx.handle.store, ctx.last.object_prefix, ctx.last.sha256)
        ctx.handle.event(f"resuming from the checkpoint of epoch {ctx.last.epoch}")
    return Fitting(trainer, train_loader, val_loader, resume)


def start_tracking(ctx: RunContext, fitting: Fitting, tracker_factory: TrackerFactory) -> None:
    """Open the tracker's run and record it on the job; a fresh run logs its parameters and tags,
    a resumed one the epochs its tracker missed."""
    handle = ctx.handle
    handle.tracker = tracker = tracker_factory(ctx.job)
    with unit_of_work(handle.sessions) as s:
        j = repo.get_job(s, handle.job_id)
        j.mlflow_run_id = tracker.run_id
        j.mlflow_experiment_id = tracker.experiment_id
        j.mlflow_url = tracker.url()
    if fitting.resume is not None:
        with handle.sessions() as s:
            done = {c.epoch: dict(c.metrics) for c in repo.list_checkpoints(s, handle.job_id)}
        tracker.log_missing_epochs(done)
        return
    tracker.log_params(_params(ctx, fitting.trainer))
    with handle.sessions() as s:
        split = splits.find_split(s, ctx.job.split_id)
        split_sha = split.sha256 if split else None
    tracker.set_tags(_tags(ctx, split_sha))


def _params(ctx: RunContext, trainer: Trainer) -> dict[str, Any]:
    job, method = ctx.job, ctx.method
    return {
        **ctx.hp,
        "method": method.type,
        "lora_r": method.r,
        "lora_alpha": method.alpha,
        "lora_dropout": method.dropout,
        "base_model": ctx.entry.name,
        "weights": job.weights,
        "seed": job.seed,
        "checkpoint_metric": job.checkpoint_metric,
        "precision": trainer.precision,
        "device": trainer.device.type,
    }


def _tags(ctx: RunContext, split_sha: str | None) -> dict[str, str]:
    job = ctx.job
    return {
        "medtune.job_id": job.id,
        "medtune.dataset_id": job.dataset_id,
        "medtune.dataset_version": str(job.dataset_version_id),
        "medtune.split_id": str(job.split_id),
        "medtune.split_sha256": str(split_sha),
        "medtune.base_model": ctx.entry.name,
        "medtune.weights_sha256": str(job.weights_sha256),
    }


def fit(ctx: RunContext, fitting: Fitting) -> LoopOutcome:
    """Train, checkpointing every epoch through the hooks; says so when it stopped early."""
    epochs = int(ctx.hp["epochs"])
    hooks = Hooks(ctx.handle, epochs, len(fitting.train_loader))
    outcome = fitting.trainer.fit(fitting.train_loader, fitting.val_loader, hooks, resume=fitting.resume)
    if outcome.status == "early_stopped":
        ctx.handle.event(
            f"early stopping after epoch {outcome.epochs_run}: no better {ctx.job.checkpoint_metric} for "
            f"{ctx.hp['early_stopping_patience']} epochs"
        )
    return outcome


def record_cancelled(ctx: RunContext, outcome: LoopOutcome) -> str:
    handle = ctx.handle
    with unit_of_work(handle.sessions) as s:
        status.set_status(
            s,
            repo.get_job(s, handle.job_id, lock=True),
            "cancelled",
            f"cancelled during epoch {outcome.epochs_run + 1}; checkpoints kept",
        )
    handle.tracker.close("KILLED")
    return "cancelled"
