"""Experiment commands of the CLI, thin wrappers over the SDK: `medtune experiments create|get|list|wait`
(data-volume experiments). Exit codes as in client_commands; `wait` exits 0 only if it succeeded."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from medtune.cli.client_commands import (
    REFUSED,
    AutoOpt,
    JsonOpt,
    MethodOpt,
    WeightsOpt,
    _number,
    _take,
    client,
    csv_list,
    emit_json,
    handled,
    listing,
    out,
    show_one,
    table,
)
from medtune.experiment_models import METRICS, Experiment

experiments_app = typer.Typer(
    no_args_is_help=True, help="Data-volume experiments: AUROC and epoch time by size."
)
TargetOpt = Annotated[
    float | None, typer.Option(help="Also say how many training samples this test AUROC needs.")
]


def _fmt(value: Any, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _ci(value: Any) -> str:
    return "" if not value else f"[{_fmt(value[0])}, {_fmt(value[1])}]"


def show_experiment(exp: Experiment) -> None:
    balanced = "  balanced" if exp.balanced else ""
    out.print(f"experiment {exp.id}  [b]{exp.status}[/]  {exp.base_model}  sizes {exp.sizes}{balanced}")
    columns = ["size", "runs ok", *[f"{m} (sd) [95% CI]" for m in METRICS], "epoch s"]
    rows = [
        [
            r["size"],
            f"{r['succeeded']}/{r['runs']}",
            *[f"{_fmt(r[m])} ({_fmt(r[f'{m}_sd'])}) {_ci(r[f'{m}_ci95'])}" for m in METRICS],
            _fmt(r["epoch_seconds"], 2),
        ]  # fmt: skip
        for r in exp.table()
    ]
    table("by training-set size (test, macro)", columns, rows)
    line = exp.epoch_time_fit
    if line:
        out.print(
            f"epoch time: {line['at_100_s']:.2f} s at 100 samples, +{line['seconds_per_100']:.2f} s per 100"
        )
    curve = exp.learning_curve
    if curve:
        out.print(f"learning curve: AUROC(n) = {curve['a']:.3f} - {curve['b']:.3f} n^-{curve['c']:.3f}")
    if exp.target is not None:
        t = exp.target
        if t.samples is not None:
            lo, hi = (t.samples_ci95 or [None, None])[:2]
            out.print(
                f"target AUROC {t.target_auroc}: ~{t.samples} samples (95% CI {lo or '?'} to {hi or 'open'})"
            )
        else:
            out.print(f"target AUROC {t.target_auroc}: {t.reason}")


@experiments_app.command("create")
@handled
def experiments_create(
    dataset_id: str,
    split_id: Annotated[
        str, typer.Option("--split", help="The split: its val and test are fixed for all sizes.")
    ],
    base_model: Annotated[str, typer.Option(help="A catalog entry, e.g. densenet121.")],
    sizes: Annotated[str, typer.Option(help="Training-set sizes, comma-separated, e.g. 100,200,400.")],
    seeds: Annotated[str | None, typer.Option(help="Subset and training seeds, comma-separated.")] = None,
    balanced: Annotated[bool, typer.Option(help="Balance each subset per label.")] = False,
    labels: Annotated[str | None, typer.Option(help="Labels to balance on (default: all).")] = None,
    weights: WeightsOpt = None,
    method: MethodOpt = None,
    epochs: AutoOpt = None,
    batch_size: AutoOpt = None,
    image_size: AutoOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a data-volume experiment (one job per size and seed); prints its id."""
    given = {"epochs": epochs, "batch_size": batch_size, "image_size": image_size}
    hyper = {k: _number(v) for k, v in given.items() if v is not None}
    with client() as c:
        exp = c.experiments.create(
            dataset_id=dataset_id, split_id=split_id, sizes=[int(s) for s in csv_list(sizes)],
            seeds=[int(s) for s in csv_list(seeds)] or None, balanced=balanced, base_model=base_model,
            labels=csv_list(labels) or None, weights=weights, method=method, hyperparameters=hyper or None,
        )  # fmt: skip
    emit_json(exp) if as_json else typer.echo(exp.id)


@experiments_app.command("get")
@handled
def experiments_get(experiment_id: str, target_auroc: TargetOpt = None, as_json: JsonOpt = False) -> None:
    """The experiment's table by size, its fits and (with --target-auroc) the samples needed."""
    show_one(as_json, lambda c: c.experiments.get(experiment_id, target_auroc=target_auroc), show_experiment)


@experiments_app.command("list")
@handled
def experiments_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20, as_json: JsonOpt = False
) -> None:
    columns = ["id", "status", "base model", "sizes", "seeds", "created"]
    listing(
        as_json,
        lambda c: _take(c.experiments.list(limit=min(limit, 200)), limit),
        "experiments",
        columns,
        lambda e: [e.id, e.status, e.base_model, e.sizes, e.seeds, e.created_at],
    )


@experiments_app.command("wait")
@handled
def experiments_wait(
    experiment_id: str,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
    target_auroc: TargetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Wait for every run to end; exit 0 only if the experiment succeeded."""
    with client() as c:
        exp = c.experiments.wait(experiment_id, timeout=timeout, target_auroc=target_auroc)
    emit_json(exp) if as_json else show_experiment(exp)
    if exp.status != "succeeded":
        raise typer.Exit(REFUSED)


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app, name="experiments")
