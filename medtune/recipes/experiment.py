"""A data-volume experiment as a recipe runs it (`client.experiments`): created, waited for, and read
back as one row per size with each label's test metrics (the mean over seeds of its runs' jobs), the
experiment's own macro row (mean, SD across seeds, bootstrap CI) and its fits."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from medtune.client import Client
from medtune.experiment_models import Experiment
from medtune.recipes._common import Options, Say

METRICS = ("auroc", "auprc", "sensitivity", "specificity", "f1")


@dataclass
class Sweep:
    """What the recipe reports: `per_label[size][label][metric]` (means over seeds), the experiment's
    `table()` rows (macro per size) and the experiment itself (fits, samples needed)."""

    experiment: Experiment
    per_label: dict[int, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    macro: list[dict[str, Any]] = field(default_factory=list)


def run_experiment(
    client: Client,
    dataset_id: str,
    split_id: str,
    sizes: list[int],
    labels: list[str],
    job: dict[str, Any],
    options: Options,
    say: Say,
) -> Sweep:
    """Nested, per-label balanced subsets of the split's training part, for each of `options.seeds`
    (default one seed); raises unless every run of every size succeeded."""
    seeds = options.seeds or [1]
    created = client.experiments.create(
        type="data_volume",
        dataset_id=dataset_id,
        split_id=split_id,
        sizes=sizes,
        seeds=seeds,
        balanced=True,
        labels=labels,
        target_auroc=options.target_auroc,
        **job,
    )
    say(f"experiment {created.id}: sizes {created.sizes}, seeds {created.seeds}, {len(created.runs)} jobs")
    done = client.experiments.wait(created, timeout=options.wait_timeout(), target_auroc=options.target_auroc)
    if done.status != "succeeded":
        failed = [
            f"{r.job_id} (size {r.size}, seed {r.seed}) {r.status}"
            for r in done.runs
            if r.status != "succeeded"
        ]
        raise RuntimeError(f"experiment {done.id} {done.status}: {'; '.join(failed) or 'no result'}")
    return Sweep(done, per_label_by_size(client, done, labels), done.table())


def per_label_by_size(
    client: Client, experiment: Experiment, labels: list[str]
) -> dict[int, dict[str, dict[str, float | None]]]:
    """Each label's test metrics per size, the mean over the seeds' jobs (the experiment's own result
    is macro: the mean over labels)."""
    results: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in experiment.runs:
        results[run.size].append(client.jobs.get(run.job_id).result or {})
    return {
        size: {
            label: {m: _mean([r.get("per_label", {}).get(label, {}).get(m) for r in found]) for m in METRICS}
            for label in labels
        }
        for size, found in sorted(results.items())
    }


def _mean(values: list[Any]) -> float | None:
    defined = [float(v) for v in values if isinstance(v, int | float)]
    return statistics.fmean(defined) if defined else None
