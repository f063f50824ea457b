"""Called AE titles: the listener's own title is refused for a dataset and a model version (422), and a
title committed by another request between the check and the flush is a 409, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from platform_core.datasets.schemas import DatasetCreate
from platform_core.errors import Conflict

pytestmark = pytest.mark.services

LISTENER = "MEDTUNE"  # Settings.dicom_ae_title's default


def _register_version(sessions: sessionmaker[Session], project_id: str, name: str) -> None:
    from platform_core.ids import new_id
    from platform_core.registry.models import ModelVersion, RegisteredModel

    with sessions() as s:
        model = RegisteredModel(id=new_id("model"), project_id=project_id, name=name, latest_number=1)
        s.add(model)
        s.flush()
        s.add(ModelVersion(id=new_id("mv"), project_id=project_id, model_id=model.id, number=1, job_id=None,
                           epoch=0, status="ready", manifest={"model": name, "version": 1},
                           prefix=f"models/{name}/1", adapter_sha256="0" * 64))  # fmt: skip
        s.commit()


def test_the_listeners_own_title_is_refused(
    client: Any, auth: dict[str, str], app_state: Any, sessions: Any, project_key: tuple[str, str]
) -> None:
    listener = app_state.settings.dicom_ae_title
    assert listener == LISTENER
    body = {"name": "d", "task": "binary", "labels": ["finding"], "dicom_ae_title": f" {listener} "}
    refused = client.post("/v1/datasets", json=body, headers=auth)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["param"] == "dicom_ae_title" and "listener's own AE title" in error["message"]
    assert client.get("/v1/datasets", headers=auth).json()["data"] == []

    _register_version(sessions, project_key[0], "cxr")
    path = "/v1/models/cxr/versions/1/dicom-ae-title"
    r = client.put(path, json={"ae_title": listener}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["param"] == "ae_title", r.text
    assert client.put(path, json={"ae_title": "CXR_AI"}, headers=auth).json()["dicom_ae_title"] == "CXR_AI"
    taken = client.post("/v1/datasets", json={**body, "dicom_ae_title": "CXR_AI"}, headers=auth)
    assert taken.status_code == 409 and taken.json()["error"]["param"] == "dicom_ae_title"


def test_a_title_committed_between_check_and_flush_is_a_conflict(any_sessions: sessionmaker[Session]) -> None:
    from platform_core.auth import service as auth
    from platform_core.datasets import service as datasets
    from platform_core.datasets.models import Dataset
    from platform_core.ids import new_id
    from platform_core.pacs import titles

    with any_sessions() as s:
        project_id = auth.create_project(s, f"p-{secrets.token_hex(4)}").id
        s.commit()
    body = DatasetCreate(name="race", task="binary", labels=["finding"], dicom_ae_title="RACE_AE")
    with any_sessions() as loser:
        title = titles.free_title(loser, body.dicom_ae_title, LISTENER, "dicom_ae_title")
        assert title == "RACE_AE"  # free when the loser looked
        with any_sessions() as winner:  # another request commits the same title meanwhile
            won = datasets.create_dataset(winner, project_id, body, LISTENER).id
            winner.commit()
        late = Dataset(id=new_id("ds"), project_id=project_id, name="race", task="binary", labels=["x"],
                       options={}, duplicate_count=0, dicom_ae_title=title)  # fmt: skip
        with pytest.raises(Conflict) as raised, titles.claim(loser, title, "dicom_ae_title"):
            loser.add(late)
        assert raised.value.status_code == 409 and raised.value.param == "dicom_ae_title"
        # The savepoint took back only the losing row: the session goes on and commits other work.
        other = datasets.create_dataset(
            loser, project_id, DatasetCreate(name="o", task="binary", labels=["x"])
        )
        loser.commit()
        assert loser.get(Dataset, late.id) is None
        assert {loser.get(Dataset, won).dicom_ae_title, loser.get(Dataset, other.id).name} == {"RACE_AE", "o"}
    with any_sessions() as s, pytest.raises(Conflict):  # the sequential duplicate: the check answers
        datasets.create_dataset(s, project_id, body, LISTENER)
