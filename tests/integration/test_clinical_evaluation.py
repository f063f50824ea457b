"""Clinical evaluation of real jobs: calibration, operating points and subgroups in a job's result, its
model card and the SDK types; champion/challenger comparison (DeLong, McNemar) over REST and the
non-inferiority alias gate.

Promotion with an operating point and temperature scaling, served; the report's figures as JSON.

A live stack: the API in-process, one real Celery worker process (ingest, train, infer) on the embedded
filesystem broker, PostgreSQL, a file object store. The radiographs carry two view positions, two sexes
(the dataset retains patient characteristics) and two manufacturers (it retains device identity), and
the labels CSV declares a `group:site` column, so each of those subgroup tables exists."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from platform_core.config import Settings
from platform_core.evaluation import paired
from platform_core.storage import ObjectStore, open_store
from tests.labelled import TINY, call, upload, wait_job, wait_ready
from tests.services import WorkerProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

PATIENTS = 32
SITES = ("north", "south")
MARGIN = 0.05


@dataclass
class Stack:
    client: Any
    headers: dict[str, str]
    store: ObjectStore
    worker: WorkerProcess
    jobs: list[dict[str, Any]]


def varied_radiographs(folder: Path) -> tuple[list[Path], bytes]:
    """PATIENTS radiographs in two view positions, two sexes, several ages and two manufacturers, and a
    labels CSV with a site per study."""
    from tests.fixtures_dicom import PLANTED, radiograph, to_bytes

    folder.mkdir(parents=True, exist_ok=True)
    paths, rows = [], ["AccessionNumber,finding,group:site"]
    for p in range(1, PATIENTS + 1):
        ds = radiograph(patient=p, study=1, instance=1, size=64, seed=p)
        ds.ViewPosition = "PA" if (p // 2) % 2 else "AP"
        ds.PatientSex = "M" if (p // 4) % 2 else "F"
        ds.PatientAge = f"0{30 + p:02d}Y"
        ds.Manufacturer, ds.ManufacturerModelName = ("Acme", "DR-1") if p % 3 else ("Bolt", "X-9")
        path = folder / f"patient{p}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
        rows.append(f"{PLANTED['accession']}{p}1,{p % 2},{SITES[(p // 3) % 2]}")
    return paths, ("\n".join(rows) + "\n").encode()


def varied_dataset(client: Any, headers: dict[str, str], folder: Path) -> tuple[str, str]:
    """(dataset id, split id): varied_radiographs() ingested with patient characteristics and device
    identity (manufacturer and model), and split."""
    options = {"min_image_size": 64, "cache_size": 64, "retain_patient_characteristics": True,
               "retain_device_identity": True}  # fmt: skip
    body = {"name": folder.name, "task": "binary", "labels": ["finding"], "options": options}
    dataset_id = str(call(client, "POST", "/v1/datasets", headers, json=body)["id"])
    paths, labels = varied_radiographs(folder)
    upload(client, headers, dataset_id, paths)
    call(client, "POST", f"/v1/datasets/{dataset_id}/labels", headers,
         files={"file": ("labels.csv", labels, "text/csv")})  # fmt: skip
    assert wait_ready(client, headers, dataset_id)["counts"]["accepted"] == PATIENTS
    split_body = {"seed": 3, "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    split = call(client, "POST", f"/v1/datasets/{dataset_id}/splits", headers, json=split_body)
    return dataset_id, str(split["id"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Stack]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.live import make_key

    tmp = tmp_path_factory.mktemp("clinical")
    env = {
        "MEDTUNE_DATA_DIR": str(tmp / "data"),
        "MEDTUNE_DATABASE_URL": pg_url,
        "MEDTUNE_OBJECT_STORE_URL": f"file://{tmp / 'objects'}",
        "MEDTUNE_BROKER_URL": "filesystem://",
        "MEDTUNE_RESULT_BACKEND": f"db+sqlite:///{tmp / 'results.sqlite'}",
        "MEDTUNE_DEID_SECRET": "clinical-" + secrets.token_hex(16),
        "HF_HUB_OFFLINE": "1",
    }
    settings = Settings(
        data_dir=tmp / "data", database_url=pg_url, object_store_url=env["MEDTUNE_OBJECT_STORE_URL"],
        broker_url="filesystem://", result_backend=env["MEDTUNE_RESULT_BACKEND"],
        deid_secret=env["MEDTUNE_DEID_SECRET"], alias_noninferiority_margin=MARGIN,
    )  # fmt: skip
    _project, key = make_key(settings, f"clinical-{secrets.token_hex(3)}")
    worker = WorkerProcess(env, tmp / "worker.log").start()
    try:
        with TestClient(create_app(settings)) as client:
            headers = {"Authorization": f"Bearer {key}"}
            dataset_id, split_id = varied_dataset(client, headers, tmp / "cxr")
            jobs = []
            for seed in (1, 2):
                method = {"type": "lora", "lora": {"r": 4, "alpha": 8}}
                body = {"dataset_id": dataset_id, "split_id": split_id, "base_model": "test_resnet",
                        "weights": "random", "seed": seed, "method": method,
                        "hyperparameters": dict(TINY)}  # fmt: skip
                jobs.append(call(client, "POST", "/v1/fine-tuning/jobs", headers, json=body))
            done = [wait_job(client, headers, j["id"], timeout=300, log=worker.log.read_text) for j in jobs]
            assert [j["status"] for j in done] == ["succeeded", "succeeded"], done
            yield Stack(client, headers, open_store(env["MEDTUNE_OBJECT_STORE_URL"]), worker, done)
    finally:
        worker.stop()


def test_job_result_card_and_sdk_carry_calibration_operating_points_and_subgroups(stack: Stack) -> None:
    from medtune.models import Job

    result = stack.jobs[0]["result"]
    n_test = result["n_test"]
    cal = result["calibration"]["per_label"]["finding"]
    assert 0.0 <= cal["ece"] <= 1.0 and 0.0 <= cal["brier"] <= 1.0
    assert sum(b["count"] for b in cal["reliability"]) == n_test
    points = {p["name"]: p for p in result["operating_points"]["per_label"]["finding"]}
    assert "youden" in points and points["youden"]["threshold"] == result["thresholds"]["finding"]
    groups = result["subgroups"]["attributes"]
    assert {"view_position", "sex", "age_band"} <= set(groups), groups.keys()
    assert {g["value"] for g in groups["view_position"]} == {"AP", "PA"}
    assert {g["value"] for g in groups["sex"]} == {"F", "M"}
    for rows in groups.values():
        assert sum(g["n"] for g in rows) == n_test

    card = stack.store.get_bytes(result["artifacts"]["model_card.md"]).decode()
    for heading in ("## Calibration on test", "## Operating points", "## Subgroups"):
        assert heading in card
    assert "| view_position | AP |" in card

    job = Job.model_validate(stack.jobs[0])
    assert job.calibration is not None and job.calibration.per_label["finding"].ece == cal["ece"]
    assert job.operating_points is not None and job.operating_points.per_label["finding"][0].name == "youden"
    assert job.subgroups is not None and sum(g.n for g in job.subgroups.attributes["sex"]) == n_test

    stored = json.loads(stack.store.get_bytes(result["artifacts"]["test_predictions.json"]))
    assert len(stored["image_ids"]) == len(stored["p"]) == n_test
    assert set(stored) == {"labels", "image_ids", "y", "p", "thresholds"}  # platform ids and numbers only


def _promote(stack: Stack, job: dict[str, Any]) -> int:
    body = {"job_id": job["id"], "name": "cxr-cmp"}
    return int(call(stack.client, "POST", "/v1/models", stack.headers, json=body)["version"])


def _alias(stack: Stack, version: int) -> Any:
    return stack.client.put(
        "/v1/models/cxr-cmp/aliases/champion", headers=stack.headers, json={"version": version}
    )


def test_compare_versions_and_the_noninferiority_gate(stack: Stack) -> None:
    v1, v2, v3 = (
        _promote(stack, stack.jobs[0]),
        _promote(stack, stack.jobs[1]),
        _promote(stack, stack.jobs[0]),
    )

    r = stack.client.get(f"/v1/models/cxr-cmp/compare?a={v1}&b={v2}", headers=stack.headers)
    assert r.status_code == 200, r.text
    got = r.json()["per_label"]["finding"]
    docs = [
        json.loads(stack.store.get_bytes(j["result"]["artifacts"]["test_predictions.json"]))
        for j in stack.jobs
    ]
    y, pa, pb = np.asarray(docs[0]["y"])[:, 0], np.asarray(docs[0]["p"])[:, 0], np.asarray(docs[1]["p"])[:, 0]
    assert docs[0]["image_ids"] == docs[1]["image_ids"]  # one test split
    want = paired.delong_test(y, pa, pb)
    assert got["delong"]["difference"] == pytest.approx(want.difference)
    assert got["delong"]["ci95"] == pytest.approx(list(want.ci95))
    assert got["mcnemar"]["a_right_b_wrong"] + got["mcnemar"]["a_wrong_b_right"] <= got["n"]

    same = stack.client.get(f"/v1/models/cxr-cmp/compare?a={v1}&b={v3}", headers=stack.headers).json()
    assert same["per_label"]["finding"]["delong"]["difference"] == 0.0
    assert same["per_label"]["finding"]["delong"]["p_value"] == 1.0

    assert _alias(stack, v1).status_code == 200
    assert _alias(stack, v3).status_code == 200  # the same predictions: non-inferior at any margin

    # The stored test predictions are set so that the holder (v3, job 1) separates the classes and the
    # challenger (v2, job 2) inverts every call: the gate runs DeLong on what the store holds and refuses.
    keys = [j["result"]["artifacts"]["test_predictions.json"] for j in stack.jobs]
    good = 0.25 + 0.5 * np.asarray(docs[0]["y"]) + 0.01 * np.linspace(0, 1, len(y))[:, None]
    stack.store.put_bytes(keys[0], json.dumps({**docs[0], "p": good.tolist()}).encode())
    stack.store.put_bytes(keys[1], json.dumps({**docs[1], "p": (1.0 - good).tolist()}).encode())
    try:
        r = _alias(stack, v2)
    finally:
        for k, doc in zip(keys, docs, strict=True):
            stack.store.put_bytes(k, json.dumps(doc).encode())
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "DeLong 95% CI" in message and "margin is 0.050" in message, message
    r = stack.client.put("/v1/models/cxr-cmp/aliases/champion", headers=stack.headers,
                         json={"version": v2, "force": True})  # fmt: skip
    assert r.status_code == 200, r.text

    r = stack.client.get("/v1/models/cxr-cmp/compare?a=1&b=99", headers=stack.headers)
    assert r.status_code == 404


def test_a_version_of_another_epoch_is_compared_on_its_own_evaluation(stack: Stack) -> None:
    job = stack.jobs[0]
    other = 1 if job["result"]["best_epoch"] == 2 else 2
    body = {"job_id": job["id"], "name": "cxr-epoch", "checkpoint": other}
    assert call(stack.client, "POST", "/v1/models", stack.headers, json=body)["status"] == "evaluating"

    def ready() -> Any:
        got = call(stack.client, "GET", "/v1/models/cxr-epoch/versions/1", stack.headers)
        return got if got["status"] == "ready" else None

    version = wait_for(ready, 120, 0.5, what="the version of another epoch to be evaluated")
    assert version["manifest"]["thresholds_source"] == "validation", version["manifest"]
    call(stack.client, "POST", "/v1/models", stack.headers, json={"job_id": job["id"], "name": "cxr-epoch"})

    got = call(stack.client, "GET", "/v1/models/cxr-epoch/compare?a=2&b=1", stack.headers)
    assert got["n_test"] == job["result"]["n_test"] and got["b"]["version"] == 1
    assert got["per_label"]["finding"]["thresholds"]["b"] == version["manifest"]["thresholds"]["finding"]


def test_group_column_and_manufacturer_subgroups_and_the_report_json(stack: Stack) -> None:
    import medtune
    from medtune.models import JobReport
    from tests.integration.test_erasure import _InProcess

    job = stack.jobs[0]
    result = job["result"]
    groups = result["subgroups"]["attributes"]
    assert {g["value"] for g in groups["group:site"]} == set(SITES), groups.keys()
    assert {g["value"] for g in groups["manufacturer"]} == {"Acme", "Bolt"}
    assert {g["value"] for g in groups["manufacturer_model"]} == {"Acme / DR-1", "Bolt / X-9"}
    for attribute in ("group:site", "manufacturer"):
        assert sum(g["n"] for g in groups[attribute]) == result["n_test"]

    key = stack.headers["Authorization"].removeprefix("Bearer ")
    with medtune.Client("http://testserver", key, transport=_InProcess(stack.client._transport)) as sdk:
        report = sdk.jobs.report(job["id"])
    assert isinstance(report, JobReport) and report.job_id == job["id"]
    assert report.format == "medtune-report/1" and report.n_test == result["n_test"]
    assert report.table[0].label == "macro" and report.table[0].auroc == result["macro"]["auroc"]
    assert report.table[1].f1 == result["per_label"]["finding"]["f1"]
    assert report.table[0].ci95["auroc"] == result["ci95"]["macro"]["auroc"]
    cal = result["calibration"]["per_label"]["finding"]
    assert [b.model_dump() for b in report.reliability["finding"]] == cal["reliability"]
    assert report.calibration["finding"]["ece"] == cal["ece"]
    points = result["operating_points"]["per_label"]["finding"]
    assert [p.threshold for p in report.operating_points["finding"]] == [p["threshold"] for p in points]
    rows = {(r["attribute"], r["value"]): r for r in report.subgroups}
    for attribute, values in groups.items():
        for g in values:
            assert rows[(attribute, g["value"])]["n"] == g["n"]
            assert rows[(attribute, g["value"])]["auroc"] == g["macro"]["auroc"]
    roc = report.curves["finding"]["roc"]
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0 and len(roc["fpr"]) == len(roc["thresholds"])
    stored = json.loads(stack.store.get_bytes(result["artifacts"]["report.json"]))
    assert JobReport.model_validate(stored) == report
    table = report.markdown().splitlines()
    assert table[0] == "| Label | AUROC | AUPRC | Sensitivity | Specificity | F1 |" and len(table) == 2 + 2
    assert table[2].startswith(f"| macro | {result['macro']['auroc']:.3f}")
    r = stack.client.get("/v1/fine-tuning/jobs/ftjob_missing/report.json", headers=stack.headers)
    assert r.status_code == 404, r.text


def _serve(stack: Stack, body: dict[str, Any]) -> Any:
    return stack.client.post("/v1/models", headers=stack.headers, json={"name": "cxr-serve", **body})


def _predict(stack: Stack, version: int, image: bytes) -> dict[str, Any]:
    headers = {**stack.headers, "Content-Type": "application/dicom"}
    r = stack.client.post(f"/v1/models/cxr-serve:{version}/predict", headers=headers, content=image)
    assert r.status_code == 200, r.text
    return dict(r.json()["predictions"][0])


def test_promotion_serves_temperature_scaled_probabilities_and_positive_at_its_operating_point(
    stack: Stack,
) -> None:
    from tests.fixtures_dicom import radiograph, to_bytes

    job = stack.jobs[0]
    result = job["result"]
    temperature = result["calibration"]["per_label"]["finding"]["temperature"]
    points = {p["name"]: p["threshold"] for p in result["operating_points"]["per_label"]["finding"]}
    off = _serve(stack, {"job_id": job["id"]})
    on = _serve(
        stack, {"job_id": job["id"], "calibration": "temperature", "operating_point": "specificity@0.90"}
    )
    assert off.status_code == 201 and on.status_code == 201, (off.text, on.text)
    manifest = on.json()["manifest"]
    assert manifest["calibration"]["method"] == "temperature"
    assert manifest["calibration"]["temperatures"] == {"finding": temperature}
    assert manifest["operating_point"]["name"] == "specificity_0.90"
    assert manifest["operating_point"]["thresholds"] == {"finding": points["specificity_0.90"]}
    assert off.json()["manifest"]["calibration"] == {"method": "none"}

    for seed in (7, 8, 9):
        image = to_bytes(radiograph(patient=90 + seed, study=1, instance=1, size=64, seed=seed))
        plain = _predict(stack, off.json()["version"], image)
        scaled = _predict(stack, on.json()["version"], image)
        p = plain["probabilities"]["finding"]
        z = np.log(p / (1 - p))
        want = 1 / (1 + np.exp(-z / temperature))
        assert scaled["probabilities"]["finding"] == pytest.approx(want, rel=1e-4, abs=1e-6)
        assert scaled["calibration"] == "temperature" and plain["calibration"] == "none"
        # positive: the operating point's threshold on the raw probability decides, on either scale
        assert scaled["positive"]["finding"] == (p >= points["specificity_0.90"])
        assert plain["positive"] == plain["predicted"]  # Youden's point by default
        assert plain["operating_point"]["name"] == "youden"
        assert scaled["predicted"]["finding"] == (p >= result["thresholds"]["finding"])

    versions = f"a={off.json()['version']}&b={on.json()['version']}"
    got = call(stack.client, "GET", f"/v1/models/cxr-serve/compare?{versions}", stack.headers)["per_label"]
    assert got["finding"]["thresholds"] == {
        "a": result["thresholds"]["finding"],
        "b": points["specificity_0.90"],
    }
    assert got["finding"]["delong"]["difference"] == 0.0  # the same model: only the operating point differs

    r = _serve(stack, {"job_id": job["id"], "operating_point": "sensitivity_0.80"})
    assert r.status_code == 422 and "sensitivity_0.80" in r.text, r.text
    r = _serve(stack, {"job_id": job["id"], "operating_point": "the best one"})
    assert r.status_code == 422 and "operating_point" in r.text, r.text
