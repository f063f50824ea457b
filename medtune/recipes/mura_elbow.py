"""Recipe `mura-elbow`: MURA's elbow radiographs, EVA-02 base with LoRA for 3 epochs, and the test
accuracy, sensitivity and specificity at the operating point chosen on validation.

Real data: `--data MURA-v1.1` (or its `train/XR_ELBOW` folder): every `XR_ELBOW` folder under it is
uploaded with a labels CSV made from the layout `patientNNNNN/studyN_positive|negative/imageN.png`,
split by patient (70/10/20), and trained on `eva02_base_patch14_448.mim_in22k_ft_in22k_in1k`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medtune.client import Client
from medtune.recipes import synthetic
from medtune.recipes._common import (
    Model,
    Options,
    Outcome,
    Say,
    Table,
    Upload,
    interval,
    labelled_split,
    train,
)

NAME = "mura-elbow"
LABEL = "abnormal"
MODEL = Model(
    "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
    "test_vit",
    "lora",
    {"epochs": 3, "image_size": 448, "batch_size": 16},
)
LAYOUT = re.compile(r"^(patient\d+)/(study\d+)_(positive|negative)/[^/]+\.(?:png|jpe?g)$", re.IGNORECASE)


def elbow_folders(data: Path) -> list[Path]:
    """The XR_ELBOW folders of a MURA tree (train/ and valid/), or the folder given if it is one."""
    if data.name.upper() == "XR_ELBOW":
        return [data]
    found = sorted(p for p in data.rglob("XR_ELBOW") if p.is_dir())
    if not found:
        raise FileNotFoundError(f"no XR_ELBOW folder under {data}")
    return found


def labels_rows(folder: Path) -> list[dict[str, Any]]:
    """One labels-CSV row per image, its path relative to the folder (the name the upload sends)."""
    rows = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if (m := LAYOUT.match(rel)) is not None:
            positive = int(m.group(3).lower() == "positive")
            rows.append({"path": rel, "patient_id": m.group(1), "study_id": m.group(2), LABEL: positive})
    return rows


def run(client: Client, options: Options, say: Say) -> Outcome:
    if options.smoke:
        folders = [synthetic.mura(options.out / "smoke-data" / "mura", seed=options.seed)]
    elif options.data is None:
        raise FileNotFoundError("--data: the MURA-v1.1 folder (or an XR_ELBOW folder in it)")
    else:
        folders = elbow_folders(options.data)
    uploads = [Upload(folder, labels_rows(folder)) for folder in folders]
    dataset, split = labelled_split(client, NAME, [LABEL], uploads, options, say)
    job = train(client, dataset, split, MODEL.job(options), options, say)
    return report(job.id, job.result or {}, {"dataset_id": dataset.id, "split_id": split.id})


def report(job_id: str, result: dict[str, Any], ids: dict[str, str]) -> Outcome:
    """The operating point's test accuracy, sensitivity and specificity with their bootstrap CIs, and
    every other operating point's test sensitivity and specificity."""
    values = result.get("per_label", {}).get(LABEL, {})
    main = Table(
        "mura_elbow",
        "MURA elbow: test metrics at the operating point (Youden's J on validation)",
        ["metric", "value", "ci95_low", "ci95_high"],
    )
    for metric in ("accuracy", "sensitivity", "specificity", "auroc"):
        low, high = interval(result, LABEL, metric) or (None, None)
        main.rows.append([metric, values.get(metric), low, high])
    points = Table(
        "mura_elbow_operating_points",
        "MURA elbow: operating points chosen on validation",
        ["operating_point", "threshold", "test_sensitivity", "test_specificity"],
    )
    for point in result.get("operating_points", {}).get("per_label", {}).get(LABEL, []):
        test = point.get("test", {})
        points.rows.append(
            [point["name"], point.get("threshold"), test.get("sensitivity"), test.get("specificity")]
        )
    threshold = result.get("thresholds", {}).get(LABEL)
    summary = {
        **ids,
        "job_id": job_id,
        "n_test": result.get("n_test"),
        "threshold": threshold,
        "confusion": result.get("confusion", {}).get(LABEL),
        "operating_point": {m: values.get(m) for m in ("accuracy", "sensitivity", "specificity")},
    }
    return Outcome(NAME, summary, [main, points])
