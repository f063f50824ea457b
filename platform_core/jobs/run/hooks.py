"""The training loop's hooks for a job: cancel polling, progress with an ETA, and a stored checkpoint,
its metrics and its event after every epoch."""

from __future__ import annotations

import time

from platform_core.db.session import unit_of_work
from platform_core.ids import new_id
from platform_core.jobs import repository as repo
from platform_core.jobs import status
from platform_core.jobs.models import Job, JobCheckpoint
from platform_core.jobs.run.context import RunHandle
from platform_core.training import checkpoints
from platform_core.training.checkpoints import Checkpoint, StoredCheckpoint
from platform_core.training.loop import EpochResult

CANCEL_POLL_S = 0.2
PROGRESS_S = 2.0
SUMMARY_METRICS = ("train_loss", "val_loss", "val_auroc", "val_auprc")


class Hooks:
    def __init__(self, run: RunHandle, epochs: int, steps: int) -> None:
        self.run = run
        self.epochs = epochs
        self.steps = steps
        self.started = time.monotonic()
        self.done_steps = 0
        self.first_step: tuple[int, int] | None = None
        self._last_poll = 0.0
        self._last_progress = 0.0
        self._cancelled = False
        # Wall seconds of each epoch's training pass (loader + steps, from the end of the previous
        # epoch's hook to its last step): a data-volume experiment fits them against the subset size.
        self._epoch_started = self.started
        self._train_seconds = 0.0
        # And its CPU seconds (this process, every thread): on a shared machine wall time also counts
        # what other processes took; CPU time is the work itself.
        self._epoch_cpu_started = time.process_time()
        self._train_cpu_seconds = 0.0

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
        if step == steps:
            self._train_seconds = t - self._epoch_started
            self._train_cpu_seconds = time.process_time() - self._epoch_cpu_started
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
            j.heartbeat_at = status.now()

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
            s.add(self._checkpoint_row(j, result, prefix, stored))
            j.progress = {**(j.progress or {}), "epoch": result.epoch, "epochs": self.epochs}
            j.heartbeat_at = status.now()
            summary = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k in SUMMARY_METRICS)
            status.add_event(
                s,
                j,
                f"epoch {result.epoch}/{self.epochs}: {summary}",
                type_="metrics",
                data={"epoch": result.epoch, **result.metrics, "images_per_second": result.images_per_second,
                      **self._timing(result)},
            )  # fmt: skip
        self._epoch_started, self._epoch_cpu_started = time.monotonic(), time.process_time()

    def _timing(self, result: EpochResult) -> dict[str, float]:
        return {"epoch_seconds": result.seconds, "train_seconds": self._train_seconds,
                "train_cpu_seconds": self._train_cpu_seconds}  # fmt: skip

    def _checkpoint_row(
        self, job: Job, result: EpochResult, prefix: str, stored: StoredCheckpoint
    ) -> JobCheckpoint:
        return JobCheckpoint(
            id=new_id("ftckpt"),
            job_id=job.id,
            epoch=result.epoch,
            step=result.epoch * self.steps,
            object_prefix=prefix,
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            metrics={**result.metrics, **self._timing(result)},
            is_best=result.is_best,
        )
