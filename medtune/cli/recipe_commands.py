"""`medtune recipes`: list the recipes and run one (`run NAME [--smoke]`) against the server the SDK
finds (MEDTUNE_URL / `medtune login`); its tables are printed and written as CSV, Markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medtune.cli.client_commands import REFUSED, USAGE, JsonOpt, client, csv_list, err, handled, table
from medtune.recipes import RECIPES, Options

recipes_app = typer.Typer(no_args_is_help=True, help="The papers' workflows as one command each.")


@recipes_app.command("list")
def recipes_list() -> None:
    """The recipes and what each reports."""
    table("recipes", ["name", "what it does"], [[r.name, r.summary] for r in RECIPES.values()])


def _ints(value: str | None, option: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in csv_list(value)]
    except ValueError:
        err.print(f"[red]error:[/] {option} takes whole numbers separated by commas", highlight=False)
        raise typer.Exit(USAGE) from None


@recipes_app.command("run")
@handled
def recipes_run(
    name: Annotated[str, typer.Argument(help="mura-elbow, vindr-data-volume or cxr14-dual-head.")],
    smoke: Annotated[
        bool, typer.Option(help="Generated data, a tiny model, 1 epoch: checks the steps.")
    ] = False,
    data: Annotated[Path | None, typer.Option(help="The dataset's images folder on disk.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Its labels file (VinDr-CXR, ChestX-ray14).")] = None,
    out: Annotated[Path, typer.Option(help="Where the tables and the summary are written.")] = Path(
        "recipe-results"
    ),
    base_model: Annotated[str | None, typer.Option(help="Instead of the recipe's base model.")] = None,
    weights: Annotated[str | None, typer.Option(help="pretrained, random or a bm_... id.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    image_size: Annotated[int | None, typer.Option(min=16)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int, typer.Option(help="Split and training seed.")] = 7,
    sizes: Annotated[str | None, typer.Option(help="Training-set sizes, e.g. 100,500,1000.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Subset seeds, e.g. 1,2,3.")] = None,
    findings: Annotated[
        str | None, typer.Option(help="Findings (VinDr-CXR columns), comma-separated.")
    ] = None,
    target_auroc: Annotated[
        float | None, typer.Option(help="A sweep also says the training images this AUROC needs.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for each job.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a recipe end to end and print its tables."""
    recipe = RECIPES.get(name)
    if recipe is None:
        err.print(f"[red]error:[/] no recipe {name!r}; one of {', '.join(RECIPES)}", highlight=False)
        raise typer.Exit(USAGE)
    options = Options(
        smoke=smoke,
        data=data,
        labels=labels,
        out=out,
        base_model=base_model,
        weights=weights,
        epochs=epochs,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
        sizes=_ints(sizes, "--sizes"),
        seeds=_ints(seeds, "--seeds"),
        findings=csv_list(findings) or None,
        target_auroc=target_auroc,
        timeout=timeout,
        progress=False if as_json else None,
    )
    with client() as c:
        try:
            outcome = recipe.run(c, options, lambda message: err.print(message, highlight=False))
        except (RuntimeError, ValueError) as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(REFUSED) from None
    outcome.write(out)
    if as_json:
        typer.echo(json.dumps(json.loads(outcome.files[0].read_text()), indent=2))
    else:
        for t in outcome.tables:
            table(t.title, t.columns, [[t_cell(v) for v in row] for row in t.rows])
    err.print("wrote " + ", ".join(str(p) for p in outcome.files), highlight=False)


def t_cell(value: object) -> object:
    return f"{value:.3f}" if isinstance(value, float) else value


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")
