"""The run a `train` worker executes for one job: data, weights, model, loop, evaluation, artifacts.

It is a long task, so it commits as it goes in short transactions of its own (status, progress,
heartbeat, checkpoints, events): the job record stays the truth while the run is under way. It is
idempotent: a finished job returns at once, and a redelivered or resumed one continues from its last
checkpoint on the same split.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sqlalchemy.orm import Session, sessionmaker

from platform_core.artifacts import ADAPTER_CONFIG_FILE, ADAPTER_FILE, adapter_config_bytes
from platform_core.db.outbox import Dispatch
from platform_core.db.session import unit_of_work
from platform_core.errors import PlatformError
from platform_core.evaluation import subgroups
from platform_core.ids import new_id
from platform_core.storage import ObjectStore
from platform_core.training import catalog, checkpoints, evaluation
from platform_core.training import weights as W
from platform_core.training.checkpoints import Checkpoint
from platform_core.training.data import (
    CacheDataset,
    Sample,
    augmentation,
    labels_array,
    load_pixels,
    make_loader,
    positive_weights,
)
from platform_core.training.jobs import adapter, service
from platform_core.training.jobs import repository as repo
from platform_core.training.jobs.models import Job, JobCheckpoint
from platform_core.training.loop import EpochResult, LoopConfig, Trainer
from platform_core.training.models import MethodConfig, build_model, load_trainable_state, trainable_state
from platform_core.training.tracking import NullTracker, Tracker

log = logging.getLogger("medtune.training")

HEARTBEAT_S = 15.0
CANCEL_POLL_S = 0.2
PROGRESS_S = 2.0


@dataclass
class RunOptions:
    device: str = "auto"
    precision: str = "auto"
    # Threads that build batches ahead of the step (see platform_core.training.data: a prefork child
    # may not start DataLoader worker processes).
    loader_threads: int = 2
    bootstrap_resamples: int = 1000
    # Jobs of one project that may run at once (settings.max_running_jobs_per_project); 0: no limit.
    max_running_per_project: int = 0


TrackerFactory = Callable[[Job], Tracker]


def null_tracker(_job: Job) -> Tracker:
    return NullTracker()


def mlflow_tracker(tracking_uri: str, ui_url: str | None) -> TrackerFactory:
    def make(job: Job) -> Tracker:
        from platform_core.training.tracking import MlflowTracker

        return MlflowTracker(
            tracking_uri, f"medtune/{job.project_id}", job.id, ui_url, run_id=job.mlflow_run_id
        )

    return make


def run_job(
    sessions: sessionmaker[Session],
    store: ObjectStore,
    job_id: str,
    tracker_factory: TrackerFactory = null_tracker,
    options: RunOptions | None = None,
    dispatch: Dispatch | None = None,
) -> str:
    """Run (or continue) one job; returns its final status. Never raises for a job's own failure."""
    options = options or RunOptions()
    with unit_of_work(sessions, dispatch) as s:
        job = repo.get_job(s, job_id, lock=True)
        if job.status not in ("queued", "running"):
            return job.status
        if job.cancel_requested:
            service.set_status(s, job, "cancelled", "cancelled before it started")
            return "cancelled"
        if job.status == "queued" and not service.slot_free(s, job, options.max_running_per_project):
            service.hold(s, job, options.max_running_per_project)
            return "queued"
        job.attempts += 1
        job.started_at = job.started_at or service.now()
        job.heartbeat_at = service.now()
        job.error = None
        service.set_status(s, job, "running", f"running (attempt {job.attempts})")
    run = _Run(sessions, store, job_id, options)
    try:
        return run.execute(tracker_factory)
    except PlatformError as exc:
        run.finish_failed(service.error_code(exc), exc.message, exc.param)
        return "failed"
    except Exception as exc:  # a bug or an environment fault: the job says so, the log has the trace
        log.exception("job %s failed", job_id)
        run.finish_failed("internal_error", f"training failed: {type(exc).__name__}; see the worker log")
        return "failed"
    finally:
        run.stop_heartbeat()


