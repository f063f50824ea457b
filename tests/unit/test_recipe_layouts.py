"""The recipes' readers of the real datasets' layouts on disk (MURA folders, VinDr-CXR's per-reader
findings CSV, NIH's Data_Entry_2017.csv), their uploads in parts, the generated PNGs, the tables, and
the command's answers to bad usage, which need no server."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtune.recipes import _common, cxr14_dual_head, mura_elbow, synthetic, vindr_data_volume
from tests.services import ROOT, free_port


def test_mura_reads_train_and_valid_elbows_from_the_folder_layout(tmp_path: Path) -> None:
    for part, patient, study, outcome in [
        ("train", "patient00011", "study1", "positive"),
        ("train", "patient00011", "study2", "negative"),
        ("valid", "patient11185", "study1", "negative"),
    ]:
        folder = tmp_path / "MURA-v1.1" / part / "XR_ELBOW" / patient / f"{study}_{outcome}"
        folder.mkdir(parents=True)
        (folder / "image1.png").write_bytes(synthetic.png(bytes(64 * 64)))
    (tmp_path / "MURA-v1.1" / "train" / "XR_WRIST" / "patient00001").mkdir(parents=True)
    (tmp_path / "MURA-v1.1" / "train" / "XR_ELBOW" / "readme.txt").write_text("not an image")

    folders = mura_elbow.elbow_folders(tmp_path / "MURA-v1.1")
    assert [f.parent.name for f in folders] == ["train", "valid"]
    assert mura_elbow.labels_rows(folders[0]) == [
        {
            "path": "patient00011/study1_positive/image1.png",
            "patient_id": "patient00011",
            "study_id": "study1",
            "abnormal": 1,
        },
        {
            "path": "patient00011/study2_negative/image1.png",
            "patient_id": "patient00011",
            "study_id": "study2",
            "abnormal": 0,
        },
    ]
    assert mura_elbow.elbow_folders(folders[1]) == [folders[1]]
    with pytest.raises(FileNotFoundError, match="XR_ELBOW"):
        mura_elbow.elbow_folders(tmp_path / "MURA-v1.1" / "train" / "XR_WRIST")


def test_vindr_marks_a_finding_any_reader_marked_and_keeps_images_on_disk(tmp_path: Path) -> None:
    csv_path = tmp_path / "image_labels_train.csv"
    csv_path.write_text(
        "image_id,rad_id,Cardiomegaly,Nodule/Mass,No finding\n"
        "aaa,R8,1,0,0\naaa,R9,0,0,0\naaa,R10,0,1,0\n"
        "bbb,R8,0,0,1\n"
        "ccc,R9,1,1,0\n"
    )
    rows = vindr_data_volume.labels_rows(
        csv_path, ["Cardiomegaly", "Nodule/Mass"], {"aaa": "aaa.png", "bbb": "bbb.png"}
    )
    assert rows == [
        {"path": "aaa.png", "patient_id": "aaa", "study_id": "aaa", "Cardiomegaly": 1, "Nodule/Mass": 1},
        {"path": "bbb.png", "patient_id": "bbb", "study_id": "bbb", "Cardiomegaly": 0, "Nodule/Mass": 0},
    ]
    with pytest.raises(ValueError, match="lacks column\\(s\\) ILD"):
        vindr_data_volume.labels_rows(csv_path, ["ILD"], {})
    assert len(vindr_data_volume.FINDINGS) == len(set(vindr_data_volume.FINDINGS)) == 17


def test_cxr14_adds_abnormal_for_any_finding(tmp_path: Path) -> None:
    entry = tmp_path / "Data_Entry_2017.csv"
    header = ",".join(synthetic.CXR14_HEADER)
    entry.write_text(
        f"{header}\n"
        "00000001_000.png,Cardiomegaly|Effusion,0,1,58,M,PA,2682,2749,0.143,0.143\n"
        "00000001_001.png,No Finding,1,1,58,M,PA,2894,2729,0.143,0.143\n"
        "00000002_000.png,Hernia,0,2,81,F,AP,2500,2048,0.171,0.171\n"
    )
    rows = cxr14_dual_head.labels_rows(entry)
    assert [r["abnormal"] for r in rows] == [1, 0, 1]
    assert [r["patient_id"] for r in rows] == ["1", "1", "2"]
    assert {f for f in cxr14_dual_head.FINDINGS if rows[0][f]} == {"Cardiomegaly", "Effusion"}
    assert sum(rows[1][f] for f in cxr14_dual_head.FINDINGS) == 0
    entry.write_text(f"{header}\n00000003_000.png,Fracture,0,3,40,F,PA,1,1,1,1\n")
    with pytest.raises(ValueError, match="unknown finding\\(s\\) Fracture"):
        cxr14_dual_head.labels_rows(entry)


def test_uploads_by_file_name_go_in_parts_with_their_own_rows(tmp_path: Path) -> None:
    (tmp_path / "images_001" / "images").mkdir(parents=True)
    names = [f"{i:08d}_000.png" for i in range(_common.CHUNK + 3)]
    for name in names:
        (tmp_path / "images_001" / "images" / name).write_bytes(b"")
    rows = [{"path": n, "patient_id": n[:8], "study_id": n[:-4]} for n in [*names, "absent.png"]]
    said: list[str] = []
    uploads = _common.by_file_name(rows, _common.images_by_name(tmp_path), said.append)
    assert [len(u.rows) for u in uploads] == [_common.CHUNK, 3]
    for upload in uploads:
        assert isinstance(upload.paths, list)
        assert [p.name for p in upload.paths] == [r["path"] for r in upload.rows]
    assert said == [f"1 of the {len(rows)} images listed are not on disk; left out"]


def test_generated_radiographs_carry_their_findings_where_they_should() -> None:
    pixels = np.asarray(Image.open(io.BytesIO(synthetic.radiograph(random.Random(0), [0, 12]))))
    assert pixels.shape == (64, 64) and pixels.dtype == np.uint8
    assert (pixels[2:12, 2:12] == 200).all() and (pixels[26:36, 26:36] == 200).all()
    assert pixels[14:24, 2:12].max() < 72  # no finding 5: noise only


def test_tables_as_csv_and_markdown() -> None:
    table = _common.Table("t", "title", ["finding", "auroc"], [["Nodule/Mass", 0.8125], ["ILD", None]])
    assert table.csv() == "finding,auroc\nNodule/Mass,0.8125\nILD,\n"
    assert table.markdown() == "| finding | auroc |\n|---|---|\n| Nodule/Mass | 0.812 |\n| ILD | n/a |\n"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {"MEDTUNE_URL": f"http://127.0.0.1:{free_port()}", "MEDTUNE_API_KEY": "mt_" + "x" * 40}
    return subprocess.run(
        [sys.executable, "-m", "medtune.cli.main", "recipes", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_lists_recipes_and_refuses_bad_usage() -> None:
    listed = _cli("list")
    assert listed.returncode == 0
    for name in ("mura-elbow", "vindr-data-volume", "cxr14-dual-head"):
        assert name in listed.stdout
    unknown = _cli("run", "chexpert")
    assert unknown.returncode == 2 and "no recipe 'chexpert'" in unknown.stderr
    no_data = _cli("run", "cxr14-dual-head")
    assert no_data.returncode == 1 and "--labels: Data_Entry_2017.csv" in no_data.stderr
    bad_sizes = _cli("run", "vindr-data-volume", "--sizes", "100,many")
    assert bad_sizes.returncode == 2 and "--sizes" in bad_sizes.stderr
