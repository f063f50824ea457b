"""Recipe `cxr14-dual-head`: NIH ChestX-ray14's 14 findings plus a binary normal/abnormal head on
DenseNet-121, from the `Data_Entry_2017.csv` layout.

The two heads are one multilabel model of 15 outputs: the 14 findings and `abnormal`, which is 1 when
`Finding Labels` names any finding (the inverse of "No Finding"). Real data: `--data` the folder of
the PNGs (`images_001/images/...` or flat; matched by file name), `--labels Data_Entry_2017.csv`;
split by `Patient ID` (70/10/20); DenseNet-121 ImageNet weights, fully fine-tuned as CheXNet was."""

from __future__ import annotations

import csv
import statistics
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
    by_file_name,
    images_by_name,
    labelled_split,
    metric_row,
    train,
)

NAME = "cxr14-dual-head"
FINDINGS = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
BINARY = "abnormal"
METRICS = ["auroc", "auprc", "sensitivity", "specificity", "f1"]
# CheXNet fine-tuned the whole DenseNet-121; the smoke run's tiny ResNet takes a small LoRA.
MODEL = Model("densenet121", "test_resnet", "full", {"epochs": 5, "image_size": 224, "batch_size": 32})


def labels_rows(data_entry: Path) -> list[dict[str, Any]]:
    """One labels-CSV row per image of Data_Entry_2017.csv: its 14 findings and `abnormal`."""
    rows = []
    with data_entry.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"Image Index", "Finding Labels", "Patient ID"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{data_entry} lacks column(s) {', '.join(sorted(missing))}")
        for entry in reader:
            named = {f.strip() for f in entry["Finding Labels"].split("|") if f.strip()}
            unknown = named - set(FINDINGS) - {"No Finding"}
            if unknown:
                raise ValueError(f"{entry['Image Index']}: unknown finding(s) {', '.join(sorted(unknown))}")
            image = entry["Image Index"].strip()
            row: dict[str, Any] = {
                "path": image,
                "patient_id": entry["Patient ID"].strip(),
                "study_id": image.rsplit(".", 1)[0],
            }
            row.update({f: int(f in named) for f in FINDINGS})
            row[BINARY] = int(bool(named - {"No Finding"}))
            rows.append(row)
    return rows


def run(client: Client, options: Options, say: Say) -> Outcome:
    if options.smoke:
        root = options.out / "smoke-data" / "cxr14"
        images, data_entry = synthetic.cxr14(root, FINDINGS, seed=options.seed)
    elif options.data is None or options.labels is None:
        raise FileNotFoundError("--data: the ChestX-ray14 images folder; --labels: Data_Entry_2017.csv")
    else:
        images, data_entry = options.data, options.labels
    rows = labels_rows(data_entry)
    say(f"{data_entry}: {len(rows)} images, {sum(r[BINARY] for r in rows)} abnormal")
    uploads = by_file_name(rows, images_by_name(images), say)
    dataset, split = labelled_split(client, NAME, [*FINDINGS, BINARY], uploads, options, say)
    job = train(client, dataset, split, MODEL.job(options), options, say)
    return report(job.id, job.result or {}, {"dataset_id": dataset.id, "split_id": split.id})


def report(job_id: str, result: dict[str, Any], ids: dict[str, str]) -> Outcome:
    """Per label (thresholds by Youden's J on validation): the 14 findings, their mean, and the binary
    normal/abnormal head."""
    columns = ["label", "head", "test_positives", *METRICS, "threshold"]
    table = Table("cxr14_dual_head", "ChestX-ray14: 14 findings and normal/abnormal, test split", columns)
    confusion = result.get("confusion", {})
    for label, head in [*((f, "findings") for f in FINDINGS), (BINARY, "normal/abnormal")]:
        counts = confusion.get(label, {})
        positives = counts.get("tp", 0) + counts.get("fn", 0) if counts else None
        table.rows.append(
            [
                label,
                head,
                positives,
                *metric_row(result, label, METRICS),
                result.get("thresholds", {}).get(label),
            ]
        )
    means = []
    for m in METRICS:
        defined = [v for f in FINDINGS if (v := result.get("per_label", {}).get(f, {}).get(m)) is not None]
        means.append(statistics.fmean(defined) if defined else None)
    table.rows.insert(len(FINDINGS), ["mean of 14", "findings", None, *means, None])
    summary = {
        **ids,
        "job_id": job_id,
        "n_test": result.get("n_test"),
        "findings_mean": dict(zip(METRICS, means, strict=True)),
        "binary": dict(zip(METRICS, metric_row(result, BINARY, METRICS), strict=True)),
    }
    return Outcome(NAME, summary, [table])
