"""PACS commands of the CLI, thin wrappers over the SDK: `medtune pacs-nodes` (the PACS medtune pulls
from) and `medtune imports` (pull studies from a node into a dataset). Exit codes as in client_commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtune.cli.client_commands import (
    JsonOpt,
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
from medtune.pacs_models import PacsImport, PacsNode

nodes_app = typer.Typer(
    no_args_is_help=True, help="PACS nodes: the DICOMweb or DIMSE peers imports pull from."
)
imports_app = typer.Typer(no_args_is_help=True, help="Imports: pull studies from a PACS node into a dataset.")


def show_node(node: PacsNode) -> None:
    address = node.url if node.kind == "dicomweb" else f"{node.ae_title}@{node.host}:{node.port}"
    out.print(f"[bold]{node.name}[/] ({node.id})  {node.kind}  {address}  auth {node.auth_type}")


def show_import(imp: PacsImport) -> None:
    p = imp.progress
    out.print(
        f"import {imp.id} into {imp.dataset_id} from {imp.node_id} by {imp.key_type}  [b]{imp.status}[/]"
    )
    columns = ["studies", "done", "not found", "failed", "instances", "queued", "duplicates", "rejected"]
    counts = [p.studies_total, p.studies_done, p.studies_not_found, p.studies_failed, p.instances, p.queued]
    table("progress", columns, [[*counts, p.duplicates, p.rejected]])
    if imp.error:
        out.print(f"[red]error:[/] {imp.error}")


# --- nodes ----------------------------------------------------------------------------------


@nodes_app.command("create")
@handled
def nodes_create(
    name: str,
    kind: Annotated[str, typer.Option(help="dicomweb or dimse.")],
    url: Annotated[str | None, typer.Option(help="dicomweb: the DICOMweb base URL.")] = None,
    host: Annotated[str | None, typer.Option(help="dimse: the peer's host.")] = None,
    port: Annotated[int | None, typer.Option(help="dimse: the peer's port.")] = None,
    ae_title: Annotated[str | None, typer.Option(help="dimse: the peer's AE title.")] = None,
    token: Annotated[
        str | None, typer.Option(help="dicomweb: a bearer token.", envvar="MEDTUNE_PACS_TOKEN")
    ] = None,
    username: Annotated[str | None, typer.Option(help="dicomweb: basic auth user.")] = None,
    password: Annotated[
        str | None, typer.Option(help="dicomweb: basic auth password.", envvar="MEDTUNE_PACS_PASSWORD")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a PACS node; prints its id. Credentials are stored encrypted and never shown again."""
    if username is not None and password is None:
        password = typer.prompt("Password", hide_input=True, err=True)  # stdout carries the id
    with client() as c:
        node = c.pacs_nodes.create(
            name,
            kind,
            url=url,
            host=host,
            port=port,
            ae_title=ae_title,
            token=token,
            username=username,
            password=password,
        )
    emit_json(node) if as_json else typer.echo(node.id)


@nodes_app.command("list")
@handled
def nodes_list(limit: Annotated[int, typer.Option()] = 100, as_json: JsonOpt = False) -> None:
    """The project's PACS nodes."""
    columns = ["id", "name", "kind", "url", "host", "port", "ae_title", "auth"]
    listing(
        as_json,
        lambda c: _take(c.pacs_nodes.list(limit=min(limit, 100)), limit),
        "PACS nodes",
        columns,
        lambda n: [
            n.id,
            n.name,
            n.kind,
            n.url,
            n.host,
            n.port,
            n.ae_title,
            n.auth_type,
        ],
    )


@nodes_app.command("show")
@handled
def nodes_show(node_id: str, as_json: JsonOpt = False) -> None:
    """One PACS node (its secret is never shown)."""
    show_one(as_json, lambda c: c.pacs_nodes.get(node_id), show_node)


@nodes_app.command("delete")
@handled
def nodes_delete(node_id: str) -> None:
    """Delete a PACS node and its stored credentials."""
    with client() as c:
        c.pacs_nodes.delete(node_id)
    typer.echo(f"deleted {node_id}", err=True)


# --- imports --------------------------------------------------------------------------------


@imports_app.command("create")
@handled
def imports_create(
    dataset_id: str,
    node: Annotated[str, typer.Option("--node", help="The PACS node id to pull from.")],
    study_uids: Annotated[str | None, typer.Option(help="StudyInstanceUIDs, comma-separated.")] = None,
    accessions: Annotated[str | None, typer.Option(help="AccessionNumbers, comma-separated.")] = None,
    labels_csv: Annotated[
        Path | None, typer.Option(help="A labels CSV: imports its labels and pulls exactly its studies.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start pulling studies into a dataset; prints the import's id (poll with `imports show`)."""
    chosen = [v for v in (study_uids, accessions, labels_csv) if v is not None]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --study-uids, --accessions, --labels-csv")
    with client() as c:
        imp = c.imports.create(
            dataset_id,
            node,
            study_instance_uids=csv_list(study_uids) if study_uids else None,
            accession_numbers=csv_list(accessions) if accessions else None,
            labels_csv=labels_csv,
        )
    emit_json(imp) if as_json else typer.echo(imp.id)


@imports_app.command("list")
@handled
def imports_list(
    dataset_id: str, limit: Annotated[int, typer.Option()] = 100, as_json: JsonOpt = False
) -> None:
    """A dataset's imports."""
    columns = ["id", "node", "by", "status", "studies", "done", "not found", "failed", "queued"]
    listing(
        as_json,
        lambda c: _take(c.imports.list(dataset_id, limit=min(limit, 100)), limit),
        "imports",
        columns,
        lambda i: [
            i.id,
            i.node_id,
            i.key_type,
            i.status,
            i.progress.studies_total,
            i.progress.studies_done,
            i.progress.studies_not_found,
            i.progress.studies_failed,
            i.progress.queued,
        ],
    )


@imports_app.command("show")
@handled
def imports_show(dataset_id: str, import_id: str, as_json: JsonOpt = False) -> None:
    """An import's status, progress and per-study outcomes (studies named by HMAC)."""
    show_one(as_json, lambda c: c.imports.get(dataset_id, import_id), show_import)


@imports_app.command("cancel")
@handled
def imports_cancel(dataset_id: str, import_id: str, as_json: JsonOpt = False) -> None:
    """Cancel an import (it stops before its next study; its sealed keys are deleted)."""
    show_one(as_json, lambda c: c.imports.cancel(dataset_id, import_id), show_import)


def register(app: typer.Typer) -> None:
    app.add_typer(nodes_app, name="pacs-nodes")
    app.add_typer(imports_app, name="imports")
