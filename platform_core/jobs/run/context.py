"""What a run's steps share: its options, its bookkeeping (heartbeat, events, the tracker) and the
`RunContext` of one job, plus the small records the steps hand each other."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from platform_core.artifacts import AdapterConfig, Method
from platform_core.db.session import unit_of_work
from platform_core.jobs import repository as repo
from platform_core.jobs import status
from platform_core.jobs.models import BaseModelWeights, Job
from platform_core.storage import ObjectStore
from platform_core.training import catalog
from platform_core.training.checkpoints import Checkpoint
from platform_core.training.data import Sample
from platform_core.training.evaluation import Evaluation
from platform_core.training.loop import Trainer
from platform_core.training.tracking import NullTracker, Tracker

log = logging.getLogger("medtune.training")

HEARTBEAT_S = 15.0


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


class RunHandle:
    """A run's bookkeeping: it commits as it goes, in short transactions of its own, and beats a
    heartbeat from a thread until stopped."""

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

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with unit_of_work(self.sessions) as s:
                    repo.touch(s, self.job_id, status.now())
            except Exception as exc:  # a missed beat is retried; the run goes on
                log.warning("heartbeat failed: %s", exc)

    def stop_heartbeat(self) -> None:
        self._stop.set()

    def event(
        self, message: str, level: str = "info", type_: str = "message", data: dict[str, Any] | None = None
    ) -> None:
        with unit_of_work(self.sessions) as s:
            status.add_event(s, repo.get_job(s, self.job_id), message, level, type_, data)

    def finish_failed(self, code: str, message: str, param: str | None = None) -> None:
        with unit_of_work(self.sessions) as s:
            status.fail(s, repo.get_job(s, self.job_id, lock=True), code, message, param)
        self.tracker.close("FAILED")


@dataclass(frozen=True)
class CheckpointRef:
    """A stored checkpoint, read out of its session."""

    object_prefix: str
    sha256: str
    epoch: int
    metrics: dict[str, Any]


@dataclass
class RunContext:
    """One job's run: the job (detached), what it trains and how; the steps read it."""

    handle: RunHandle
    job: Job
    entry: catalog.BackboneEntry
    hp: dict[str, Any]
    method: Method
    labels: list[str]
    verified: Any
    cache_keys: dict[str, str | None]
    registered: BaseModelWeights | None
    last: CheckpointRef | None

    @property
    def image_size(self) -> int:
        return int(self.hp["image_size"])

    @property
    def batch_size(self) -> int:
        return int(self.hp["batch_size"])


@dataclass
class SplitData:
    """The split's samples, their cached pixels and label arrays, by part (train, val, test)."""

    samples: dict[str, list[Sample]]
    pixels: dict[str, np.ndarray]
    ys: dict[str, np.ndarray]


@dataclass
class Fitting:
    """A built trainer and its loaders, and the checkpoint it resumes from."""

    trainer: Trainer
    train_loader: Any
    val_loader: Any
    resume: Checkpoint | None


@dataclass
class Tested:
    """The best epoch's evaluation on the test split."""

    evaluation: Evaluation
    image_ids: list[str]
    y: np.ndarray
    p: np.ndarray
    loss: float


@dataclass
class WrittenAdapter:
    """The adapter as stored under `prefix`, and the run's artifacts by name."""

    prefix: str
    sha256: str
    config: AdapterConfig
    artifacts: dict[str, bytes]
