"""Erasure on request: a patient's images by original PatientID (matched by HMAC, never stored,
logged or echoed); the DELETE routes for an image and a dataset sit with the datasets router."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from api.deps import AuditDep, JsonOnly, SessionDep, StateDep, require
from api.state import AppState
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.erasure.schemas import ErasureOut, PatientErasureCreate
from platform_core.erasure.service import Eraser

router = APIRouter(tags=["erasures"], dependencies=[JsonOnly])
Writer = Annotated[Principal, Depends(require(Scope.DATASETS_WRITE))]


def eraser(session: Session, state: AppState, principal: Principal) -> Eraser:
    return Eraser(session, state.store, state.settings.mlflow_tracking_uri, principal.project_id)


@router.post("/erasures")
def erase_patient(
    body: PatientErasureCreate, session: SessionDep, state: StateDep, principal: Writer, audit: AuditDep
) -> ErasureOut:
    """Every image of the patient in the caller's project; 200 with zero removed when there is none."""
    out = eraser(session, state, principal).erase_patient(state.secret, body.patient_id)
    audit("erasure.patient", "erasure", out.id, out.audit_details())
    return out
