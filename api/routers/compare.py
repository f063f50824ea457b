"""Champion and challenger: GET /v1/models/{name}/compare?a=&b= (platform_core.evaluation.compare)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import SessionDep, StateDep, require
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.evaluation import compare as domain
from platform_core.evaluation.schemas import ComparisonOut

router = APIRouter(prefix="/models", tags=["models"])
Reader = Annotated[Principal, Depends(require(Scope.MODELS_READ))]


@router.get("/{name}/compare")
def compare(
    name: str,
    session: SessionDep,
    state: StateDep,
    principal: Reader,
    a: Annotated[int, Query(ge=1, description="the reference version (champion)")],
    b: Annotated[int, Query(ge=1, description="the version compared with it (challenger)")],
) -> ComparisonOut:
    """Version b against version a on their shared test split: per label, the AUROC difference (b - a)
    with DeLong's test (95% CI, p-value) and McNemar's exact test at each version's threshold."""
    return domain.compare(session, state.store, principal.project_id, name, a, b)
