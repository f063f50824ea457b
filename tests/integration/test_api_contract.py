"""The API contract on a live server: every operation documents its errors in the error shape, a 405
names every allowed method, and schemathesis (all its checks, a bounded number of examples, the
SDK's bearer header) finds nothing: no 5xx, no undocumented status, no response off its schema."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import Live, live_platform

pytestmark = [pytest.mark.services, pytest.mark.timeout(480)]

MAX_EXAMPLES = 8
ERROR_REF = "#/components/schemas/ErrorBody"
# Request bodies carry rules JSON Schema does not express (a known base model, distinct labels, one of
# two fields, a scope name): the API answers those schema-valid requests with a 422 in the error shape,
# as documented. 410 is an archived model version. STOW-RS reads a multipart/related stream of DICOM
# parts that no OpenAPI schema describes, so any generated body is refused (400/415). An import's 404
# after a dataset was created names the PACS node in its body, not the dataset (ST302 would blame the
# dataset). Everything else is schemathesis's default.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "422", "429", "5xx"]

[[operations]]
include-path = "/v1/datasets/{dataset_id}/dicomweb/studies"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "415", "429"]

[[operations]]
include-path = "/v1/datasets/{dataset_id}/imports"
include-method = "POST"
checks.ensure_resource_availability.enabled = false
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_platform(tmp_path_factory.mktemp("contract"), worker=False) as platform:
        yield platform


@pytest.fixture(scope="module")
def openapi(live: Live) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{live.url}/openapi.json").json()
    return doc


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def _schema_ref(op: dict[str, Any], status: str) -> str | None:
    ref: str | None = op["responses"][status]["content"]["application/json"]["schema"].get("$ref")
    return ref


def test_every_operation_documents_its_errors_in_the_error_shape(openapi: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(openapi), "422 is rendered in the error shape, not FastAPI's"
    assert openapi["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    keyed = [(m, p, op) for m, p, op in _operations(openapi) if op.get("security")]
    assert len(keyed) > 40
    for method, path, op in keyed:
        for status in ("401", "403", "429"):
            assert _schema_ref(op, status) == ERROR_REF, (method, path, status)
        assert "Retry-After" in op["responses"]["429"]["headers"]
        if "{" in path:
            assert _schema_ref(op, "404") == ERROR_REF, (method, path)
        if method in ("POST", "PUT", "PATCH"):
            assert {"409", "413", "415", "422"} <= set(op["responses"]), (method, path)
    error = openapi["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    assert set(openapi["components"]["schemas"]["ErrorDetail"]["properties"]) == {"type", "message", "param"}


def test_405_names_every_allowed_method(live: Live) -> None:
    r = httpx.delete(f"{live.url}/v1/fine-tuning/jobs", headers=live.auth)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.put(f"{live.url}/v1/fine-tuning/jobs/ftjob_x/events/stream", headers=live.auth)
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    # A path no route takes is a 404 whatever the method; a console page allows GET and HEAD.
    assert httpx.delete(f"{live.url}/v1/no-such-thing", headers=live.auth).status_code == 404
    r = httpx.post(f"{live.url}/index.html")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_a_request_without_a_key_is_401_before_any_other_check(live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/datasets/ds_x/dicomweb/studies", content=b"x",
                   headers={"Content-Type": "text/plain"})  # fmt: skip
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def _sdk_key(live: Live) -> str:
    """A key as a data scientist's SDK holds one: every scope but admin (schemathesis would otherwise
    follow GET /v1/project to DELETE /v1/api-keys/{its own id} and lock itself out)."""
    scopes = ["datasets:read", "datasets:write", "jobs:read", "jobs:write", "models:read", "models:write",
              "inference"]  # fmt: skip
    r = httpx.post(f"{live.url}/v1/api-keys", headers=live.auth, json={"name": "contract", "scopes": scopes})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _warm_up_base_model_inference(live: Live) -> None:
    """A base model outside the catalog is inferred with timm, imported on first use (~15 s cold on
    2 busy cores): pay that once here, so the response-time check measures steady state."""
    body = {"dataset_id": "ds_none", "base_model": "resnet18"}
    r = httpx.post(f"{live.url}/v1/fine-tuning/jobs", headers=live.auth, json=body, timeout=120)
    assert r.status_code == 404, r.text  # the model is known; the dataset is not


def test_schemathesis_finds_nothing_on_the_live_api(live: Live, tmp_path: Path) -> None:
    _warm_up_base_model_inference(live)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(cli), "--config-file", str(config), "--no-color", "run", f"{live.url}/openapi.json",
        "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "1", "--workers", "1",
        "--request-timeout", "30", "--header", f"Authorization: Bearer {_sdk_key(live)}",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=420, check=False)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert "Operations:" in run.stdout and "failures" not in run.stdout.split("Operations:")[1][:200]
