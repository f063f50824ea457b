"""A job's run as named steps over one `RunContext`: load samples, build the trainer, start tracking,
fit, evaluate, write artifacts, record the result.

It is a long task, so it commits as it goes in short transactions of its own (status, progress,
heartbeat, checkpoints, events): the job record stays the truth while the run is under way. It is
idempotent: a finished job returns at once, and a redelivered or resumed one continues from its last
checkpoint on the same split.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from platform_core.db.outbox import Dispatch
from platform_core.db.session import unit_of_work
from platform_core.errors import PlatformError
from platform_core.jobs import repository as repo
from platform_core.jobs import service, status
from platform_core.jobs.run import finish, steps
from platform_core.jobs.run.context import RunHandle, RunOptions, TrackerFactory, null_tracker
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.training")


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
    started = _start(sessions, job_id, options, dispatch)
    if started is not None:
        return started
    handle = RunHandle(sessions, store, job_id, options)
    try:
        return execute(handle, tracker_factory)
    except PlatformError as exc:
        handle.finish_failed(status.error_code(exc), exc.message, exc.param)
        return "failed"
    except Exception as exc:  # a bug or an environment fault: the job says so, the log has the trace
        log.exception("job %s failed", job_id)
        handle.finish_failed("internal_error", f"training failed: {type(exc).__name__}; see the worker log")
        return "failed"
    finally:
        handle.stop_heartbeat()


def _start(
    sessions: sessionmaker[Session], job_id: str, options: RunOptions, dispatch: Dispatch | None
) -> str | None:
    """Mark the job running; or the status it keeps when it is done, cancelled or held back."""
    with unit_of_work(sessions, dispatch) as s:
        job = repo.get_job(s, job_id, lock=True)
        if job.status not in ("queued", "running"):
            return job.status
        if job.cancel_requested:
            status.set_status(s, job, "cancelled", "cancelled before it started")
            return "cancelled"
        if job.status == "queued" and not service.slot_free(s, job, options.max_running_per_project):
            service.hold(s, job, options.max_running_per_project)
            return "queued"
        job.attempts += 1
        job.started_at = job.started_at or status.now()
        job.heartbeat_at = status.now()
        job.error = None
        status.set_status(s, job, "running", f"running (attempt {job.attempts})")
    return None


def execute(handle: RunHandle, tracker_factory: TrackerFactory) -> str:
    """The steps of a running job, in order; returns its final status."""
    ctx = steps.open_context(handle)
    data = steps.load_samples(ctx)
    fitting = steps.build_trainer(ctx, data)
    steps.start_tracking(ctx, fitting, tracker_factory)
    outcome = steps.fit(ctx, fitting)
    if outcome.status == "cancelled":
        return steps.record_cancelled(ctx, outcome)
    best = finish.best_checkpoint(ctx, outcome)
    tested = finish.evaluate(ctx, data, fitting.trainer, best)
    written = finish.write_artifacts(ctx, data, fitting.trainer, best, tested)
    return finish.record_result(ctx, best, tested, written)
