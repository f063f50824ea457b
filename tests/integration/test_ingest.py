"""Upload → de-identify in memory → store → pixel cache, through the API on real PostgreSQL and files."""

from __future__ import annotations

import io
import logging
import zipfile
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from sqlalchemy import select, text

from platform_core.datasets.ingest import process_images
from platform_core.db.models import Base
from tests.fixtures_dicom import PLANTED, make_zip, radiograph, to_bytes, uid, undecodable

pytestmark = pytest.mark.services


def create(client: Any, auth: dict[str, str], **options: Any) -> str:
    body = {"name": "chest", "task": "multilabel", "labels": ["effusion", "nodule"], "options": options}
    r = client.post("/v1/datasets", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def upload(client: Any, auth: dict[str, str], ds_id: str, files: list[tuple[str, bytes]], **kw: Any) -> Any:
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return client.post(f"/v1/datasets/{ds_id}/files", files=parts, headers=auth, **kw)


def drain(app_state: Any, outbox: Any) -> list[str | None]:
    """Run the queued pixel tasks in-process, as the worker would (its own transaction each)."""
    statuses = []
    while outbox:
        msg = outbox.pop(0)
        assert msg.name == "ingest.process_image" and msg.queue == "ingest"
        assert all(isinstance(a, str) and a.startswith("img_") for a in msg.args)  # ids only
        with app_state.sessions() as s:
            statuses.extend(process_images(s, app_state.store, msg.args, secret=app_state.secret))
            s.commit()
    return statuses


def dump_db(app_state: Any) -> str:
    with app_state.sessions() as s:
        rows = []
        for table in Base.metadata.sorted_tables:
            rows += [repr(tuple(r)) for r in s.execute(select(table)).all()]
        return "\n".join(rows)


def store_bytes(app_state: Any) -> list[tuple[str, bytes]]:
    return [(k, app_state.store.get_bytes(k)) for k in app_state.store.list("")]


def identifiers() -> list[str]:
    values = list(PLANTED.values())
    values += [f"{PLANTED['patient_id']}-{p}" for p in (1, 2)]
    values += [uid(p, s) for p in (1, 2) for s in (1, 2)] + [uid(1, 1, 1), uid(1, 1, 2), uid(2, 1, 1)]
    values += ["Jane", "20230417", "PLANTEDAE", "Doe_Jane"]
    return values


def test_planted_identifiers_leave_no_trace(client: Any, auth: dict[str, str], app_state: Any, outbox: Any,
                                           caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    ds_id = create(client, auth)
    first = to_bytes(radiograph(patient=1, study=1, instance=1))
    second = to_bytes(radiograph(patient=1, study=1, instance=2, referenced=uid(1, 1, 1)))
    other = to_bytes(radiograph(patient=2, study=1, instance=1))
    archive = make_zip({"Doe_Jane_PLANTED-PID-7731/scan 2.dcm": second})
    r = upload(client, auth, ds_id, [("Doe_Jane_PLANTED-PID-7731.dcm", first), ("Doe_Jane.zip", archive),
                                     ("other.dcm", other)])  # fmt: skip
    assert r.status_code == 202, r.text
    data = r.json()["data"]
    assert [d["outcome"] for d in data] == ["queued", "queued", "queued"]
    assert data[0]["filename"] == "Doe_Jane_PLANTED-PID-7731.dcm"  # echoed in the response only
    assert drain(app_state, outbox) == ["accepted"] * 3

    # Same patient in a second upload: one pseudonym.
    again = to_bytes(radiograph(patient=1, study=2, instance=1))
    assert upload(client, auth, ds_id, [("again.dcm", again)]).json()["data"][0]["outcome"] == "queued"
    drain(app_state, outbox)

    images = client.get(f"/v1/datasets/{ds_id}/images", headers=auth).json()["data"]
    patients = {i["sop_instance_uid_pseudonym"]: i["patient_pseudonym"] for i in images}
    assert len(set(patients.values())) == 2
    assert len(images) == 4 and all(i["status"] == "accepted" for i in images)

    # UID references stay consistent: the second instance references the first one's new UID.
    by_pseudo = {}
    for img in images:
        raw = client.get(f"/v1/datasets/{ds_id}/images/{img['id']}/dicom", headers=auth)
        assert raw.status_code == 200
        by_pseudo[img["sop_instance_uid_pseudonym"]] = dcmread(io.BytesIO(raw.content))
    refs = [d for d in by_pseudo.values() if "ReferencedImageSequence" in d]
    assert len(refs) == 1
    target = refs[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert target in by_pseudo and target.startswith("2.25.")
    assert by_pseudo[target].StudyInstanceUID == refs[0].StudyInstanceUID
    for d in by_pseudo.values():
        assert d.PatientIdentityRemoved == "YES"
        assert "113100" in [c.CodeValue for c in d.DeidentificationMethodCodeSequence]
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert "OtherPatientIDsSequence" not in d and "RequestAttributesSequence" not in d
        assert d.Modality == "DX" and d.ViewPosition == "PA" and d.BodyPartExamined == "CHEST"

    everywhere = [("db", dump_db(app_state).encode())] + store_bytes(app_state)
    everywhere.append(("logs", caplog.text.encode()))
    for where, blob in everywhere:
        for value in identifiers():
            assert value.encode() not in blob, f"{value!r} found in {where}"


def test_every_rejection_reason_from_a_real_file(client: Any, auth: dict[str, str], app_state: Any,
                                                 outbox: Any) -> None:  # fmt: skip
    ds_id = create(client, auth)
    good = to_bytes(radiograph(patient=3))
    truncated = to_bytes(radiograph(patient=4))[:-5000]
    files = [
        ("notes.txt", b"this is not a DICOM file, just text about a patient"),
        ("truncated.dcm", truncated),
        ("ct.dcm", open(str(get_testdata_file("CT_small.dcm")), "rb").read()),  # noqa: SIM115
        ("nopixels.dcm", to_bytes(radiograph(patient=5, with_pixels=False))),
        ("small.dcm", to_bytes(radiograph(patient=6, size=64))),
        ("burned.dcm", to_bytes(radiograph(patient=7, burned_in="YES"))),
        ("good.dcm", good),
        ("undecodable.dcm", undecodable()),
        ("blank.dcm", to_bytes(radiograph(patient=8, pixels=__import__("numpy").full((160, 160), 700)))),
        ("good-again.dcm", good),
    ]
    r = upload(client, auth, ds_id, files)
    assert r.status_code == 202, r.text
    got = [(d["outcome"], d["reason"]) for d in r.json()["data"]]
    assert got == [
        ("rejected", "not_dicom"),
        ("rejected", "corrupt"),
        ("rejected", "not_radiograph"),
        ("rejected", "no_pixels"),
        ("rejected", "too_small"),
        ("rejected", "burned_in_annotation"),
        ("queued", None),
        ("queued", None),
        ("queued", None),
        ("duplicate", None),
    ]
    assert sorted(drain(app_state, outbox), key=str) == ["accepted", "rejected", "rejected"]
    body = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()
    counts = body["counts"]
    assert body["status"] == "ready"
    assert counts["accepted"] == 1 and counts["duplicates"] == 1 and counts["received"] == 10
    assert counts["rejected"] == {
        "not_dicom": 1, "corrupt": 1, "not_radiograph": 1, "no_pixels": 1, "too_small": 1,
        "burned_in_annotation": 1, "undecodable": 1, "artifact": 1,
    }  # fmt: skip
    rejected = client.get(f"/v1/datasets/{ds_id}/images?status=rejected&limit=3", headers=auth).json()
    assert rejected["has_more"] is True and len(rejected["data"]) == 3
    rest = client.get(f"/v1/datasets/{ds_id}/images?status=rejected&after={rejected['last_id']}",
                      headers=auth).json()  # fmt: skip
    assert len(rest["data"]) == 5 and not (
        {i["id"] for i in rest["data"]} & {i["id"] for i in rejected["data"]}
    )
    # Rejected in the worker: the de-identified DICOM is removed again.
    assert len(list(app_state.store.list(f"datasets/{ds_id}/dicom/"))) == 1


def test_zip_safety(client: Any, auth: dict[str, str], app_state: Any, outbox: Any, settings: Any) -> None:
    ds_id = create(client, auth)
    good = to_bytes(radiograph(patient=11))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("../escape.dcm", good)
        zf.writestr("/abs/path.dcm", good)
        zf.writestr("inner.zip", make_zip({"a.dcm": good}))
        zf.writestr("zeros.bin", b"\0" * (2 * 1024 * 1024))  # ratio far above the limit
        zf.writestr("dir/ok.dcm", good)
    r = upload(client, auth, ds_id, [("batch.zip", buf.getvalue())])
    got = [(d["filename"], d["reason"]) for d in r.json()["data"]]
    assert got == [
        ("batch.zip/../escape.dcm", "unsafe_path"),
        ("batch.zip//abs/path.dcm", "unsafe_path"),
        ("batch.zip/inner.zip", "nested_archive"),
        ("batch.zip/zeros.bin", "zip_bomb"),
        ("batch.zip/dir/ok.dcm", None),
    ]
    # Declared total over the limit: the whole archive is refused, the other parts still ingest.
    settings.max_zip_uncompressed_bytes = 1024 * 1024
    bomb = make_zip({f"z{i}.dcm": b"\0" * 600_000 for i in range(2)})
    r = upload(client, auth, ds_id, [("bomb.zip", bomb), ("good.dcm", to_bytes(radiograph(patient=12)))])
    assert [(d["outcome"], d["reason"]) for d in r.json()["data"]] == [
        ("rejected", "zip_bomb"),
        ("queued", None),
    ]
    assert not any(".." in k or "escape" in k for k in app_state.store.list(""))


def test_request_errors(client: Any, auth: dict[str, str], app_state: Any, settings: Any) -> None:
    ds_id = create(client, auth)
    r = client.post(
        f"/v1/datasets/{ds_id}/files", content=b"raw", headers={**auth, "content-type": "text/plain"}
    )
    assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type_error"
    big = b"\0" * (settings.max_request_bytes + 10)
    r = upload(client, auth, ds_id, [("big.dcm", big)])
    assert r.status_code == 413
    assert client.get("/v1/datasets/ds_nope", headers=auth).status_code == 404
    r = client.post("/v1/datasets", json={"name": "x", "task": "binary", "labels": ["a", "b"]}, headers=auth)
    assert r.status_code == 422


def test_labels_before_and_after_images(
    client: Any, auth: dict[str, str], app_state: Any, outbox: Any
) -> None:
    ds_id = create(client, auth)
    acc1 = f"{PLANTED['accession']}11"
    csv1 = f"AccessionNumber,effusion,nodule,split\n{acc1},1,negative,train\nUNKNOWN9,true,,\n"
    r = client.post(f"/v1/datasets/{ds_id}/labels", files={"file": ("l.csv", csv1)}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["matched"] == 0 and r.json()["imported"] == 2
    upload(client, auth, ds_id, [("a.dcm", to_bytes(radiograph(patient=1, study=1))),
                                 ("b.dcm", to_bytes(radiograph(patient=2, study=1)))])  # fmt: skip
    drain(app_state, outbox)
    csv2 = f"StudyInstanceUID,effusion,bogus\n{uid(2, 1)},0,1\n{uid(2, 1)}x,maybe,1\n"
    r = client.post(f"/v1/datasets/{ds_id}/labels", files={"file": ("l.csv", csv2)}, headers=auth)
    assert r.status_code == 200, r.text
    errors = r.json()["errors"]
    assert {"row": 1, "column": "bogus"} == {k: errors[0][k] for k in ("row", "column")}
    assert errors[1]["row"] == 3 and errors[1]["column"] == "effusion"
    assert r.json()["matched"] == 1
    counts = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()["counts"]
    assert counts["labelled_studies"] == 2 and counts["studies"] == 2 and counts["patients"] == 2
    assert counts["labels"]["effusion"] == {"positives": 1, "negatives": 1}
    assert counts["labels"]["nodule"] == {"positives": 0, "negatives": 1}
    bad = client.post(
        f"/v1/datasets/{ds_id}/labels", files={"file": ("l.csv", "Foo,bar\n1,2\n")}, headers=auth
    )
    assert bad.status_code == 422
    assert acc1 not in dump_db(app_state) and uid(2, 1) not in dump_db(app_state)


COMPRESSED = [
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPGExtended.dcm",  # JPEG extended
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # JPEG baseline (YBR)
    "MR_small_RLE.dcm",  # RLE
    "image_dfl.dcm",  # deflate
    "MR_small_bigendian.dcm",  # explicit big endian
    "emri_small_jpeg_2k_lossless.dcm",  # pydicom-data: JPEG 2000 lossless, multi-frame
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # pydicom-data: JPEG lossless SV1
]


def test_compressed_transfer_syntaxes_ingest(
    client: Any, auth: dict[str, str], app_state: Any, outbox: Any
) -> None:
    from platform_core.dicom import cache

    for name in COMPRESSED:
        # One dataset per file: several of pydicom's files are the same instance in another encoding.
        ds_id = create(
            client, auth, modalities=["MR", "NM", "OT", "CT", "US"], min_image_size=8, cache_size=64
        )
        data = open(str(get_testdata_file(name)), "rb").read()  # noqa: SIM115
        r = upload(client, auth, ds_id, [(name, data)])
        assert r.json()["data"][0]["outcome"] == "queued", (name, r.json())
        assert drain(app_state, outbox) == ["accepted"], name
        with app_state.sessions() as s:
            key = s.execute(
                text("select cache_key from dataset_images where dataset_id = :d"), {"d": ds_id}
            ).scalar()
        arr = cache.decode(app_state.store.get_bytes(key))
        assert arr.dtype.name == "uint16" and max(arr.shape) == 64 and arr.std() > 0, name


def test_mura_layout_and_manifest(client: Any, auth: dict[str, str], app_state: Any, outbox: Any) -> None:
    from tests.fixtures_dicom import png

    r = client.post(
        "/v1/datasets", json={"name": "mura", "task": "binary", "labels": ["abnormal"]}, headers=auth
    )
    ds_id = r.json()["id"]
    mura = make_zip({
        "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png": png(seed=1, text="Planted^J"),
        "MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image2.png": png(seed=2),
        "MURA-v1.1/train/XR_WRIST/patient00002/study1_negative/image1.png": png(seed=3),
        "MURA-v1.1/train/XR_WRIST/patient00002/study1_negative/tiny.png": png(size=32, seed=4),
    })  # fmt: skip
    r = upload(client, auth, ds_id, [("MURA.zip", mura)])
    assert [d["outcome"] for d in r.json()["data"]] == ["queued", "queued", "queued", "rejected"]
    assert drain(app_state, outbox) == ["accepted"] * 3
    body = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()
    assert body["counts"]["patients"] == 2 and body["counts"]["studies"] == 2
    assert body["counts"]["labels"]["abnormal"] == {"positives": 1, "negatives": 1}
    assert body["counts"]["rejected"] == {"too_small": 1}
    images = client.get(f"/v1/datasets/{ds_id}/images?status=accepted", headers=auth).json()["data"]
    assert all(i["body_part"] == "WRIST" and i["labels"] is not None for i in images)
    for _key, blob in store_bytes(app_state):
        assert b"Planted" not in blob and b"patient00001" not in blob
    assert "patient00001" not in dump_db(app_state)

    # ChestX-ray14 style: PNG parts + a manifest CSV.
    r = client.post(
        "/v1/datasets", json={"name": "cxr", "task": "binary", "labels": ["effusion"]}, headers=auth
    )
    cxr = r.json()["id"]
    manifest = "path,patient_id,study_id,effusion\nimages/00000001_000.png,00000001,000,1\n"
    parts = [("files", ("00000001_000.png", png(seed=9), "image/png")),
             ("files", ("unlisted.png", png(seed=8), "image/png")),
             ("manifest", ("manifest.csv", manifest.encode(), "text/csv"))]  # fmt: skip
    r = client.post(f"/v1/datasets/{cxr}/files", files=parts, headers=auth)
    assert [(d["outcome"], d["reason"]) for d in r.json()["data"]] == [
        ("queued", None),
        ("rejected", "not_in_manifest"),
    ]
    drain(app_state, outbox)
    assert (
        client.get(f"/v1/datasets/{cxr}", headers=auth).json()["counts"]["labels"]["effusion"]["positives"]
        == 1
    )


def test_other_project_sees_404(client: Any, auth: dict[str, str], sessions: Any) -> None:
    from platform_core.auth import service

    ds_id = create(client, auth)
    with sessions() as s:
        project = service.create_project(s, "intruder-project-x")
        _key, raw = service.create_key(s, project)
        s.commit()
    other = {"Authorization": f"Bearer {raw}"}
    assert client.get(f"/v1/datasets/{ds_id}", headers=other).status_code == 404
    assert upload(client, other, ds_id, [("a.dcm", b"x")]).status_code == 404
