"""The task table: every Celery task's name and queue, used by the senders (the outbox) and the worker
that registers them, so a typo cannot make a message nobody consumes (tests/unit/test_tasks.py)."""

from __future__ import annotations

from dataclasses import dataclass

INGEST = "ingest"
TRAIN = "train"
INFER = "infer"
QUEUES = (INGEST, TRAIN, INFER)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    queue: str


PING = TaskSpec("system.ping", INGEST)
PROCESS_IMAGE = TaskSpec("ingest.process_image", INGEST)
VALIDATE_JOB = TaskSpec("train.validate", INGEST)
RUN_JOB = TaskSpec("train.run", TRAIN)
REQUEUE_STALE_JOBS = TaskSpec("train.requeue_stale", INGEST)
BATCH_PREDICTIONS = TaskSpec("infer.batch_predictions", INFER)
EVALUATE_VERSION = TaskSpec("infer.evaluate_version", INFER)
PACS_IMPORT = TaskSpec("pacs.run_import", INGEST)
REQUEUE_STALE_IMPORTS = TaskSpec("pacs.requeue_stale", INGEST)
# CPU work (fits, figures): a data-volume experiment's result, recomputed whenever one of its runs ends.
FINALIZE_EXPERIMENT = TaskSpec("experiments.finalize", INGEST)

ALL = (
    PING,
    PROCESS_IMAGE,
    VALIDATE_JOB,
    RUN_JOB,
    REQUEUE_STALE_JOBS,
    BATCH_PREDICTIONS,
    EVALUATE_VERSION,
    PACS_IMPORT,
    REQUEUE_STALE_IMPORTS,
    FINALIZE_EXPERIMENT,
)
