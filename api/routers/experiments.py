"""Data-volume experiments: create, list, read (with samples needed for a target AUROC), cancel, and
their figures as PNG."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import AuditDep, JsonOnly, SessionDep, StoreDep, require
from api.pagination import Page
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.experiments import service, views
from platform_core.experiments.schemas import ExperimentCreate, ExperimentOut

router = APIRouter(prefix="/fine-tuning", tags=["fine-tuning"], dependencies=[JsonOnly])
Reader = Annotated[Principal, Depends(require(Scope.JOBS_READ))]
Writer = Annotated[Principal, Depends(require(Scope.JOBS_WRITE))]
Limit = Annotated[int, Query(ge=1, le=200)]
Target = Annotated[float | None, Query(gt=0.5, lt=1.0, description="samples needed for this test AUROC")]


@router.post("/experiments", status_code=201)
def create_experiment(
    body: ExperimentCreate, session: SessionDep, principal: Writer, audit: AuditDep
) -> ExperimentOut:
    """One job per size and seed on nested subsets of the split's training part (balanced per label
    when asked); every job validates and tests on the split's fixed val and test parts."""
    experiment = service.create(session, principal.project_id, body)
    audit("fine_tuning_experiment.create", "fine_tuning_experiment", experiment.id)
    return views.experiment_out(session, experiment)


@router.get("/experiments")
def list_experiments(
    session: SessionDep, principal: Reader, limit: Limit = 20, after: str | None = None
) -> Page[ExperimentOut]:
    """Newest first."""
    return views.experiments_page(session, principal.project_id, limit, after)


@router.get("/experiments/{experiment_id}")
def get_experiment(
    experiment_id: str, session: SessionDep, principal: Reader, target_auroc: Target = None
) -> ExperimentOut:
    """Per size: test metrics with bootstrap CIs and the spread across seeds, mean epoch seconds; the
    fits; with `target_auroc`, the training samples the learning curve says it needs."""
    experiment = views.get(session, principal.project_id, experiment_id)
    return views.experiment_out(session, experiment, target_auroc)


@router.post("/experiments/{experiment_id}/cancel")
def cancel_experiment(
    experiment_id: str, session: SessionDep, principal: Writer, audit: AuditDep
) -> ExperimentOut:
    experiment = service.cancel(session, principal.project_id, experiment_id)
    audit("fine_tuning_experiment.cancel", "fine_tuning_experiment", experiment.id)
    return views.experiment_out(session, experiment)


@router.get(
    "/experiments/{experiment_id}/figures/{name}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The figure as PNG"}},
)
def get_figure(
    experiment_id: str, name: str, session: SessionDep, principal: Reader, store: StoreDep
) -> Response:
    """`auroc_by_size` or `epoch_time_by_size`, as of the experiment's latest result."""
    png = views.figure_png(session, store, principal.project_id, experiment_id, name)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
