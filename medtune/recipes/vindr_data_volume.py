"""Recipe `vindr-data-volume`: VinDr-CXR's findings at 100 to 4,000 training images, one data-volume
experiment (nested subsets, one validation and test split for every size), and the white paper's table:
finding, size, AUROC, AUPRC, sensitivity, specificity, F1, with the mean over findings per size.

Real data: `--labels image_labels_train.csv` (VinDr-CXR's per-image findings: `image_id, rad_id` and a
0/1 column per finding, one row per reading radiologist; a finding is positive when any reader marked
it) and `--data` the folder of the images as PNG or JPEG named `<image_id>.png` (VinDr ships DICOM;
the usual 1024 px PNG conversion works). VinDr has no patient ids: each image is its own patient."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import replace
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
)
from medtune.recipes.experiment import Sweep, run_experiment

NAME = "vindr-data-volume"
# VinDr-CXR's 22 local findings less the five with fewer than 60 positive training images (lung cyst,
# edema, emphysema, lung cavity, clavicle fracture): 17 findings. `--findings` picks others.
FINDINGS = [
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Mediastinal shift",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
]
PAPER_SIZES = [100, 500, 1000, 2000, 4000]
SMOKE_SIZES = [8, 16, 24]
SMOKE_FINDINGS = 3
MODEL = Model(
    "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
    "test_resnet",
    "lora",
    {"epochs": 10, "image_size": 448, "batch_size": 16},
)
TARGET_AUROC = 0.85  # "how many more studies must we label to reach AUROC 0.85?"
METRICS = ["auroc", "auprc", "sensitivity", "specificity", "f1"]


def labels_rows(csv_path: Path, findings: list[str], names: dict[str, str]) -> list[dict[str, Any]]:
    """One labels-CSV row per image on disk (`names`: image_id -> file name); a finding is 1 when any of
    its readers marked it."""
    marked: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(findings, 0))
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or [])
        missing = ({"image_id"} | set(findings)) - columns
        if missing:
            raise ValueError(
                f"{csv_path} lacks column(s) {', '.join(sorted(missing))}; it has "
                f"{', '.join(sorted(columns))}"
            )
        for entry in reader:
            image = marked[entry["image_id"].strip()]
            for f in findings:
                image[f] = max(image[f], int(float(entry[f] or 0) > 0))
    return [
        {"path": names[i], "patient_id": i, "study_id": i, **flags}
        for i, flags in sorted(marked.items())
        if i in names
    ]


def run(client: Client, options: Options, say: Say) -> Outcome:
    # The smoke run sweeps three findings: every label adds a bootstrap of the test set to each job.
    findings = options.findings or (FINDINGS[:SMOKE_FINDINGS] if options.smoke else FINDINGS)
    if options.smoke:
        root = options.out / "smoke-data" / "vindr"
        folder, labels_csv = synthetic.vindr(root, findings, seed=options.seed)
    elif options.data is None or options.labels is None:
        raise FileNotFoundError("--data: the VinDr-CXR PNG folder; --labels: image_labels_train.csv")
    else:
        folder, labels_csv = options.data, options.labels
    found = images_by_name(folder)
    rows = labels_rows(labels_csv, findings, {p.stem: name for name, p in found.items()})
    say(f"{labels_csv}: {len(rows)} images on disk, {len(findings)} findings")
    dataset, split = labelled_split(client, NAME, findings, by_file_name(rows, found, say), options, say)
    sizes = options.sizes or (SMOKE_SIZES if options.smoke else PAPER_SIZES)
    asked = replace(options, target_auroc=options.target_auroc or TARGET_AUROC)
    sweep = run_experiment(client, dataset.id, split.id, sizes, findings, MODEL.job(options), asked, say)
    return report(findings, sweep, {"dataset_id": dataset.id, "split_id": split.id})


def report(findings: list[str], sweep: Sweep, ids: dict[str, str]) -> Outcome:
    """The white paper's table (a row per finding and size: the mean over seeds), the experiment's
    mean over findings per size (with its spread across seeds and bootstrap CI), and the fits."""
    table = Table(
        "vindr_data_volume",
        "VinDr-CXR: test metrics by finding and training-set size",
        ["finding", "size", *METRICS],
    )
    for size, per_label in sweep.per_label.items():
        table.rows += [[f, size, *[per_label[f][m] for m in METRICS]] for f in findings]
    means = Table(
        "vindr_data_volume_means",
        "VinDr-CXR: mean over findings by training-set size",
        ["size", "runs", *METRICS, "auroc_sd", "auroc_ci95_low", "auroc_ci95_high", "epoch_seconds"],
    )
    for row in sweep.macro:
        ci = row.get("auroc_ci95") or [None, None]
        means.rows.append(
            [
                row["size"],
                row["succeeded"],
                *[row[m] for m in METRICS],
                row["auroc_sd"],
                ci[0],
                ci[1],
                row["epoch_seconds"],
            ]
        )
    experiment = sweep.experiment
    summary = {
        **ids,
        "experiment_id": experiment.id,
        "sizes": experiment.sizes,
        "seeds": experiment.seeds,
        "epoch_time_fit": experiment.epoch_time_fit,
        "learning_curve": experiment.learning_curve,
        "samples_needed": experiment.target.model_dump() if experiment.target else None,
        "mean_auroc_by_size": {str(r["size"]): r["auroc"] for r in sweep.macro},
    }
    return Outcome(NAME, summary, [table, means])
