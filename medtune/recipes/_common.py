"""What every recipe shares: its options, its outcome (tables written as CSV, Markdown and JSON), and the
public-API steps they all take: a PNG dataset with a labels CSV, a patient-grouped split, a job."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtune.client import Client
from medtune.errors import InvalidRequestError
from medtune.models import Dataset, Job, Split

Say = Callable[[str], None]

# The smoke runs' tiny job: the catalog's test models at 64 px, one epoch, no augmentation.
SMOKE_HYPERPARAMETERS = {
    "epochs": 1,
    "batch_size": 8,
    "image_size": 64,
    "augmentation": "none",
    "warmup_epochs": 0,
}
SMOKE_LORA = {"type": "lora", "lora": {"r": 4, "alpha": 8}}


@dataclass
class Options:
    """One run's options. `data`/`labels` point at the dataset on disk (ignored by a smoke run, which
    generates its own); None elsewhere means the recipe's documented default."""

    smoke: bool = False
    data: Path | None = None
    labels: Path | None = None
    out: Path = Path("recipe-results")
    base_model: str | None = None
    weights: str | None = None
    epochs: int | None = None
    image_size: int | None = None
    batch_size: int | None = None
    seed: int = 7
    sizes: list[int] | None = None
    seeds: list[int] | None = None
    findings: list[str] | None = None
    target_auroc: float | None = None  # a data-volume sweep also says the samples this AUROC needs
    timeout: float | None = None  # seconds to wait for each job or experiment; None: no limit
    progress: bool | None = None

    def wait_timeout(self) -> float | None:
        return self.timeout if self.timeout is not None else (600.0 if self.smoke else None)


@dataclass
class Table:
    """A result table: `name` names its files (`<name>.csv`, `<name>.md`)."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([[_cell(v, csv=True) for v in row] for row in self.rows])
        return buf.getvalue()

    def markdown(self) -> str:
        lines = [f"| {' | '.join(self.columns)} |", f"|{'---|' * len(self.columns)}"]
        lines += [f"| {' | '.join(_cell(v) for v in row)} |" for row in self.rows]
        return "\n".join(lines) + "\n"


def _cell(value: Any, csv: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "" if csv else "n/a"
    if isinstance(value, float):
        return repr(value) if csv else f"{value:.3f}"
    return str(value)


@dataclass
class Outcome:
    """What a recipe hands back: its tables and a JSON summary (ids of what it made, the numbers)."""

    recipe: str
    summary: dict[str, Any]
    tables: list[Table]
    files: list[Path] = field(default_factory=list)

    def write(self, out: Path) -> Outcome:
        """`<recipe>.json` and each table as CSV and Markdown under `out`; the paths go in `files`."""
        out.mkdir(parents=True, exist_ok=True)
        summary = out / f"{self.recipe}.json"
        doc = {
            "recipe": self.recipe,
            **self.summary,
            "tables": {t.name: {"columns": t.columns, "rows": t.rows} for t in self.tables},
        }
        summary.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        self.files = [summary]
        for table in self.tables:
            for suffix, text in ((".csv", table.csv()), (".md", table.markdown())):
                path = out / f"{table.name}{suffix}"
                path.write_text(text)
                self.files.append(path)
        return self


def pick(options: Options, smoke: Any, real: Any, given: Any) -> Any:
    """The user's value when given, else the smoke or the real default."""
    if given is not None:
        return given
    return smoke if options.smoke else real


def hyperparameters(options: Options, real: dict[str, Any]) -> dict[str, Any]:
    """The smoke run's tiny settings or the recipe's real ones, with the user's overrides on top."""
    base = dict(SMOKE_HYPERPARAMETERS) if options.smoke else dict(real)
    given = {"epochs": options.epochs, "image_size": options.image_size, "batch_size": options.batch_size}
    base.update({k: v for k, v in given.items() if v is not None})
    return base


@dataclass(frozen=True)
class Model:
    """A recipe's model: the real run's base model, method and settings, and the smoke run's model."""

    real: str
    smoke: str
    method: str
    settings: dict[str, Any]

    def job(self, options: Options) -> dict[str, Any]:
        """The job fields (the smoke run: random weights, a small LoRA, the tiny settings)."""
        return {
            "base_model": pick(options, self.smoke, self.real, options.base_model),
            "weights": pick(options, "random", "pretrained", options.weights),
            "method": SMOKE_LORA if options.smoke else {"type": self.method},
            "hyperparameters": hyperparameters(options, self.settings),
        }


