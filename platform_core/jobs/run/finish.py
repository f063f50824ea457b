"""The steps after training: load the best checkpoint, evaluate it on the test split, write the adapter
and the run's artifacts, and record the result on the job."""

from __future__ import annotations

import hashlib
from typing import Any

from platform_core.artifacts import ADAPTER_CONFIG_FILE, ADAPTER_FILE, AdapterConfig, adapter_config_bytes
from platform_core.db.session import unit_of_work
from platform_core.errors import PlatformError
from platform_core.evaluation import report, subgroups
from platform_core.jobs import adapter, status
from platform_core.jobs import repository as repo
from platform_core.jobs.run.context import (
    CheckpointRef,
    RunContext,
    SplitData,
    Tested,
    WrittenAdapter,
)
from platform_core.splits import repository as splits
from platform_core.splits.models import Split
from platform_core.training import checkpoints, evaluation
from platform_core.training.data import CacheDataset, make_loader
from platform_core.training.loop import LoopOutcome, Trainer
from platform_core.training.network import load_trainable_state, trainable_state


def best_checkpoint(ctx: RunContext, outcome: LoopOutcome) -> CheckpointRef:
    """The checkpoint of the run's best epoch; a run without one fails."""
    with ctx.handle.sessions() as s:
        best = repo.checkpoint_at(s, ctx.handle.job_id, outcome.best_epoch) if outcome.best_epoch else None
        ref = CheckpointRef(best.object_prefix, best.sha256, best.epoch, dict(best.metrics)) if best else None
    if ref is None:
        raise PlatformError("the run ended without a checkpoint")
    return ref


def evaluate(ctx: RunContext, data: SplitData, trainer: Trainer, best: CheckpointRef) -> Tested:
    """The best epoch on the test split: thresholds picked on val, metrics with bootstrap CIs and
    subgroups."""
    ckpt = checkpoints.load(ctx.handle.store, best.object_prefix, best.sha256)
    load_trainable_state(trainer.model, ckpt.weights)
    ctx.handle.event(
        f"evaluating the best epoch ({best.epoch}) on the test split ({len(data.samples['test'])} images)"
    )
    y_val, p_val, _ = trainer.predict(_loader(ctx, data, "val"))
    if not data.samples["test"]:
        raise PlatformError("the split has no test images to evaluate on", 422)
    y_test, p_test, test_loss = trainer.predict(_loader(ctx, data, "test"))
    test_ids = [x.image_id for x in data.samples["test"]]
    with ctx.handle.sessions() as s:
        attributes = subgroups.attributes(s, test_ids, ctx.handle.store)
    ev = evaluation.evaluate(
        y_val,
        p_val,
        y_test,
        p_test,
        ctx.labels,
        seed=ctx.job.seed,
        n_resamples=ctx.handle.options.bootstrap_resamples,
        attributes=attributes,
    )
    return Tested(ev, test_ids, y_test, p_test, test_loss)


def _loader(ctx: RunContext, data: SplitData, part: str) -> Any:
    return make_loader(CacheDataset(data.pixels[part], data.ys[part]), ctx.batch_size, False, 0)


