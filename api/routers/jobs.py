"""Fine-tuning jobs and seed-sweep job groups: create, read, events (and their live stream), checkpoints,
cancel, resume."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from api.deps import AuditDep, JsonOnly, SessionDep, StateDep, require
from api.pagination import Page
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.training.jobs import service
from platform_core.training.jobs.schemas import (
    CheckpointOut,
    EventOut,
    GroupOut,
    JobCreate,
    JobGroupCreate,
    JobOut,
)

router = APIRouter(prefix="/fine-tuning", tags=["fine-tuning"], dependencies=[JsonOnly])
Reader = Annotated[Principal, Depends(require(Scope.JOBS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.JOBS_WRITE))]
Limit = Annotated[int, Query(ge=1, le=200)]

STREAM_POLL_S = 0.5
STREAM_KEEPALIVE_S = 15.0
STREAM_MAX_S = 6 * 3600.0


@router.post("/jobs", status_code=201)
def create_job(body: JobCreate, session: SessionDep, principal: Writer, audit: AuditDep) -> JobOut:
    job = service.create_job(session, principal.project_id, body)
    audit("fine_tuning_job.create", "fine_tuning_job", job.id)
    return service.job_out(job)


@router.get("/jobs")
def list_jobs(
    session: SessionDep, principal: Reader, limit: Limit = 20, after: str | None = None
) -> Page[JobOut]:
    jobs = service.list_jobs(session, principal.project_id, limit + 1, after)
    return Page.build([service.job_out(j) for j in jobs], limit)


@router.get("/jobs/{job_id}")
def get_job(job_id: str, session: SessionDep, principal: Reader) -> JobOut:
    return service.job_out(service.get_job(session, principal.project_id, job_id))


@router.get("/jobs/{job_id}/events")
def list_events(
    job_id: str, session: SessionDep, principal: Reader, limit: Limit = 50, after: str | None = None
) -> Page[EventOut]:
    """Newest first; `after` pages towards older events."""
    events = service.list_events(session, principal.project_id, job_id, limit + 1, after)
    return Page.build(events, limit)


@router.get("/jobs/{job_id}/events/stream")
def stream_events(
    job_id: str,
    state: StateDep,
    session: SessionDep,
    principal: Reader,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events, oldest first, until the job ends; reconnect with Last-Event-ID to continue."""
    service.get_job(session, principal.project_id, job_id)  # 404 before the stream starts
    project_id = principal.project_id

    def frames() -> Iterator[str]:
        after = last_event_id
        started = quiet_since = time.monotonic()
        while time.monotonic() - started < STREAM_MAX_S:
            with state.sessions_for("GET")() as s:
                events = service.list_events(s, project_id, job_id, 100, after, ascending=True)
                job = service.get_job(s, project_id, job_id)
                status, terminal = job.status, job.is_terminal
            for e in events:
                after = e.id
                yield f"id: {e.id}\nevent: {e.type}\ndata: {e.model_dump_json()}\n\n"
            if events:
                quiet_since = time.monotonic()
                continue
            if terminal:
                yield f'event: end\ndata: {{"status": "{status}"}}\n\n'
                return
            if time.monotonic() - quiet_since > STREAM_KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            time.sleep(STREAM_POLL_S)

    return StreamingResponse(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/jobs/{job_id}/checkpoints")
def list_checkpoints(job_id: str, session: SessionDep, principal: Reader) -> Page[CheckpointOut]:
    items = service.list_checkpoints(session, principal.project_id, job_id)
    return Page(
        data=items,
        has_more=False,
        first_id=items[0].id if items else None,
        last_id=items[-1].id if items else None,
    )


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, principal: Writer, audit: AuditDep) -> JobOut:
    job = service.cancel(session, principal.project_id, job_id)
    audit("fine_tuning_job.cancel", "fine_tuning_job", job.id)
    return service.job_out(job)


@router.post("/jobs/{job_id}/resume")
def resume_job(job_id: str, session: SessionDep, principal: Writer, audit: AuditDep) -> JobOut:
    job = service.resume(session, principal.project_id, job_id)
    audit("fine_tuning_job.resume", "fine_tuning_job", job.id)
    return service.job_out(job)


@router.post("/job-groups", status_code=201)
def create_group(body: JobGroupCreate, session: SessionDep, principal: Writer, audit: AuditDep) -> GroupOut:
    group = service.create_group(session, principal.project_id, body)
    audit("fine_tuning_job_group.create", "fine_tuning_job_group", group.id)
    return service.group_out(session, principal.project_id, group.id)


@router.get("/job-groups")
def list_groups(
    session: SessionDep, principal: Reader, limit: Limit = 20, after: str | None = None
) -> Page[GroupOut]:
    groups = service.list_groups(session, principal.project_id, limit + 1, after)
    return Page.build(groups, limit)


@router.get("/job-groups/{group_id}")
def get_group(group_id: str, session: SessionDep, principal: Reader) -> GroupOut:
    """The group's jobs and, over those that succeeded, mean, SD and 95% CI of each test metric."""
    return service.group_out(session, principal.project_id, group_id)