class _Run:
    def __init__(
        self, sessions: sessionmaker[Session], store: ObjectStore, job_id: str, options: RunOptions
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.job_id = job_id
        self.options = options
        self.tracker: Tracker = NullTracker()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"heartbeat-{job_id}", daemon=True)
        self._beat.start()

    # -- bookkeeping ------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with unit_of_work(self.sessions) as s:
                    repo.touch(s, self.job_id, service.now())
            except Exception as exc:  # a missed beat is retried; the run goes on
                log.warning("heartbeat failed: %s", exc)

    def stop_heartbeat(self) -> None:
        self._stop.set()

    def event(
        self, message: str, level: str = "info", type_: str = "message", data: dict[str, Any] | None = None
    ) -> None:
        with unit_of_work(self.sessions) as s:
            service.add_event(s, repo.get_job(s, self.job_id), message, level, type_, data)

    def finish_failed(self, code: str, message: str, param: str | None = None) -> None:
        with unit_of_work(self.sessions) as s:
            service.fail(s, repo.get_job(s, self.job_id, lock=True), code, message, param)
        self.tracker.close("FAILED")

    # -- the run ----------------------------------------------------------------------------

    def execute(self, tracker_factory: TrackerFactory) -> str:
        with self.sessions() as s:
            job = repo.get_job(s, self.job_id)
            verified, labels = service.training_rows(s, job)
            samples = self._samples(s, verified, labels)
            registered = (
                repo.get_base_model(s, job.weights, job.project_id)
                if job.weights.startswith(W.BASE_MODEL_PREFIX)
                else None
            )
            last = repo.last_checkpoint(s, job.id)
            last_ref = (last.object_prefix, last.sha256, last.epoch) if last else None
            s.expunge(job)
        entry = catalog.get(job.base_model)
        hp = dict(job.resolved or {})
        method = adapter.method_of(job)
        size = int(hp["image_size"])

        torch.manual_seed(job.seed)
        self.event(f"loading {sum(len(v) for v in samples.values())} images from the pixel cache")
        pixels = {k: load_pixels(self.store, v, size) for k, v in samples.items()}
        ys = {k: labels_array(v) for k, v in samples.items()}

        if registered is not None:
            state = W.load_registered(self.store, registered.object_key, registered.sha256, registered.format)
            resolved = W.ResolvedWeights("registered", registered.id, registered.sha256, state)
        elif job.weights == W.PRETRAINED:
            resolved = W.ResolvedWeights(W.PRETRAINED, entry.hf_hub_id or entry.arch, None)
        else:
            resolved = W.ResolvedWeights(W.RANDOM, W.RANDOM, None)
        model = build_model(
            entry, len(labels), method, resolved, size, bool(hp.get("gradient_checkpointing"))
        )
        cfg = LoopConfig(
            epochs=int(hp["epochs"]),
            learning_rate=float(hp["learning_rate"]),
            weight_decay=float(hp["weight_decay"]),
            warmup_epochs=float(hp["warmup_epochs"]),
            early_stopping_patience=hp.get("early_stopping_patience"),
            checkpoint_metric=job.checkpoint_metric,
            precision=self.options.precision,
            device=self.options.device,
            seed=job.seed,
            pos_weight=positive_weights(ys["train"]) if hp.get("class_weighting") else None,
        )
        trainer = Trainer(model, entry.mean, entry.std, labels, cfg)
        pin = trainer.device.type == "cuda"
        workers = self.options.loader_threads
        train_loader = make_loader(
            CacheDataset(pixels["train"], ys["train"], augmentation(str(hp["augmentation"]), size)),
            int(hp["batch_size"]),
            True,
            job.seed,
            workers,
            pin,
        )
        val_ds = CacheDataset(pixels["val"], ys["val"])
        val_loader = make_loader(val_ds, int(hp["batch_size"]), False, job.seed, workers, pin)

        resume: Checkpoint | None = None
        if last_ref is not None:
            resume = checkpoints.load(self.store, last_ref[0], last_ref[1])
            self.event(f"resuming from the checkpoint of epoch {last_ref[2]}")

        self.tracker = tracker_factory(job)
        with unit_of_work(self.sessions) as s:
            j = repo.get_job(s, self.job_id)
            j.mlflow_run_id = self.tracker.run_id
            j.mlflow_experiment_id = self.tracker.experiment_id
            j.mlflow_url = self.tracker.url()
        if resume is not None:
            with self.sessions() as s:
                done = {c.epoch: dict(c.metrics) for c in repo.list_checkpoints(s, self.job_id)}
            self.tracker.log_missing_epochs(done)
        else:
            self.tracker.log_params(
                {
                    **{k: v for k, v in hp.items()},
                    "method": method.type,
                    "lora_r": method.r,
                    "lora_alpha": method.alpha,
                    "lora_dropout": method.dropout,
                    "base_model": entry.name,
                    "weights": job.weights,
                    "seed": job.seed,
                    "checkpoint_metric": job.checkpoint_metric,
                    "precision": trainer.precision,
                    "device": trainer.device.type,
                }
            )
            with self.sessions() as s:
                from platform_core.splits.models import Split

                split = s.get(Split, job.split_id)
                split_sha = split.sha256 if split else None
            self.tracker.set_tags(
                {
                    "medtune.job_id": job.id,
                    "medtune.dataset_id": job.dataset_id,
                    "medtune.dataset_version": str(job.dataset_version_id),
                    "medtune.split_id": str(job.split_id),
                    "medtune.split_sha256": str(split_sha),
                    "medtune.base_model": entry.name,
                    "medtune.weights_sha256": str(job.weights_sha256),
                }
            )

        hooks = _Hooks(self, int(hp["epochs"]), len(train_loader))
        outcome = trainer.fit(train_loader, val_loader, hooks, resume=resume)
        if outcome.status == "cancelled":
            with unit_of_work(self.sessions) as s:
                service.set_status(
                    s,
                    repo.get_job(s, self.job_id, lock=True),
                    "cancelled",
                    f"cancelled during epoch {outcome.epochs_run + 1}; checkpoints kept",
                )
            self.tracker.close("KILLED")
            return "cancelled"
        if outcome.status == "early_stopped":
            self.event(
                f"early stopping after epoch {outcome.epochs_run}: no better {job.checkpoint_metric} for "
                f"{hp['early_stopping_patience']} epochs"
            )
        return self._finish(job, entry, method, trainer, labels, samples, pixels, ys, outcome.best_epoch, hp)

    def _samples(self, s: Session, verified: Any, labels: list[str]) -> dict[str, list[Sample]]:
        from sqlalchemy import select

        from platform_core.datasets.models import Image

        ids = [r.image_id for r in verified.rows]
        keys: dict[str, str | None] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            for image_id, cache_key in s.execute(
                select(Image.id, Image.cache_key).where(Image.id.in_(chunk))
            ):
                keys[image_id] = cache_key
        out: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
        skipped = 0
        for r in verified.rows:
            part = verified.assignment.get(r.image_id)
            key = keys.get(r.image_id)
            values = [r.labels.get(n) for n in labels]
            # Binary: an unknown label leaves the image out; multi-label: unknown counts as negative.
            if part not in out or key is None or (len(labels) == 1 and values[0] is None):
                skipped += 1
                continue
            out[part].append(Sample(r.image_id, key, tuple(float(v or 0) for v in values)))
        if skipped:
            self.event(f"{skipped} images left out (no pixel cache or unknown label)", level="warn")
        return out

    def _finish(
        self,
        job: Job,
        entry: catalog.BackboneEntry,
        method: MethodConfig,
        trainer: Trainer,
        labels: list[str],
        samples: dict[str, list[Sample]],
        pixels: dict[str, np.ndarray],
        ys: dict[str, np.ndarray],
        best_epoch: int | None,
        hp: dict[str, Any],
    ) -> str:
        with self.sessions() as s:
            best = repo.checkpoint_at(s, self.job_id, best_epoch) if best_epoch else None
            best_ref = (best.object_prefix, best.sha256, best.epoch, dict(best.metrics)) if best else None
        if best_ref is None:
            raise PlatformError("the run ended without a checkpoint")
        ckpt = checkpoints.load(self.store, best_ref[0], best_ref[1])
        load_trainable_state(trainer.model, ckpt.weights)
        batch = int(hp["batch_size"])
        self.event(
            f"evaluating the best epoch ({best_ref[2]}) on the test split ({len(samples['test'])} images)"
        )
        y_val, p_val, _ = trainer.predict(
            make_loader(CacheDataset(pixels["val"], ys["val"]), batch, False, 0)
        )
        if not samples["test"]:
            raise PlatformError("the split has no test images to evaluate on", 422)
        y_test, p_test, test_loss = trainer.predict(
            make_loader(CacheDataset(pixels["test"], ys["test"]), batch, False, 0)
        )
        test_ids = [x.image_id for x in samples["test"]]
        with self.sessions() as s:
            attributes = subgroups.attributes(s, test_ids)
        ev = evaluation.evaluate(
            y_val, p_val, y_test, p_test, labels, seed=job.seed, n_resamples=self.options.bootstrap_resamples,
            attributes=attributes,
        )  # fmt: skip

        # The adapter: trainable weights + everything needed to rebuild and preprocess.
        state = trainable_state(trainer.model)
        adapter_bytes = checkpoints.weights_bytes(state, {"base_model": entry.name, "method": method.type})
        adapter_sha = hashlib.sha256(adapter_bytes).hexdigest()
        prefix = f"jobs/{job.id}/adapter"
        with self.sessions() as s:
            j = repo.get_job(s, self.job_id)
            split_sha, split_seed = service._split_sha(j), service._split_seed(j)
            config = adapter.describe(s, j, labels, epoch=best_ref[2], thresholds=ev.thresholds,
                                      adapter_sha256=adapter_sha)  # fmt: skip
        config_bytes = adapter_config_bytes(config)
        self.store.put_bytes(f"{prefix}/{ADAPTER_FILE}", adapter_bytes)
        self.store.put_bytes(f"{prefix}/{ADAPTER_CONFIG_FILE}", config_bytes)
        card_info = {
            "name": f"{entry.name}-{job.suffix or job.id}",
            "dataset_id": job.dataset_id,
            "dataset_version": job.dataset_version_id,
            "split_id": job.split_id,
            "split_sha256": split_sha,
            "split_seed": split_seed,
            "n_train": len(samples["train"]),
            "n_val": len(samples["val"]),
            "base_model": entry.name,
            "arch": entry.arch,
            "weights": job.weights,
            "weights_sha256": job.weights_sha256,
            "method": config.method.to_json(),
            "hyperparameters": hp,
            "best_epoch": best_ref[2],
            "checkpoint_metric": job.checkpoint_metric,
            "adapter_sha256": adapter_sha,
        }
        metrics_doc = evaluation.metrics_json(
            ev, {"job_id": job.id, "best_epoch": best_ref[2], "test_loss": test_loss}
        )
        artifacts = {
            "metrics.json": metrics_doc,
            "model_card.md": evaluation.model_card(card_info, ev).encode(),
            "roc.png": evaluation.curves_png(y_test, p_test, labels, "roc"),
            "pr.png": evaluation.curves_png(y_test, p_test, labels, "pr"),
            "test_predictions.json": evaluation.predictions_json(test_ids, y_test, p_test, ev),
            f"adapter/{ADAPTER_CONFIG_FILE}": config_bytes,
        }
        for name, data in artifacts.items():
            self.store.put_bytes(f"jobs/{job.id}/artifacts/{name}", data)
            self.tracker.log_artifact(name, data)
        self.tracker.log_artifact(f"adapter/{ADAPTER_FILE}", adapter_bytes)
        test_flat = {f"test_{m}": v for m, v in ev.metrics["macro"].items() if v is not None}
        self.tracker.log_metrics(test_flat, step=best_ref[2])

        result = {
            **ev.to_json(),
            "best_epoch": best_ref[2],
            "test_loss": test_loss,
            "artifacts": {n: f"jobs/{job.id}/artifacts/{n}" for n in artifacts},
        }
        with unit_of_work(self.sessions) as s:
            j = repo.get_job(s, self.job_id, lock=True)
            j.result = result
            j.adapter_key = prefix
            j.adapter_sha256 = adapter_sha
            j.best = {
                "epoch": best_ref[2],
                "metric": job.checkpoint_metric,
                "value": best_ref[3].get(job.checkpoint_metric),
            }
            macro = ev.metrics["macro"]
            service.add_event(
                s, j, "test metrics", type_="metrics", data={"test": macro, "ci95": ev.ci95["macro"]}
            )
            service.set_status(s, j, "succeeded", f"succeeded: test AUROC {_fmt(macro.get('auroc'))}")
        self.tracker.close("FINISHED")
        return "succeeded"


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


