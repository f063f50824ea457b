"""PACS nodes and imports over the API on PostgreSQL (each test rolled back): secrets never returned,
validation in the error shape, the task message carries the import id only, cancel ends the import and
deletes its sealed keys, and a cancelled import cannot be claimed by a late delivery."""

from __future__ import annotations

from typing import Any

import pytest

from platform_core.dicom.deid import key_hmac

pytestmark = pytest.mark.services

TOKEN = "bearer-token-never-returned"


def _dataset(client: Any, auth: dict[str, str]) -> str:
    body = {"name": "pacs", "task": "binary", "labels": ["finding"]}
    r = client.post("/v1/datasets", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _node(client: Any, auth: dict[str, str], name: str = "pacs") -> dict[str, Any]:
    body = {"name": name, "kind": "dicomweb", "url": "http://pacs.example:8042/dicom-web",
            "auth": {"type": "bearer", "token": TOKEN}}  # fmt: skip
    r = client.post("/v1/pacs-nodes", json=body, headers=auth)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_nodes_keep_their_secret_to_themselves(client: Any, auth: dict[str, str]) -> None:
    node = _node(client, auth)
    assert node["auth_type"] == "bearer" and TOKEN not in str(node)
    listed = client.get("/v1/pacs-nodes", headers=auth).json()
    assert [n["id"] for n in listed["data"]] == [node["id"]] and TOKEN not in str(listed)
    assert client.get(f"/v1/pacs-nodes/{node['id']}", headers=auth).json()["name"] == "pacs"
    again = client.post(
        "/v1/pacs-nodes", json={"name": "pacs", "kind": "dicomweb", "url": "http://x"}, headers=auth
    )
    assert again.status_code == 409 and again.json()["error"]["param"] == "name"
    dimse = client.post("/v1/pacs-nodes", json={"name": "d", "kind": "dimse", "host": "pacs"}, headers=auth)
    assert dimse.status_code == 422 and "error" in dimse.json()
    assert client.delete(f"/v1/pacs-nodes/{node['id']}", headers=auth).status_code == 204
    assert client.get(f"/v1/pacs-nodes/{node['id']}", headers=auth).status_code == 404


def test_an_import_is_queued_by_id_and_cancel_deletes_its_keys(
    client: Any, auth: dict[str, str], outbox: Any, app_state: Any, sessions: Any
) -> None:
    from platform_core.pacs.imports import ImportRun, run_import
    from platform_core.pacs.models import PacsImport

    dataset_id, node = _dataset(client, auth), _node(client, auth)
    keys = ["ACC-ORIGINAL-1", "ACC-ORIGINAL-2", "ACC-ORIGINAL-1"]
    r = client.post(f"/v1/datasets/{dataset_id}/imports", headers=auth,
                    json={"node_id": node["id"], "accession_numbers": keys})  # fmt: skip
    assert r.status_code == 202, r.text
    imp = r.json()
    assert imp["status"] == "queued" and imp["progress"]["studies_total"] == 2  # the repeated key once
    assert [s["key_hmac"] for s in imp["studies"]] == [key_hmac(app_state.secret, k) for k in keys[:2]]
    assert "ACC-ORIGINAL" not in r.text
    assert [(m.name, m.args) for m in outbox] == [("pacs.run_import", (imp["id"],))]
    with sessions() as s:
        sealed = s.get(PacsImport, imp["id"]).keys_encrypted
        assert sealed and b"ACC-ORIGINAL" not in sealed

    path = f"/v1/datasets/{dataset_id}/imports/{imp['id']}"
    cancelled = client.post(f"{path}/cancel", headers=auth).json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert client.post(f"{path}/cancel", headers=auth).json()["status"] == "cancelled"
    with sessions() as s:
        assert s.get(PacsImport, imp["id"]).keys_encrypted is None
    late = ImportRun(app_state.settings, sessions, app_state.store, outbox.append, imp["id"], "late-delivery")
    assert run_import(late) is None
    listed = client.get(f"/v1/datasets/{dataset_id}/imports", headers=auth).json()
    assert [i["id"] for i in listed["data"]] == [imp["id"]]


def test_import_requests_are_validated(client: Any, auth: dict[str, str]) -> None:
    dataset_id, node = _dataset(client, auth), _node(client, auth)
    url = f"/v1/datasets/{dataset_id}/imports"
    both = {"node_id": node["id"], "accession_numbers": ["a"], "study_instance_uids": ["1.2"]}
    assert client.post(url, json=both, headers=auth).status_code == 422
    unknown = client.post(url, json={"node_id": "pn_nope", "accession_numbers": ["a"]}, headers=auth)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "node_id"
    bad_csv = client.post(url, data={"node_id": node["id"]}, files={"labels": ("l.csv", b"x,y\n1,2\n")},
                          headers=auth)  # fmt: skip
    assert bad_csv.status_code == 422 and "key column" in bad_csv.json()["error"]["message"]
    text = client.post(url, content=b"hello", headers={**auth, "content-type": "text/plain"})
    assert text.status_code == 415
    other = client.get(f"/v1/datasets/{dataset_id}/imports/imp_nope", headers=auth)
    assert other.status_code == 404
