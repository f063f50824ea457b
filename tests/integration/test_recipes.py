"""The recipes' smoke runs as a user types them (`medtune recipes run NAME --smoke`, a `medtune` process)
against a live platform with a real Celery worker: each imports its generated dataset, splits it by
patient, trains through the queue and writes the tables its real run writes; the numbers it prints are
the job's own, read back through the SDK."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import medtune
from tests.live import Live, live_platform
from tests.services import ROOT

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_platform(tmp_path_factory.mktemp("live-recipes")) as platform:
        yield platform


def recipe(live: Live, name: str, out: Path, *args: str) -> dict[str, Any]:
    """Run the recipe's smoke command; its --json summary, after checking the files it wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {"MEDTUNE_URL": live.url, "MEDTUNE_API_KEY": live.key, "MEDTUNE_CONFIG_DIR": str(out / "cfg")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medtune.cli.main",
            "recipes",
            "run",
            name,
            "--smoke",
            "--out",
            str(out),
            "--json",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{done.stderr}\n{live.worker_log()}"
    summary: dict[str, Any] = json.loads(done.stdout)
    for table, content in summary["tables"].items():
        with (out / f"{table}.csv").open() as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == content["columns"] and len(rows) == len(content["rows"]) + 1
        assert (out / f"{table}.md").read_text().startswith(f"| {' | '.join(content['columns'])} |")
    return summary


def patients_in_one_part(client: medtune.Client, dataset_id: str, split_id: str) -> bool:
    parts: dict[str, set[str]] = {}
    for row in csv.DictReader(client.splits.manifest(dataset_id, split_id).splitlines()):
        parts.setdefault(row["patient_pseudonym"], set()).add(row["split"])
    return bool(parts) and all(len(p) == 1 for p in parts.values())


def test_mura_elbow_smoke(live: Live, tmp_path: Path) -> None:
    summary = recipe(live, "mura-elbow", tmp_path)
    rows = {r[0]: r for r in summary["tables"]["mura_elbow"]["rows"]}
    assert set(rows) == {"accuracy", "sensitivity", "specificity", "auroc"}
    with medtune.Client(live.url, live.key) as c:
        job = c.jobs.get(summary["job_id"])
        dataset = c.datasets.get(summary["dataset_id"])
        assert patients_in_one_part(c, dataset.id, summary["split_id"])
    assert job.base_model == "test_vit" and job.method and job.method["type"] == "lora"
    assert dataset.counts.accepted == 24 and dataset.counts.patients == 24  # one study each, from the CSV
    assert dataset.counts.labels["abnormal"].positives == 12
    result = job.result or {}
    for metric in ("accuracy", "sensitivity", "specificity"):
        assert rows[metric][1] == result["per_label"]["abnormal"][metric]
        assert summary["operating_point"][metric] == result["per_label"]["abnormal"][metric]
    assert summary["threshold"] == result["thresholds"]["abnormal"]
    assert sum(summary["confusion"].values()) == result["n_test"] > 0
    points = [r[0] for r in summary["tables"]["mura_elbow_operating_points"]["rows"]]
    assert points[0] == "youden" and len(points) > 1


def test_cxr14_dual_head_smoke(live: Live, tmp_path: Path) -> None:
    summary = recipe(live, "cxr14-dual-head", tmp_path)
    rows = summary["tables"]["cxr14_dual_head"]["rows"]
    assert [r[0] for r in rows][-2:] == ["mean of 14", "abnormal"] and len(rows) == 16
    with medtune.Client(live.url, live.key) as c:
        job = c.jobs.get(summary["job_id"])
        dataset = c.datasets.get(summary["dataset_id"])
        assert patients_in_one_part(c, dataset.id, summary["split_id"])
    assert job.base_model == "test_resnet" and len(job.labels or []) == 15 and dataset.task == "multilabel"
    # The binary head is "any finding": its positives are the studies whose Finding Labels name one.
    entries = list(csv.DictReader((tmp_path / "smoke-data" / "cxr14" / "Data_Entry_2017.csv").open()))
    abnormal = sum(e["Finding Labels"] != "No Finding" for e in entries)
    assert dataset.counts.labels["abnormal"].positives == abnormal and 0 < abnormal < len(entries)
    assert dataset.counts.patients == len({e["Patient ID"] for e in entries}) < len(entries)
    result = job.result or {}
    assert summary["binary"]["auroc"] == result["per_label"]["abnormal"]["auroc"]
    assert rows[-1][2] == result["confusion"]["abnormal"]["tp"] + result["confusion"]["abnormal"]["fn"]


def test_vindr_data_volume_smoke(live: Live, tmp_path: Path) -> None:
    summary = recipe(live, "vindr-data-volume", tmp_path)
    sizes = [8, 16, 24]
    findings = ["Aortic enlargement", "Atelectasis", "Calcification"]
    rows = summary["tables"]["vindr_data_volume"]["rows"]
    assert [(r[0], r[1]) for r in rows] == [(f, n) for n in sizes for f in findings]
    means = summary["tables"]["vindr_data_volume_means"]["rows"]
    assert [r[0] for r in means] == sizes and all(r[1] == 1 for r in means)
    with medtune.Client(live.url, live.key) as c:
        experiment = c.experiments.get(summary["experiment_id"])
        jobs = {run.size: c.jobs.get(run.job_id) for run in experiment.runs}
        assert patients_in_one_part(c, summary["dataset_id"], summary["split_id"])
    assert experiment.sizes == sizes and experiment.split_id == summary["split_id"]
    for row in rows:  # one seed: the table is each size's job's own per-label result
        result = jobs[row[1]].result or {}
        assert row[2:] == [
            result["per_label"][row[0]][m] for m in ("auroc", "auprc", "sensitivity", "specificity", "f1")
        ]
    for row, size in zip(means, experiment.table(), strict=True):
        assert row[2] == size["auroc"] and row[-1] == size["epoch_seconds"] > 0
    assert (
        summary["epoch_time_fit"] == experiment.epoch_time_fit and summary["epoch_time_fit"]["n_points"] == 3
    )
    assert summary["samples_needed"]["target_auroc"] == 0.85