class _Hooks:
    def __init__(self, run: _Run, epochs: int, steps: int) -> None:
        self.run = run
        self.epochs = epochs
        self.steps = steps
        self.started = time.monotonic()
        self.done_steps = 0
        self.first_step: tuple[int, int] | None = None
        self._last_poll = 0.0
        self._last_progress = 0.0
        self._cancelled = False

    def should_stop(self) -> bool:
        t = time.monotonic()
        if not self._cancelled and t - self._last_poll >= CANCEL_POLL_S:
            self._last_poll = t
            with self.run.sessions() as s:
                self._cancelled = repo.cancel_requested(s, self.run.job_id)
        return self._cancelled

    def on_step(self, epoch: int, step: int, steps: int) -> None:
        if self.first_step is None:
            self.first_step = (epoch, step)
        self.done_steps += 1
        t = time.monotonic()
        if t - self._last_progress >= PROGRESS_S or step == steps:
            self._last_progress = t
            self._progress(epoch, step, steps)

    def _progress(self, epoch: int, step: int, steps: int) -> None:
        assert self.first_step is not None
        total = self.epochs * steps
        position = (epoch - 1) * steps + step
        start = (self.first_step[0] - 1) * steps + self.first_step[1] - 1
        rate = (time.monotonic() - self.started) / max(1, position - start)
        progress = {
            "epoch": epoch,
            "epochs": self.epochs,
            "step": step,
            "steps": steps,
            "eta_seconds": round(rate * (total - position), 1),
        }
        with unit_of_work(self.run.sessions) as s:
            j = repo.get_job(s, self.run.job_id)
            j.progress = progress
            j.heartbeat_at = service.now()

    def on_epoch(self, result: EpochResult, checkpoint: Checkpoint) -> None:
        run = self.run
        prefix = checkpoints.prefix_for(run.job_id, result.epoch)
        stored = checkpoints.save(run.store, prefix, checkpoint)
        run.tracker.log_metrics(result.metrics, step=result.epoch)
        with unit_of_work(run.sessions) as s:
            j = repo.get_job(s, run.job_id, lock=True)
            repo.delete_checkpoints_after(s, j.id, result.epoch - 1)
            s.flush()
            if result.is_best:
                for c in repo.list_checkpoints(s, j.id):
                    c.is_best = False
                j.best = {"epoch": result.epoch, "metric": j.checkpoint_metric, "value": result.monitored}
            s.add(
                JobCheckpoint(
                    id=new_id("ftckpt"),
                    job_id=j.id,
                    epoch=result.epoch,
                    step=result.epoch * self.steps,
                    object_prefix=prefix,
                    sha256=stored.sha256,
                    size_bytes=stored.size_bytes,
                    metrics=result.metrics,
                    is_best=result.is_best,
                )
            )
            j.progress = {**(j.progress or {}), "epoch": result.epoch, "epochs": self.epochs}
            j.heartbeat_at = service.now()
            summary = ", ".join(
                f"{k} {v:.4f}"
                for k, v in result.metrics.items()
                if k in ("train_loss", "val_loss", "val_auroc", "val_auprc")
            )
            service.add_event(
                s,
                j,
                f"epoch {result.epoch}/{self.epochs}: {summary}",
                type_="metrics",
                data={"epoch": result.epoch, **result.metrics, "images_per_second": result.images_per_second},
            )
