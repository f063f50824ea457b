"""Fine-tuning jobs and seed-sweep job groups: create, read, events (and their live stream), checkpoints,
cancel, resume."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import AuditDep, JsonOnly, SessionDep, StateDep, require
from api.limits import EventStreamResponse, LimitsDep
from api.state import AppState
from api.streams import Pacing, Polled, SharedReads, SharedReadsDep, event_stream
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.evaluation import report
from platform_core.jobs import service, views
from platform_core.jobs.schemas import (
    CheckpointOut,
    EventOut,
    GroupOut,
    JobCreate,
    JobGroupCreate,
    JobOut,
    JobStatus,
)
from platform_core.pagination import Page

router = APIRouter(prefix="/fine-tuning", tags=["fine-tuning"], dependencies=[JsonOnly])
Reader = Annotated[Principal, Depends(require(Scope.JOBS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.JOBS_WRITE))]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("/jobs", status_code=201)
def create_job(body: JobCreate, session: SessionDep, principal: Writer, audit: AuditDep) -> JobOut:
    job = service.create_job(session, principal.project_id, body)
    audit("fine_tuning_job.create", "fine_tuning_job", job.id)
    return views.job_out(job)


@router.get("/jobs")
def list_jobs(
    session: SessionDep,
    principal: Reader,
    limit: Limit = 20,
    after: str | None = None,
    status: JobStatus | None = None,
) -> Page[JobOut]:
    """Newest first; `status` keeps the jobs in that state."""
    return views.list_jobs(session, principal.project_id, limit, after, status)


@router.get("/jobs/{job_id}")
def get_job(job_id: str, session: SessionDep, principal: Reader) -> JobOut:
    return views.get_job(session, principal.project_id, job_id)


@router.get("/jobs/{job_id}/events")
def list_events(
    job_id: str, session: SessionDep, principal: Reader, limit: Limit = 50, after: str | None = None
) -> Page[EventOut]:
    """Newest first; `after` pages towards older events."""
    return views.events_page(session, principal.project_id, job_id, limit, after)


@router.get(
    "/jobs/{job_id}/events/stream",
    status_code=200,
    response_class=EventStreamResponse,
    responses={200: {"description": "Server-sent events: `id`, `event` (message, metrics; `end` last)"}},
)
async def stream_events(
    job_id: str,
    state: StateDep,
    principal: Reader,
    limits: LimitsDep,
    shared: SharedReadsDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventStreamResponse:
    """Server-sent events, oldest first, until the job ends; reconnect with Last-Event-ID to continue.
    The stream also ends (after a comment line) once the API key is revoked."""
    await run_in_threadpool(_job_head, state, principal.project_id, job_id)  # 404 before the stream
    slot = limits.streams.acquire(principal.key_id)  # 429 past the per-key limit
    poll = JobEventsPoll(state, shared, principal.project_id, job_id, last_event_id)
    pacing = Pacing(key_recheck_s=state.settings.stream_key_recheck_s)
    return event_stream(state, shared, principal.key_id, slot, poll, pacing)


def _job_head(state: AppState, project_id: str, job_id: str) -> views.JobHead:
    with state.sessions_for("GET")() as s:
        return views.head(s, project_id, job_id)


class JobEventsPoll:
    """The events after the stream's cursor, then `end` once the job is over. Whether there is
    anything new is one read shared by every stream on the job; only news costs a stream a read."""

    def __init__(
        self, state: AppState, shared: SharedReads, project_id: str, job_id: str, after: str | None
    ) -> None:
        self.state, self.shared, self.project_id, self.job_id = state, shared, project_id, job_id
        self.after = after

    async def __call__(self) -> Polled:
        read = partial(_job_head, self.state, self.project_id, self.job_id)
        head = await self.shared.get(("job-head", self.project_id, self.job_id), read)
        if head.newest_event_id is not None and head.newest_event_id != self.after:
            events = await run_in_threadpool(self._events_after)
            if events:
                self.after = events[-1].id
                frames = [f"id: {e.id}\nevent: {e.type}\ndata: {e.model_dump_json()}\n\n" for e in events]
                return Polled(frames, done=False)
        if head.terminal:
            return Polled([f'event: end\ndata: {{"status": "{head.status}"}}\n\n'], done=True)
        return Polled([], done=False)

    def _events_after(self) -> list[EventOut]:
        with self.state.sessions_for("GET")() as s:
            return views.list_events(s, self.project_id, self.job_id, 100, self.after, ascending=True)


@router.get("/jobs/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str, session: SessionDep, principal: Reader, limit: Limit = 100, after: str | None = None
) -> Page[CheckpointOut]:
    """By epoch; `after` pages towards later epochs."""
    return views.list_checkpoints(session, principal.project_id, job_id, limit, after)


@router.get("/jobs/{job_id}/report.json")
def get_report(job_id: str, session: SessionDep, state: StateDep, principal: Reader) -> dict[str, Any]:
    """The job report's figures as JSON: the test table (AUROC, AUPRC, sensitivity, specificity, F1 with
    CIs), ROC and PR points, reliability bins, operating points and the subgroup table."""
    return report.read(session, state.store, principal.project_id, job_id)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, principal: Writer, audit: AuditDep) -> JobOut:
    job = service.cancel(session, principal.project_id, job_id)
    audit("fine_tuning_job.cancel", "fine_tuning_job", job.id)
    return views.job_out(job)


@router.post("/jobs/{job_id}/resume")
def resume_job(job_id: str, session: SessionDep, principal: Writer, audit: AuditDep) -> JobOut:
    job = service.resume(session, principal.project_id, job_id)
    audit("fine_tuning_job.resume", "fine_tuning_job", job.id)
    return views.job_out(job)


@router.post("/job-groups", status_code=201)
def create_group(body: JobGroupCreate, session: SessionDep, principal: Writer, audit: AuditDep) -> GroupOut:
    group = service.create_group(session, principal.project_id, body)
    audit("fine_tuning_job_group.create", "fine_tuning_job_group", group.id)
    return views.group_out(session, principal.project_id, group.id)


@router.get("/job-groups")
def list_groups(
    session: SessionDep, principal: Reader, limit: Limit = 20, after: str | None = None
) -> Page[GroupOut]:
    return views.list_groups(session, principal.project_id, limit, after)


@router.get("/job-groups/{group_id}")
def get_group(group_id: str, session: SessionDep, principal: Reader) -> GroupOut:
    """The group's jobs and, over those that succeeded, mean, SD and 95% CI of each test metric."""
    return views.group_out(session, principal.project_id, group_id)
