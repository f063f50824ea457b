"""The API's contract: health, readiness, auth, scopes, tenancy, audit, and one error shape."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from platform_core.auth import service
from platform_core.auth.models import ApiKey, AuditEvent

pytestmark = pytest.mark.services


def assert_error(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "param"}
    assert body["error"]["type"] == type_
    assert body["error"]["message"]
    return body["error"]


def test_health_and_ready(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert {k: v["ok"] for k, v in ready.json()["checks"].items()} == {
        "database": True,
        "object_store": True,
        "broker": True,
    }


def test_ready_is_503_when_a_check_fails(client: Any, app_state: Any) -> None:
    app_state.store.root.chmod(0o500)
    try:
        response = client.get("/readyz")
    finally:
        app_state.store.root.chmod(0o700)
    import os

    if os.geteuid() == 0:  # root writes anywhere: break the store another way
        from platform_core.storage.local import LocalStore

        app_state.store = LocalStore(f"file://{app_state.settings.data_dir / 'gone'}")
        app_state.store.root.rmdir()
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["object_store"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


def test_openapi_docs(client: Any) -> None:
    assert client.get("/docs").status_code == 200
    assert "/v1/api-keys" in client.get("/openapi.json").json()["paths"]


def test_401_without_or_with_a_bad_key(client: Any) -> None:
    assert_error(client.get("/v1/project"), 401, "authentication_error")
    assert_error(
        client.get("/v1/project", headers={"Authorization": "Bearer mt_nope"}), 401, "authentication_error"
    )
    assert_error(
        client.get("/v1/project", headers={"Authorization": "Basic abc"}), 401, "authentication_error"
    )


def test_403_for_a_missing_scope(
    client: Any, sessions: sessionmaker[Session], project_key: tuple[str, str]
) -> None:
    with sessions() as s:
        project = service.get_project(s, project_key[0])
        _k, raw = service.create_key(s, project, ["datasets:read"])
        s.commit()
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get("/v1/project", headers=headers).status_code == 200
    err = assert_error(client.get("/v1/api-keys", headers=headers), 403, "permission_error")
    assert "admin" in err["message"]


def test_422_for_an_invalid_body(client: Any, auth: dict[str, str]) -> None:
    err = assert_error(
        client.post("/v1/api-keys", json={"scopes": "all"}, headers=auth), 422, "invalid_request_error"
    )
    assert err["param"] == "scopes"
    err = assert_error(
        client.post("/v1/api-keys", json={"scopes": ["root"]}, headers=auth), 422, "invalid_request_error"
    )
    assert "root" in err["message"]


def test_415_for_a_wrong_media_type(client: Any, auth: dict[str, str]) -> None:
    response = client.post("/v1/api-keys", content=b"name=x", headers={**auth, "Content-Type": "text/plain"})
    assert_error(response, 415, "unsupported_media_type_error")


def test_413_over_the_size_limit(client: Any, auth: dict[str, str], app_state: Any) -> None:
    limit = app_state.settings.max_request_bytes
    big = b"x" * (limit + 1)
    response = client.post("/v1/api-keys", content=big, headers={**auth, "Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large_error")

    def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
        for _ in range(limit // (1024 * 1024) + 2):
            yield b"x" * (1024 * 1024)

    response = client.post(
        "/v1/api-keys", content=chunks(), headers={**auth, "Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large_error")


def test_404_for_unknown_routes_in_the_error_shape(client: Any, auth: dict[str, str]) -> None:
    assert_error(client.get("/v1/nothing-here", headers=auth), 404, "not_found_error")


def test_another_projects_resource_is_404(
    client: Any, sessions: sessionmaker[Session], auth: dict[str, str]
) -> None:
    with sessions() as s:
        other = service.create_project(s, "other-hospital")
        other_key, _raw = service.create_key(s, other)
        s.commit()
        other_id = other_key.id
    assert_error(client.get(f"/v1/api-keys/{other_id}", headers=auth), 404, "not_found_error")
    assert_error(client.delete(f"/v1/api-keys/{other_id}", headers=auth), 404, "not_found_error")
    with sessions() as s:
        assert s.get(ApiKey, other_id).revoked_at is None  # type: ignore[union-attr]


def test_writes_are_audited_and_new_keys_hashed(
    client: Any, sessions: sessionmaker[Session], auth: dict[str, str], project_key: tuple[str, str]
) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci", "scopes": ["inference"]}, headers=auth)
    assert created.status_code == 201, created.text
    raw, key_id = created.json()["key"], created.json()["id"]
    assert raw.startswith("mt_")
    assert "key" not in client.get(f"/v1/api-keys/{key_id}", headers=auth).json()
    revoked = client.delete(f"/v1/api-keys/{key_id}", headers=auth)
    assert revoked.json()["revoked_at"] is not None
    assert_error(client.get("/v1/project", headers={"Authorization": f"Bearer {raw}"}), 401,
                 "authentication_error")  # fmt: skip
    request_ids = {created.headers["x-request-id"], revoked.headers["x-request-id"]}
    with sessions() as s:
        stored = s.get(ApiKey, key_id)
        assert stored is not None and stored.key_hash == service.hash_key(raw)
        events = s.scalars(select(AuditEvent).where(AuditEvent.project_id == project_key[0])).all()
    assert [(e.action, e.resource_id) for e in events] == [
        ("api_key.create", key_id),
        ("api_key.revoke", key_id),
    ]
    assert {e.request_id for e in events} == request_ids
    listed = client.get("/v1/audit-events", headers=auth).json()
    assert [e["action"] for e in listed["data"]] == ["api_key.revoke", "api_key.create"]


def test_key_list_is_cursor_paginated(client: Any, auth: dict[str, str]) -> None:
    for i in range(3):
        assert client.post("/v1/api-keys", json={"name": f"k{i}"}, headers=auth).status_code == 201
    first = client.get("/v1/api-keys?limit=2", headers=auth).json()
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = client.get(f"/v1/api-keys?limit=2&after={first['last_id']}", headers=auth).json()
    assert rest["has_more"] is False
    ids = [k["id"] for k in first["data"] + rest["data"]]
    assert len(ids) == 4 and ids == sorted(ids)
