"""Splits over real ingested data: DICOM files (pydicom's CT_small, one per patient/study with its own
pixels) run through the ingestion service (de-identify, store, pixel cache) and a labels CSV, then
POST/GET /v1/datasets/{id}/splits, the manifest, dataset versions and checks.verify."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset
from pydicom.uid import UID
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from platform_core.datasets import ingest, labels
from platform_core.datasets import service as datasets
from platform_core.datasets.models import Study
from platform_core.datasets.schemas import DatasetCreate, DatasetOptions
from platform_core.dicom.deid import key_hmac
from platform_core.errors import Invalid
from platform_core.splits import checks, manifest, repository
from platform_core.splits.models import SplitAssignment
from tests.services import ROOT

pytestmark = pytest.mark.services

UID_ROOT = "1.2.826.0.1.3680043.8.498.77"


@cache
def _base() -> FileDataset:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    return dcmread(path)


@dataclass(frozen=True)
class StudySpec:
    patient: str  # original PatientID, never stored
    accession: str  # original AccessionNumber, the labels CSV key
    labels: dict[str, int]
    split: str | None = None
    images: int = 1


def dicom_bytes(index: int, spec: StudySpec, n: int) -> bytes:
    """A CT_small copy with its own patient, study, instance and pixels (bit pattern of index)."""
    ds = copy.deepcopy(_base())
    ds.PatientID = spec.patient
    ds.PatientName = f"Doe^{spec.patient}"
    ds.AccessionNumber = spec.accession
    ds.StudyInstanceUID = f"{UID_ROOT}.1.{index}"
    ds.SeriesInstanceUID = f"{UID_ROOT}.2.{index}"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{UID_ROOT}.3.{index}.{n}")
    arr = ds.pixel_array.copy()
    code = index * 4 + n
    for bit in range(16):
        if code >> bit & 1:
            r, c = divmod(bit, 4)
            arr[r * 32 : r * 32 + 32, c * 32 : c * 32 + 32] = 3000
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def labels_csv(specs: Sequence[StudySpec], names: Sequence[str], with_split: bool = False) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["AccessionNumber", *names, *(["split"] if with_split else [])])
    for s in specs:
        w.writerow([s.accession, *(s.labels.get(n, "") for n in names), *([s.split] if with_split else [])])
    return buf.getvalue().encode()


def ingest_dataset(
    state: Any, project_id: str, specs: Sequence[StudySpec], names: Sequence[str], with_split: bool = False
) -> str:
    """Create a dataset, ingest one DICOM per image and its labels through the ingestion service."""
    with state.sessions() as s:
        dataset = datasets.create_dataset(
            s,
            project_id,
            DatasetCreate(
                name=f"ds-{len(specs)}",
                task="binary" if len(names) == 1 else "multilabel",
                labels=list(names),
                options=DatasetOptions(min_image_size=16, modalities=["CT"], cache_size=32),
            ),
        )
        image_ids = []
        for i, spec in enumerate(specs):
            for n in range(spec.images):
                outcome = ingest.ingest_dicom(s, state.store, state.secret, dataset, dicom_bytes(i, spec, n))
                assert outcome.outcome == "queued", outcome
                assert outcome.image_id is not None
                image_ids.append(outcome.image_id)
        for image_id in image_ids:  # what the ingest worker task does
            assert ingest.process_image(s, state.store, image_id, secret=state.secret) == "accepted"
        labels.import_labels(s, state.secret, dataset, labels_csv(specs, names, with_split))
        s.commit()
        return dataset.id


def binary_specs(n_patients: int, positive_every: int = 4) -> list[StudySpec]:
    specs = []
    for p in range(n_patients):
        for st in range(1 + p % 2):  # every other patient has two studies
            specs.append(
                StudySpec(
                    f"PID{p:03d}",
                    f"ACC{p:03d}{st}",
                    {"effusion": int(p % positive_every == 0)},
                    images=1 + (p + st) % 2,
                )  # fmt: skip
            )
    return specs


def patient_splits(data: bytes) -> dict[str, set[str]]:
    rows, assignment = manifest.parse(data)
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.patient_pseudonym, set()).add(assignment[r.image_id])
    return out


def pseudonym_of(sessions: sessionmaker[Session], secret: str, dataset_id: str, accession: str) -> str:
    with sessions() as s:
        study = s.scalar(
            select(Study).where(
                Study.dataset_id == dataset_id, Study.accession_hmac == key_hmac(secret, accession)
            )
        )
        assert study is not None
        return study.patient_pseudonym


# --- seeded splits --------------------------------------------------------------------------


def test_seeded_split_is_patient_grouped_stratified_and_reproducible(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str]
) -> None:
    dataset_id = ingest_dataset(app_state, project_key[0], binary_specs(40), ["effusion"])
    url = f"/v1/datasets/{dataset_id}/splits"

    drawn = client.post(url, json={}, headers=auth)
    assert drawn.status_code == 201, drawn.text
    body = drawn.json()
    assert body["seed_drawn"] is True and isinstance(body["seed"], int)
    assert body["fractions"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    assert body["source"] == "seeded"
    counts = body["counts"]
    assert {k: v["patients"] for k, v in counts.items()} == {"train": 28, "val": 6, "test": 6}
    # 10 positive patients: 7 / 1.5 / 1.5 -> within one patient of proportional.
    positives = {k: v["labels"]["effusion"]["positive_patients"] for k, v in counts.items()}
    assert positives["train"] == 7 and sorted([positives["val"], positives["test"]]) == [1, 2]
    assert sum(v["images"] for v in counts.values()) == sum(1 + (p + st) % 2 for p in range(40)
                                                             for st in range(1 + p % 2))  # fmt: skip

    again = client.post(url, json={"seed": body["seed"]}, headers=auth).json()
    assert again["seed_drawn"] is False
    assert again["sha256"] == body["sha256"]
    assert again["dataset_version"] == body["dataset_version"]
    assert again["id"] != body["id"]
    other = client.post(url, json={"seed": body["seed"] + 1}, headers=auth).json()
    assert other["sha256"] != body["sha256"]

    got = client.get(f"{url}/{body['id']}", headers=auth)
    assert got.status_code == 200 and got.json() == body
    listed = client.get(url, headers=auth).json()
    assert [s["id"] for s in listed["data"]] == [other["id"], again["id"], body["id"]]

    m = client.get(f"{url}/{body['id']}/manifest", headers=auth)
    assert m.status_code == 200
    assert m.headers["content-type"].startswith("text/csv")
    assert hashlib.sha256(m.content).hexdigest() == body["sha256"] == m.headers["x-manifest-sha256"]
    assert m.content.startswith(b"image_id,study_pseudonym,patient_pseudonym,split,effusion\n")
    assert all(len(s) == 1 for s in patient_splits(m.content).values())
    assert len(patient_splits(m.content)) == 40
    assert b"PID0" not in m.content and b"ACC0" not in m.content
    # Same manifest bytes for the second split made with the same seed.
    assert client.get(f"{url}/{again['id']}/manifest", headers=auth).content == m.content


SCRIPT = """
import json, sys
from platform_core.splits.algorithm import Fractions, ImageRow, assign
from platform_core.splits import manifest
data = json.load(sys.stdin)
rows = [ImageRow(**r) for r in data["rows"]]
print(manifest.sha256(manifest.render(rows, assign(rows, data["seed"], Fractions.parse(*data["fractions"])))))
"""


def test_manifest_hash_is_the_same_in_other_processes(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str]
) -> None:
    dataset_id = ingest_dataset(app_state, project_key[0], binary_specs(24, 3), ["effusion"])
    body = client.post(
        f"/v1/datasets/{dataset_id}/splits",
        json={"seed": 20240917, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}},
        headers=auth,
    ).json()
    with app_state.sessions() as s:
        rows = repository.version_rows(s, body["dataset_version"])
    payload = json.dumps(
        {
            "rows": [r.__dict__ | {"labels": dict(r.labels)} for r in rows],
            "seed": 20240917,
            "fractions": ["0.6", "0.2", "0.2"],
        }  # fmt: skip
    )
    for hash_seed in ("0", "12345"):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], input=payload, capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed}, check=True, timeout=120,
        )  # fmt: skip
        assert done.stdout.strip() == body["sha256"]


def test_multilabel_split_over_real_data(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str]
) -> None:
    names = ["atelectasis", "cardiomegaly", "effusion"]
    specs = [
        StudySpec(
            f"PID{p:03d}",
            f"ACC{p:03d}",
            {"atelectasis": int(p % 7 == 0), "cardiomegaly": int(p % 3 == 0), "effusion": int(p % 2 == 0)},
        )  # fmt: skip
        for p in range(42)
    ]
    dataset_id = ingest_dataset(app_state, project_key[0], specs, names)
    r = client.post(f"/v1/datasets/{dataset_id}/splits", json={"seed": 7}, headers=auth)
    assert r.status_code == 201, r.text
    counts = r.json()["counts"]
    for name in names:
        total = sum(counts[s]["labels"][name]["positive_patients"] for s in counts)
        assert all(counts[s]["labels"][name]["positive_patients"] >= 1 for s in counts)
        if name == "atelectasis":  # 6 positives, the rarest label: 4.2 / 0.9 / 0.9
            assert abs(counts["train"]["labels"][name]["positive_patients"] - 0.7 * total) < 1
    m = client.get(f"/v1/datasets/{dataset_id}/splits/{r.json()['id']}/manifest", headers=auth)
    assert (
        m.content.splitlines()[0]
        == b"image_id,study_pseudonym,patient_pseudonym,split," + ",".join(names).encode()
    )


# --- refusals -------------------------------------------------------------------------------


def test_too_few_patients_refused_with_counts(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str]
) -> None:
    dataset_id = ingest_dataset(app_state, project_key[0], binary_specs(3, 2), ["effusion"])
    r = client.post(f"/v1/datasets/{dataset_id}/splits", json={"seed": 1}, headers=auth)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "would hold 0 images" in message
    assert "3 patient(s)" in message
    assert "add patients or raise fractions." in message
    assert client.get(f"/v1/datasets/{dataset_id}/splits", headers=auth).json()["data"] == []


def test_label_without_positive_in_test_refused(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str]
) -> None:
    dataset_id = ingest_dataset(app_state, project_key[0], binary_specs(30, 1000), ["effusion"])
    r = client.post(f"/v1/datasets/{dataset_id}/splits", json={"seed": 3}, headers=auth)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    # One positive patient (PID000) exists: two splits lack one.
    assert message.count("label 'effusion' has no positive patient in") == 2
    assert "1 in all" in message
    assert "or drop the label" in message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"fractions": {"train": 0.8, "val": 0.15, "test": 0.15}}, "fractions"),
        ({"fractions": {"train": 0.8, "val": 0.2, "test": 0.0}}, "fractions.test"),
        ({"column": "split", "seed": 3}, "column"),
        ({"column": "fold"}, "column"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_requests_refused(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str], body: Any, param: str
) -> None:
    dataset_id = ingest_dataset(app_state, project_key[0], binary_specs(2), ["effusion"])
    r = client.post(f"/v1/datasets/{dataset_id}/splits", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


# --- the user's own split column ------------------------------------------------------------


def column_specs(leak: bool) -> list[StudySpec]:
    specs = []
    for p in range(12):
        split = ("train", "train", "val", "test")[p % 4]
        specs.append(StudySpec(f"PID{p:03d}", f"ACC{p:03d}0", {"effusion": int(p % 3 == 0)}, split))
    # PID001 comes back for a second study; in the leaking upload it is marked test.
    specs.append(StudySpec("PID001", "ACC0011", {"effusion": 1}, "test" if leak else "train"))
    return specs


def test_user_split_column_accepted(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str]
) -> None:
    dataset_id = ingest_dataset(app_state, project_key[0], column_specs(leak=False), ["effusion"], True)
    r = client.post(f"/v1/datasets/{dataset_id}/splits", json={"column": "split"}, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["source"] == "column" and body["seed"] is None and body["fractions"] is None
    assert {k: v["patients"] for k, v in body["counts"].items()} == {"train": 6, "val": 3, "test": 3}
    m = client.get(f"/v1/datasets/{dataset_id}/splits/{body['id']}/manifest", headers=auth).content
    assert hashlib.sha256(m).hexdigest() == body["sha256"]


def test_user_split_with_leaking_patient_refused_naming_the_pseudonym(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str], sessions: Any
) -> None:
    dataset_id = ingest_dataset(app_state, project_key[0], column_specs(leak=True), ["effusion"], True)
    r = client.post(f"/v1/datasets/{dataset_id}/splits", json={"column": "split"}, headers=auth)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    pseudonym = pseudonym_of(sessions, app_state.secret, dataset_id, "ACC0011")
    assert f"patient {pseudonym} has images in train" in message
    assert "and test" in message
    assert "PID001" not in message
    assert pseudonym_of(sessions, app_state.secret, dataset_id, "ACC0000") not in message


# --- versions, verify, tenancy --------------------------------------------------------------


def test_new_labels_make_a_new_version_and_verify_rechecks(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str]
) -> None:
    specs = binary_specs(30)
    dataset_id = ingest_dataset(app_state, project_key[0], specs, ["effusion"])
    url = f"/v1/datasets/{dataset_id}"
    v1 = client.post(f"{url}/versions", headers=auth).json()
    assert v1["number"] == 1 and v1["patients"] == 30
    assert client.post(f"{url}/versions", headers=auth).json()["id"] == v1["id"]
    first = client.post(f"{url}/splits", json={"seed": 5}, headers=auth).json()
    assert first["dataset_version"] == v1["id"]

    with app_state.sessions() as s:  # a relabelled study makes new content
        dataset = datasets.get_dataset(s, project_key[0], dataset_id)
        labels.import_labels(s, app_state.secret, dataset, b"AccessionNumber,effusion\nACC0010,1\n")
        s.commit()
    second = client.post(f"{url}/splits", json={"seed": 5}, headers=auth).json()
    assert second["dataset_version"] != v1["id"]
    versions = client.get(f"{url}/versions", headers=auth).json()["data"]
    assert [v["number"] for v in versions] == [2, 1]
    # The old split still reads its frozen version: same bytes as when it was made.
    old = client.get(f"{url}/splits/{first['id']}/manifest", headers=auth).content
    assert hashlib.sha256(old).hexdigest() == first["sha256"]
    explicit = client.post(
        f"{url}/splits", json={"seed": 5, "dataset_version": v1["id"]}, headers=auth
    ).json()
    assert explicit["sha256"] == first["sha256"]

    with app_state.sessions() as s:
        verified = checks.verify(s, first["id"], project_key[0])
        assert verified.record.sha256 == first["sha256"]
        assert sorted(verified.assignment) == [r.image_id for r in verified.rows]
        # Move one image of a multi-image patient: verify refuses the split and names the patient.
        by_patient: dict[str, list[str]] = {}
        for row in verified.rows:
            by_patient.setdefault(row.patient_pseudonym, []).append(row.image_id)
        patient, images = next((p, ids) for p, ids in sorted(by_patient.items()) if len(ids) >= 2)
        stored = s.get(SplitAssignment, (first["id"], images[0]))
        assert stored is not None
        stored.split = "val" if stored.split != "val" else "test"
        s.flush()
        with pytest.raises(Invalid) as exc:
            checks.verify(s, first["id"])
        assert f"patient {patient} has images in" in exc.value.message
        s.rollback()


def test_other_projects_dataset_and_split_are_404(
    client: Any, auth: dict[str, str], app_state: Any, project_key: tuple[str, str], sessions: Any
) -> None:
    from platform_core.auth import service as auth_service

    dataset_id = ingest_dataset(app_state, project_key[0], binary_specs(30), ["effusion"])
    split = client.post(f"/v1/datasets/{dataset_id}/splits", json={"seed": 9}, headers=auth).json()
    with sessions() as s:
        other = auth_service.create_project(s, "other-project")
        _key, raw = auth_service.create_key(s, other)
        s.commit()
    theirs = {"Authorization": f"Bearer {raw}"}
    for path in ("splits", f"splits/{split['id']}", f"splits/{split['id']}/manifest", "versions"):
        assert client.get(f"/v1/datasets/{dataset_id}/{path}", headers=theirs).status_code == 404
    assert client.post(f"/v1/datasets/{dataset_id}/splits", json={}, headers=theirs).status_code == 404
    audit = client.get("/v1/audit-events", headers=auth).json()["data"]
    assert any(e["action"] == "split.create" and e["resource_id"] == split["id"] for e in audit)


def test_service_on_sqlite_and_postgresql(any_sessions: sessionmaker[Session], tmp_path: Any) -> None:
    """Embedded (SQLite) and deployed (PostgreSQL) mode freeze, split and verify alike."""
    from types import SimpleNamespace

    from platform_core.auth import service as auth_service
    from platform_core.splits import service
    from platform_core.storage import open_store

    state = SimpleNamespace(sessions=any_sessions, store=open_store(f"file://{tmp_path}"), secret="s" * 32)
    with any_sessions() as s:
        project_id = auth_service.create_project(s, "embedded").id
        s.commit()
    dataset_id = ingest_dataset(state, project_id, binary_specs(30), ["effusion"])
    with any_sessions() as s:
        split = service.create_split(s, project_id, dataset_id, seed=11)
        again = service.create_split(s, project_id, dataset_id, seed=11)
        s.commit()
        assert again.dataset_version_id == split.dataset_version_id and again.sha256 == split.sha256
        data, _ = service.manifest_bytes(s, project_id, dataset_id, split.id)
        assert hashlib.sha256(data).hexdigest() == split.sha256
        verified = checks.verify(s, split.id, project_id)
        assert len(verified.rows) == sum(c["images"] for c in split.counts.values())
