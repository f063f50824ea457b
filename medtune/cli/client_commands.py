"""Client commands of the CLI, thin wrappers over the SDK: login, datasets, labels, splits, jobs, models.

Exit codes scripts can trust: 0 done; 1 the server refused the request, or the job or upload did not
succeed; 2 bad usage; 3 the server could not be reached; 4 timed out waiting. Every read command takes
`--json` and then prints exactly one JSON document on stdout; messages and bars go to stderr.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from medtune import config
from medtune.client import Client
from medtune.errors import APIConnectionError, APIError, MedtuneError
from medtune.models import Dataset, Job, Split, UploadResult

OK, REFUSED, USAGE, UNREACHABLE, TIMED_OUT = 0, 1, 2, 3, 4

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

datasets_app = typer.Typer(no_args_is_help=True, help="Datasets: create, upload, inspect.")
labels_app = typer.Typer(no_args_is_help=True, help="Labels CSVs for a dataset.")
splits_app = typer.Typer(no_args_is_help=True, help="Patient-grouped, stratified splits.")
jobs_app = typer.Typer(no_args_is_help=True, help="Fine-tuning jobs.")
models_app = typer.Typer(no_args_is_help=True, help="The model registry and predictions.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one document) instead of a table.")]
WeightsOpt = Annotated[str | None, typer.Option(help="pretrained, random or a registered checkpoint.")]
MethodOpt = Annotated[str | None, typer.Option(help="lora, full or linear_probe.")]
AutoOpt = Annotated[str | None, typer.Option(help="A number or auto.")]  # a hyperparameter


def handled(fn: F) -> F:
    """Turn SDK errors into a one-line message on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except APIConnectionError as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(UNREACHABLE) from None
        except APIError as exc:
            param = f" (param: {exc.param})" if exc.param else ""
            err.print(f"[red]error:[/] {exc.type}: {exc.message}{param}", highlight=False)
            raise typer.Exit(REFUSED) from None
        except TimeoutError as exc:
            err.print(f"[red]timed out:[/] {exc}", highlight=False)
            raise typer.Exit(TIMED_OUT) from None
        except (MedtuneError, FileNotFoundError) as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(REFUSED) from None

    return wrapper  # type: ignore[return-value]


def client() -> Client:
    return Client()


