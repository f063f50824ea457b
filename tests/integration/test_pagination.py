"""One list convention: every GET that answers a list answers the one cursor Page
({data, has_more, first_id, last_id}) and takes `limit` and `after`; walking the audit trail and the
base-model catalog page by page gives what one large page gives, in the same order."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.services

PAGE_KEYS = {"data", "has_more", "first_id", "last_id"}
# Lists that must be among those the document describes (so the shape check is not vacuous).
KNOWN_LISTS = {
    "/v1/audit-events",
    "/v1/api-keys",
    "/v1/datasets",
    "/v1/datasets/{dataset_id}/images",
    "/v1/datasets/{dataset_id}/splits",
    "/v1/fine-tuning/jobs",
    "/v1/fine-tuning/jobs/{job_id}/events",
    "/v1/fine-tuning/jobs/{job_id}/checkpoints",
    "/v1/fine-tuning/job-groups",
    "/v1/models",
    "/v1/models/{name}/versions",
    "/v1/base-models",
    "/v1/pacs-nodes",
}


def _schema(doc: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in ref_or_schema:
        return dict(doc["components"]["schemas"][ref_or_schema["$ref"].rsplit("/", 1)[-1]])
    return ref_or_schema


def _list_endpoints(doc: dict[str, Any]) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """GET paths whose 200 answer carries a `data` array: path -> (answer schema, parameters)."""
    found = {}
    for path, item in doc["paths"].items():
        get = item.get("get")
        content = (get or {}).get("responses", {}).get("200", {}).get("content", {})
        if "application/json" not in content:
            continue
        schema = _schema(doc, content["application/json"]["schema"])
        if schema.get("properties", {}).get("data", {}).get("type") == "array":
            found[path] = (schema, get.get("parameters", []))
    return found


def test_every_list_answers_one_page_and_takes_a_cursor(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    lists = _list_endpoints(doc)
    assert KNOWN_LISTS <= set(lists), KNOWN_LISTS - set(lists)
    for path, (schema, parameters) in lists.items():
        assert set(schema["properties"]) == PAGE_KEYS, path
        assert set(schema["required"]) == PAGE_KEYS, path
        assert schema["properties"]["has_more"]["type"] == "boolean", path
        for cursor in ("first_id", "last_id"):
            types = {t.get("type") for t in schema["properties"][cursor]["anyOf"]}
            assert types == {"string", "null"}, (path, cursor)
        query = {p["name"]: p for p in parameters if p["in"] == "query"}
        assert {"limit", "after"} <= set(query), path
        assert query["limit"]["schema"]["minimum"] == 1, path


def test_lists_without_a_parent_answer_the_page(client: Any, auth: dict[str, str]) -> None:
    for path in sorted(p for p in KNOWN_LISTS if "{" not in p):
        response = client.get(path, params={"limit": 1}, headers=auth)
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert set(body) == PAGE_KEYS, path
        assert len(body["data"]) <= 1
        assert body["first_id"] == (body["data"][0]["id"] if body["data"] else None), path
        assert client.get(path, params={"limit": 0}, headers=auth).status_code == 422, path


def _walk(client: Any, path: str, auth: dict[str, str], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        page = client.get(path, params={"limit": limit, **({"after": after} if after else {})}, headers=auth)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= limit
        items += body["data"]
        if not body["has_more"]:
            return items
        assert body["last_id"] == body["data"][-1]["id"]
        after = body["last_id"]


def test_audit_events_page_by_cursor(client: Any, auth: dict[str, str]) -> None:
    for i in range(5):  # each create is one audited write
        assert client.post("/v1/api-keys", json={"name": f"k{i}"}, headers=auth).status_code == 201
    whole = client.get("/v1/audit-events", params={"limit": 500}, headers=auth).json()
    assert whole["has_more"] is False and len(whole["data"]) == 5
    ids = [e["id"] for e in whole["data"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    first = client.get("/v1/audit-events", params={"limit": 2}, headers=auth).json()
    assert first["has_more"] is True
    assert [e["id"] for e in first["data"]] == ids[:2]
    assert (first["first_id"], first["last_id"]) == (ids[0], ids[1])
    assert [e["id"] for e in _walk(client, "/v1/audit-events", auth, 2)] == ids
    last = client.get("/v1/audit-events", params={"limit": 2, "after": ids[3]}, headers=auth).json()
    assert [e["id"] for e in last["data"]] == ids[4:]
    assert last["has_more"] is False
    past_end = client.get("/v1/audit-events", params={"after": ids[-1]}, headers=auth).json()
    assert past_end == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_catalog_pages_walk_the_whole_list(client: Any, auth: dict[str, str]) -> None:
    """The catalog is computed whole, then cut: a walk by 3 gives the one big page, in order."""
    whole = client.get("/v1/base-models", params={"limit": 200}, headers=auth).json()
    assert whole["has_more"] is False and len(whole["data"]) > 3
    walked = _walk(client, "/v1/base-models", auth, 3)
    assert [e["id"] for e in walked] == [e["id"] for e in whole["data"]]