def manifest_csv(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> bytes:
    """The PNG/JPEG dataset's labels CSV: `path, patient_id, study_id` and one 0/1 column per label."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["path", "patient_id", "study_id", *labels], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


@dataclass(frozen=True)
class Upload:
    """One upload: a folder (its files named by their path in it) or files (named by file name), and
    the labels-CSV rows that name them."""

    paths: Path | list[Path]
    rows: list[dict[str, Any]]


# Images per upload of a file list: every request of an upload carries that upload's labels CSV, so a
# large dataset goes in parts, each with the rows of its own images.
CHUNK = 500
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def images_by_name(folder: Path) -> dict[str, Path]:
    """Every PNG/JPEG under `folder` by file name (NIH's images_001/images/... or a flat folder)."""
    return {p.name: p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def by_file_name(rows: Sequence[dict[str, Any]], found: dict[str, Path], say: Say) -> list[Upload]:
    """Uploads of the rows whose `path` (a file name) is on disk, CHUNK images each."""
    kept = [r for r in rows if r["path"] in found]
    if len(kept) < len(rows):
        say(f"{len(rows) - len(kept)} of the {len(rows)} images listed are not on disk; left out")
    return [
        Upload([found[r["path"]] for r in kept[i : i + CHUNK]], kept[i : i + CHUNK])
        for i in range(0, len(kept), CHUNK)
    ]


def import_pngs(
    client: Client, name: str, labels: list[str], uploads: list[Upload], options: Options, say: Say
) -> Dataset:
    """A PNG dataset made over the API: created, each upload sent with its labels CSV, ingested."""
    task = "binary" if len(labels) == 1 else "multilabel"
    dataset_options = {"min_image_size": 64, "cache_size": 64} if options.smoke else {}
    dataset = client.datasets.create(name, task, labels, dataset_options)
    say(f"dataset {dataset.id}: uploading {sum(len(u.rows) for u in uploads)} images")
    with tempfile.TemporaryDirectory(prefix="medtune-recipe-") as tmp:
        manifest = Path(tmp) / "labels.csv"
        for upload in uploads:
            manifest.write_bytes(manifest_csv(upload.rows, labels))
            result = client.datasets.upload(
                dataset, upload.paths, manifest=manifest, progress=options.progress
            )
            if result.failed:
                raise RuntimeError(f"{len(result.failed)} files could not be sent, e.g. {result.failed[0]}")
    dataset = client.datasets.wait(dataset, timeout=options.wait_timeout() or 86400.0)
    counts = dataset.counts
    say(
        f"dataset {dataset.id}: {counts.accepted} images accepted, {counts.patients} patients, "
        f"rejected {counts.rejected or 'none'}"
    )
    if dataset.status != "ready" or counts.accepted == 0:
        raise RuntimeError(f"dataset {dataset.id} is {dataset.status} with {counts.accepted} images accepted")
    return dataset


def labelled_split(
    client: Client, name: str, labels: list[str], uploads: list[Upload], options: Options, say: Say
) -> tuple[Dataset, Split]:
    """The whole labels CSV written under `options.out`, the dataset imported, and split by patient."""
    rows = [r for u in uploads for r in u.rows]
    if not rows:
        raise FileNotFoundError("no labelled images found on disk")
    path = options.out / f"{name}-labels.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(manifest_csv(rows, labels))
    patients = len({r["patient_id"] for r in rows})
    say(f"{len(rows)} images of {patients} patients, {len(labels)} label(s); labels CSV {path}")
    dataset = import_pngs(client, name, labels, uploads, options, say)
    return dataset, patient_split(client, dataset, options, say)


SMOKE_SPLIT_TRIES = 5


def _create_split(
    client: Client, dataset: Dataset, options: Options, fractions: dict[str, float] | None, say: Say
) -> Split:
    """The split at the recipe's seed. The smoke's generated data is small (48 patients, 15 labels),
    and which patient lands where follows the platform's own pseudonyms, so a smoke split may find a
    label without a positive patient in a part: it then tries the next seeds, saying so. A real run
    keeps the refusal, which is what the user must act on."""
    tries = SMOKE_SPLIT_TRIES if options.smoke else 1
    for seed in range(options.seed, options.seed + tries):
        try:
            return client.splits.create(dataset, seed=seed, fractions=fractions)
        except InvalidRequestError as exc:
            if seed == options.seed + tries - 1:
                raise
            say(f"split at seed {seed} refused on the generated data ({exc}); trying seed {seed + 1}")
    raise AssertionError("unreachable")


def patient_split(client: Client, dataset: Dataset, options: Options, say: Say) -> Split:
    """Seeded, patient-grouped and label-stratified: no patient is in two parts."""
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25} if options.smoke else None
    split = _create_split(client, dataset, options, fractions, say)
    parts = {k: v.get("patients") if isinstance(v, dict) else v for k, v in split.counts.items()}
    say(f"split {split.id} (seed {split.seed}): patients per part {parts}")
    return split


def train(
    client: Client, dataset: Dataset, split: Split, body: dict[str, Any], options: Options, say: Say
) -> Job:
    """One fine-tuning job, waited for; a job that did not succeed raises with its error."""
    job = client.jobs.create(dataset, split=split, seed=options.seed, **body)
    say(
        f"job {job.id}: {body['base_model']} ({job.method and job.method.get('type')}), "
        f"{(job.hyperparameters or {}).get('epochs')} epoch(s)"
    )
    job = client.jobs.wait(job, timeout=options.wait_timeout(), progress=options.progress)
    if job.status != "succeeded" or not job.result:
        reason = job.error.message if job.error else "no result"
        raise RuntimeError(f"job {job.id} {job.status}: {reason}")
    return job


def metric_row(result: dict[str, Any], label: str, metrics: Sequence[str]) -> list[Any]:
    """A label's test metrics (at its validation-chosen Youden threshold) from a job's result."""
    values = result.get("per_label", {}).get(label, {})
    return [values.get(m) for m in metrics]


def interval(result: dict[str, Any], label: str, metric: str) -> list[float] | None:
    """The bootstrap 95% CI of a label's test metric, when the result has one."""
    found = result.get("ci95", {}).get("per_label", {}).get(label, {}).get(metric)
    return list(found) if found else None