def emit_json(value: Any) -> None:
    """Exactly one JSON document on stdout, whatever the terminal."""
    if isinstance(value, BaseModel):
        text = value.model_dump_json(indent=2)
    else:
        text = json.dumps(
            [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
            if isinstance(value, list)
            else value,
            indent=2,
        )
    typer.echo(text)


def table(title: str, columns: list[str], rows: Iterable[list[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    out.print(t)


def show_one(as_json: bool, fetch: Callable[[Client], T], show: Callable[[T], None]) -> None:
    """Fetch one resource with a fresh client and print it: one JSON document, or `show`'s rendering."""
    with client() as c:
        value = fetch(c)
    emit_json(value) if as_json else show(value)


def listing(
    as_json: bool,
    fetch: Callable[[Client], Iterable[T]],
    title: str,
    columns: list[str],
    row: Callable[[T], list[Any]],
) -> None:
    """A list command: fetch the items with a fresh client, then print them as one JSON document, or a
    table with `row(item)` per item."""
    with client() as c:
        found = list(fetch(c))
    if as_json:
        emit_json(found)
    else:
        table(title, columns, [row(item) for item in found])


def csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# --- login ----------------------------------------------------------------------------------


@handled
def login(
    url: Annotated[str, typer.Option(help="The medtune server.", envvar="MEDTUNE_URL")] = config.DEFAULT_URL,
    api_key: Annotated[
        str | None, typer.Option(help="An API key (asked for when not given).", envvar="MEDTUNE_API_KEY")
    ] = None,
) -> None:
    """Check an API key against the server and keep both in your config file (mode 0600)."""
    if not api_key:
        api_key = typer.prompt("API key", hide_input=True)
    with Client(url, api_key) as c:
        project = c.project()
    path = config.save_login(c.base_url, api_key)
    err.print(f"Logged in to [bold]{c.base_url}[/] as project [bold]{project.name}[/] ({project.id}).")
    err.print(f"Saved to {path}")


def logout() -> None:
    """Forget the stored server and key."""
    removed = config.remove_login()
    err.print("Logged out." if removed else "Not logged in.")


@handled
def whoami(as_json: JsonOpt = False) -> None:
    """The project and scopes of the current key."""
    with client() as c:
        project = c.project()
    if as_json:
        emit_json(project)
        return
    out.print(f"{project.name} ({project.id}) at {c.base_url}\nscopes: {', '.join(project.scopes)}")


# --- datasets -------------------------------------------------------------------------------


def show_dataset(ds: Dataset) -> None:
    c = ds.counts
    out.print(
        f"[bold]{ds.name}[/] ({ds.id})  task {ds.task}  labels {', '.join(ds.labels)}  [b]{ds.status}[/]"
    )
    columns = ["received", "accepted", "rejected", "duplicates", "pending", "studies", "patients", "labelled"]
    images = [c.received, c.accepted, c.rejected_total, c.duplicates, c.pending]
    table("images", columns, [[*images, c.studies, c.patients, c.labelled_studies]])
    if c.rejected:
        table("rejected by reason", ["reason", "images"], sorted(([k, v] for k, v in c.rejected.items())))
    if c.labels:
        table(
            "labels (studies)",
            ["label", "positive", "negative"],
            [[k, v.positives, v.negatives] for k, v in c.labels.items()],
        )


@datasets_app.command("create")
@handled
def datasets_create(
    name: str,
    labels: Annotated[str, typer.Option(help="Label names, comma-separated.")],
    task: Annotated[str, typer.Option(help="binary or multilabel.")] = "binary",
    min_image_size: Annotated[int | None, typer.Option(help="Shorter side in pixels (default 128).")] = None,
    modalities: Annotated[str | None, typer.Option(help="Comma-separated (default CR,DX).")] = None,
    cache_size: Annotated[int | None, typer.Option(help="Longest side of the pixel cache.")] = None,
    dates: Annotated[str | None, typer.Option(help="shift (per patient) or remove.")] = None,
    dicom_ae_title: Annotated[
        str | None, typer.Option(help="The called AE title a PACS sends this dataset's studies to.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a dataset; prints its id."""
    options: dict[str, Any] = {
        "min_image_size": min_image_size,
        "cache_size": cache_size,
        "dates": dates,
        "modalities": csv_list(modalities) or None,
    }
    with client() as c:
        ds = c.datasets.create(
            name,
            task,
            csv_list(labels),
            {k: v for k, v in options.items() if v is not None},
            dicom_ae_title=dicom_ae_title,
        )
    if as_json:
        emit_json(ds)
    else:
        typer.echo(ds.id)


@datasets_app.command("list")
@handled
def datasets_list(
    limit: Annotated[int, typer.Option(help="How many, newest last.")] = 100, as_json: JsonOpt = False
) -> None:
    """The project's datasets."""
    columns = ["id", "name", "task", "status", "accepted", "rejected", "pending", "patients"]
    listing(
        as_json,
        lambda c: _take(c.datasets.list(limit=min(limit, 100)), limit),
        "datasets",
        columns,
        lambda d: [
            d.id,
            d.name,
            d.task,
            d.status,
            d.counts.accepted,
            d.counts.rejected_total,
            d.counts.pending,
            d.counts.patients,
        ],
    )


@datasets_app.command("show")
@handled
def datasets_show(dataset_id: str, as_json: JsonOpt = False) -> None:
    """A dataset's status and the ingest report: counts, rejections by reason, labels."""
    show_one(as_json, lambda c: c.datasets.get(dataset_id), show_dataset)


@datasets_app.command("upload")
@handled
def datasets_upload(
    dataset_id: str,
    paths: Annotated[list[Path], typer.Argument(help="DICOM files, folders (walked) and zips.")],
    manifest: Annotated[Path | None, typer.Option(help="CSV for PNG/JPEG images.")] = None,
    parallel: Annotated[int, typer.Option(help="Requests in flight.")] = 4,
    wait: Annotated[
        bool, typer.Option(help="Wait for the pixel work to finish, then show the report.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 1800,
    as_json: JsonOpt = False,
) -> None:
    """Upload files in parallel with a progress bar; exit 1 if any request failed after retries."""
    with client() as c:
        result = c.datasets.upload(
            dataset_id, paths, manifest=manifest, parallel=parallel, progress=None if not as_json else False
        )
        ds = c.datasets.wait(dataset_id, timeout=timeout) if wait else None
    if as_json:
        emit_json(
            {"upload": result.model_dump(mode="json"), "dataset": ds.model_dump(mode="json") if ds else None}
        )
    else:
        _upload_summary(result)
        if ds is not None:
            show_dataset(ds)
    if result.failed:
        raise typer.Exit(REFUSED)


def _upload_summary(result: UploadResult) -> None:
    err.print(
        f"{len(result.data)} files: {result.queued} queued, {result.duplicates} duplicates, "
        f"{result.rejected} rejected, {len(result.failed)} failed"
    )
    rejected = [f for f in result.data if f.outcome in ("rejected", "failed")]
    if rejected:
        table(
            "not ingested",
            ["file", "outcome", "reason"],
            [[f.filename, f.outcome, f.reason] for f in rejected],
        )


@datasets_app.command("images")
@handled
def datasets_images(
    dataset_id: str,
    status: Annotated[str | None, typer.Option(help="queued, accepted or rejected.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Images of a dataset (pseudonymous ids), with status, reason and labels."""
    columns = ["id", "status", "reason", "patient", "study", "size", "labels"]
    listing(
        as_json,
        lambda c: _take(c.datasets.images(dataset_id, status=status, limit=min(limit, 500)), limit),
        "images",
        columns,
        lambda i: [
            i.id,
            i.status,
            i.reason,
            i.patient_pseudonym,
            i.study_pseudonym,
            f"{i.columns}x{i.rows}" if i.rows else "",
            json.dumps(i.labels) if i.labels else "",
        ],
    )


@datasets_app.command("wait")
@handled
def datasets_wait(
    dataset_id: str, timeout: Annotated[float, typer.Option()] = 1800, as_json: JsonOpt = False
) -> None:
    """Wait until ingestion is over, then show the report."""
    show_one(as_json, lambda c: c.datasets.wait(dataset_id, timeout=timeout), show_dataset)


@labels_app.command("upload")
@handled
def labels_upload(dataset_id: str, csv: Path, as_json: JsonOpt = False) -> None:
    """Import a labels CSV (AccessionNumber or StudyInstanceUID + one 0/1 column per label)."""
    with client() as c:
        result = c.datasets.upload_labels(dataset_id, csv)
    if as_json:
        emit_json(result)
        return
    err.print(
        f"{result.rows} rows: {result.matched} matched, {result.unmatched} not matched yet, "
        f"{len(result.errors)} errors"
    )
    if result.errors:
        table("errors", ["row", "column", "message"], [[e.row, e.column, e.message] for e in result.errors])


# --- splits ---------------------------------------------------------------------------------


def show_split(split: Split) -> None:
    out.print(f"[bold]{split.id}[/]  seed {split.seed}  sha256 {split.sha256}")
    rows = []
    for name in ("train", "val", "test"):
        c = split.counts.get(name) or {}
        if isinstance(c, dict):
            rows.append([name, c.get("patients"), c.get("studies"), c.get("images")])
    if rows:
        table("split", ["split", "patients", "studies", "images"], rows)


@splits_app.command("create")
@handled
def splits_create(
    dataset_id: str,
    seed: Annotated[int | None, typer.Option(help="Drawn and recorded when omitted.")] = None,
    train: Annotated[float | None, typer.Option(help="Fraction (default 0.7).")] = None,
    val: Annotated[float | None, typer.Option(help="Fraction (default 0.15).")] = None,
    test: Annotated[float | None, typer.Option(help="Fraction (default 0.15).")] = None,
    column: Annotated[str | None, typer.Option(help="Take the split from this labels CSV column.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Split the dataset's current version by patient, stratified by label."""
    fractions = None
    if any(v is not None for v in (train, val, test)):
        fractions = {"train": train or 0.7, "val": val or 0.15, "test": test or 0.15}
    show_one(
        as_json,
        lambda c: c.splits.create(dataset_id, seed=seed, fractions=fractions, column=column),
        show_split,
    )


@splits_app.command("show")
@handled
def splits_show(
    dataset_id: str,
    split_id: str,
    manifest: Annotated[bool, typer.Option(help="Print the manifest CSV.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A split's seed, hash and counts (or its manifest CSV)."""
    with client() as c:
        if manifest:
            typer.echo(c.splits.manifest(dataset_id, split_id), nl=False)
            return
        split = c.splits.get(dataset_id, split_id)
    emit_json(split) if as_json else show_split(split)


# --- jobs -----------------------------------------------------------------------------------


def show_job(job: Job) -> None:
    p = job.progress
    epoch = f"epoch {p.epoch}/{p.epochs}" if p and p.epochs else ""
    out.print(f"[bold]{job.id}[/]  {job.status}  {job.base_model or ''}  {epoch}")
    if job.best and job.best.value is not None:
        out.print(f"best {job.best.metric} {job.best.value:.4f} at epoch {job.best.epoch}")
    if job.error and job.error.message:
        out.print(f"[red]{job.error.code or 'error'}:[/] {job.error.message}")
    if job.mlflow_url:
        out.print(f"MLflow: {job.mlflow_url}")


@jobs_app.command("create")
@handled
def jobs_create(
    dataset_id: str,
    base_model: Annotated[str, typer.Option(help="A catalog entry, e.g. vit_small_patch16_224.")],
    split_id: Annotated[str | None, typer.Option("--split", help="An existing split id.")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Make a split with this seed.")] = None,
    weights: WeightsOpt = None,
    method: MethodOpt = None,
    epochs: AutoOpt = None,
    batch_size: AutoOpt = None,
    learning_rate: AutoOpt = None,
    image_size: AutoOpt = None,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
    watch: Annotated[bool, typer.Option(help="Follow the job to its end with a live bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a fine-tuning job; prints its id (or follows it with --watch)."""
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "image_size": image_size,
    }
    hyper = {k: _number(v) for k, v in given.items() if v is not None}
    with client() as c:
        job = c.jobs.create(
            dataset_id,
            base_model,
            split=split_id,
            split_seed=split_seed,
            weights=weights,
            method=method,
            hyperparameters=hyper or None,
            seed=seed,
        )
        if watch:
            job = c.jobs.wait(job, progress=None if not as_json else False)
    if as_json:
        emit_json(job)
    elif watch:
        show_job(job)
    else:
        typer.echo(job.id)
    if watch and job.status != "succeeded":
        raise typer.Exit(REFUSED)


def _number(value: str) -> Any:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        return float(value)


@jobs_app.command("watch")
@handled
def jobs_watch(
    job_id: str,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow a job with a live bar (epoch, validation AUROC); exit 0 only if it succeeded."""
    with client() as c:
        job = c.jobs.wait(job_id, timeout=timeout, progress=None if not as_json else False)
    emit_json(job) if as_json else show_job(job)
    if job.status != "succeeded":
        raise typer.Exit(REFUSED)


@jobs_app.command("show")
@handled
def jobs_show(job_id: str, as_json: JsonOpt = False) -> None:
    """A job's status, progress, best epoch and result."""
    show_one(as_json, lambda c: c.jobs.get(job_id), show_job)


@jobs_app.command("list")
@handled
def jobs_list(limit: Annotated[int, typer.Option()] = 50, as_json: JsonOpt = False) -> None:
    """The project's fine-tuning jobs."""
    listing(
        as_json,
        lambda c: _take(c.jobs.list(limit=min(limit, 100)), limit),
        "jobs",
        ["id", "status", "base model", "epoch", "best"],
        lambda j: [
            j.id,
            j.status,
            j.base_model,
            f"{j.progress.epoch}/{j.progress.epochs}" if j.progress else "",
            f"{j.best.value:.3f}" if j.best and j.best.value is not None else "",
        ],
    )


@jobs_app.command("cancel")
@handled
def jobs_cancel(job_id: str, as_json: JsonOpt = False) -> None:
    """Cancel a job (it stops within one step and keeps its checkpoints)."""
    show_one(as_json, lambda c: c.jobs.cancel(job_id), show_job)


@jobs_app.command("resume")
@handled
def jobs_resume(job_id: str, as_json: JsonOpt = False) -> None:
    """Resume a failed or cancelled job from its last checkpoint."""
    show_one(as_json, lambda c: c.jobs.resume(job_id), show_job)


# --- models ---------------------------------------------------------------------------------


@models_app.command("promote")
@handled
def models_promote(
    job_id: str,
    name: Annotated[str, typer.Option(help="The registered model's name.")],
    checkpoint: Annotated[str, typer.Option(help="best, or an epoch number.")] = "best",
    as_json: JsonOpt = False,
) -> None:
    """Register a job's best checkpoint as the next version of NAME."""
    with client() as c:
        version = c.models.promote(
            job_id, name, checkpoint=int(checkpoint) if checkpoint.isdigit() else checkpoint
        )
    if as_json:
        emit_json(version)
    else:
        typer.echo(version.ref)


@models_app.command("list")
@handled
def models_list(as_json: JsonOpt = False) -> None:
    """Registered models with their versions and aliases."""
    listing(
        as_json,
        lambda c: c.models.list(),
        "models",
        ["name", "latest", "aliases"],
        lambda m: [
            m.name,
            m.latest_version,
            ", ".join(f"{a}={v}" for a, v in m.aliases.items()),
        ],
    )


@models_app.command("alias")
@handled
def models_alias(
    name: str,
    alias: str,
    version: int,
    force: Annotated[bool, typer.Option(help="Move it even to a version with a lower test AUROC.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Point ALIAS (e.g. champion) of NAME at VERSION."""
    with client() as c:
        result = c.models.set_alias(name, alias, version, force=force)
    emit_json(result) if as_json else typer.echo(f"{name}@{alias} -> {version}")


@models_app.command("predict")
@handled
def models_predict(
    ref: Annotated[str, typer.Argument(help="name, name:N or name@alias.")],
    images: Annotated[list[Path], typer.Argument(help="DICOM, PNG or JPEG files.")],
    as_json: JsonOpt = False,
) -> None:
    """Probabilities per label for each image."""
    with client() as c:
        result = c.models.predict(ref, images)
    if as_json:
        emit_json(result)
        return
    labels = list(result.predictions[0].probabilities) if result.predictions else []
    table(
        f"{result.model}:{result.version}",
        ["image", *labels],
        [
            [p.name, *(f"{pred.probabilities[k]:.3f}{' *' if pred.predicted.get(k) else ''}" for k in labels)]
            for p, pred in zip(images, result.predictions, strict=False)
        ],
    )


def _take(items: Iterable[Any], n: int) -> Iterable[Any]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(labels_app, name="labels")
    app.add_typer(splits_app, name="splits")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(models_app, name="models")