def write_artifacts(
    ctx: RunContext, data: SplitData, trainer: Trainer, best: CheckpointRef, tested: Tested
) -> WrittenAdapter:
    """The adapter (trainable weights + the AdapterConfig that rebuilds and preprocesses for it), the
    metrics, model card, curves and test predictions: to the store and to the tracker."""
    job, entry, handle = ctx.job, ctx.entry, ctx.handle
    state = trainable_state(trainer.model)
    adapter_bytes = checkpoints.weights_bytes(state, {"base_model": entry.name, "method": ctx.method.type})
    adapter_sha = hashlib.sha256(adapter_bytes).hexdigest()
    prefix = f"jobs/{job.id}/adapter"
    with handle.sessions() as s:
        j = repo.get_job(s, handle.job_id)
        split = splits.find_split(s, j.split_id)
        config = adapter.describe(
            s,
            j,
            ctx.labels,
            epoch=best.epoch,
            thresholds=tested.evaluation.thresholds,
            adapter_sha256=adapter_sha,
        )
    config_bytes = adapter_config_bytes(config)
    handle.store.put_bytes(f"{prefix}/{ADAPTER_FILE}", adapter_bytes)
    handle.store.put_bytes(f"{prefix}/{ADAPTER_CONFIG_FILE}", config_bytes)
    card = _card_info(ctx, data, best, config, split)
    ev = tested.evaluation
    extra = {"job_id": job.id, "best_epoch": best.epoch, "test_loss": tested.loss}
    artifacts = {
        "metrics.json": evaluation.metrics_json(ev, extra),
        "model_card.md": evaluation.model_card(card, ev).encode(),
        "roc.png": evaluation.curves_png(tested.y, tested.p, ctx.labels, "roc"),
        "pr.png": evaluation.curves_png(tested.y, tested.p, ctx.labels, "pr"),
        "test_predictions.json": evaluation.predictions_json(tested.image_ids, tested.y, tested.p, ev),
        report.REPORT_FILE: report.report_json(ev.to_json(), tested.y, tested.p, extra),
        f"adapter/{ADAPTER_CONFIG_FILE}": config_bytes,
    }
    for name, blob in artifacts.items():
        handle.store.put_bytes(f"jobs/{job.id}/artifacts/{name}", blob)
        handle.tracker.log_artifact(name, blob)
    handle.tracker.log_artifact(f"adapter/{ADAPTER_FILE}", adapter_bytes)
    test_flat = {f"test_{m}": v for m, v in ev.metrics["macro"].items() if v is not None}
    handle.tracker.log_metrics(test_flat, step=best.epoch)
    return WrittenAdapter(prefix, adapter_sha, config, artifacts)


def _card_info(
    ctx: RunContext, data: SplitData, best: CheckpointRef, config: AdapterConfig, split: Split | None
) -> dict[str, Any]:
    job, entry = ctx.job, ctx.entry
    return {
        "name": f"{entry.name}-{job.suffix or job.id}",
        "dataset_id": job.dataset_id,
        "dataset_version": job.dataset_version_id,
        "split_id": job.split_id,
        "split_sha256": split.sha256 if split else None,
        "split_seed": split.seed if split else None,
        "n_train": len(data.samples["train"]),
        "n_val": len(data.samples["val"]),
        "base_model": entry.name,
        "arch": entry.arch,
        "weights": job.weights,
        "weights_sha256": job.weights_sha256,
        "method": config.method.to_json(),
        "hyperparameters": ctx.hp,
        "best_epoch": best.epoch,
        "checkpoint_metric": job.checkpoint_metric,
        "adapter_sha256": config.adapter_sha256,
    }


def record_result(ctx: RunContext, best: CheckpointRef, tested: Tested, written: WrittenAdapter) -> str:
    """The job succeeds with its test metrics, best epoch, artifacts and adapter."""
    job, handle, ev = ctx.job, ctx.handle, tested.evaluation
    result = {
        **ev.to_json(),
        "best_epoch": best.epoch,
        "test_loss": tested.loss,
        "artifacts": {n: f"jobs/{job.id}/artifacts/{n}" for n in written.artifacts},
    }
    # The tracking run ends before the job reads succeeded: whoever sees the status may read the run.
    handle.tracker.close("FINISHED")
    with unit_of_work(handle.sessions) as s:
        j = repo.get_job(s, handle.job_id, lock=True)
        # Per epoch, in order: the whole epoch (training + validation pass) and its training pass alone.
        done = repo.list_checkpoints(s, j.id)
        result["epoch_seconds"] = [c.metrics.get("epoch_seconds") for c in done]
        result["train_seconds"] = [c.metrics.get("train_seconds") for c in done]
        result["train_cpu_seconds"] = [c.metrics.get("train_cpu_seconds") for c in done]
        j.result = result
        j.adapter_key = written.prefix
        j.adapter_sha256 = written.sha256
        metric = job.checkpoint_metric
        j.best = {"epoch": best.epoch, "metric": metric, "value": best.metrics.get(metric)}
        macro = ev.metrics["macro"]
        status.add_event(
            s, j, "test metrics", type_="metrics", data={"test": macro, "ci95": ev.ci95["macro"]}
        )
        status.set_status(s, j, "succeeded", f"succeeded: test AUROC {_fmt(macro.get('auroc'))}")
    return "succeeded"


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"
