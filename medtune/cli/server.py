"""Server commands: `up`, `worker`, `db upgrade`, `admin ...` (need the `server` extra)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
admin_app = typer.Typer(no_args_is_help=True, help="Projects and API keys.")


def _server() -> Any:
    try:
        from platform_core.config import get_settings
    except ImportError as exc:
        message = f"This command needs the server extra: pip install 'medtune[server]' (missing {exc.name})"
        console.print(message, style="red", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return get_settings()


def _use_data_dir(data_dir: Path | None) -> None:
    if data_dir is not None:
        os.environ["MEDTUNE_DATA_DIR"] = str(data_dir.resolve())
        from platform_core.config import get_settings

        get_settings.cache_clear()


@db_app.command("upgrade")
def db_upgrade(revision: str = "heads") -> None:
    """Apply migrations up to REVISION (all heads by default)."""
    settings = _server()
    from platform_core.db.migrate import upgrade

    upgrade(settings.db_url, revision)
    console.print(f"database at revision {revision}")


@admin_app.command("create-project")
def create_project(name: str) -> None:
    """Create a project."""
    settings = _server()
    from platform_core.auth import service
    from platform_core.db.session import make_engine, make_sessionmaker, unit_of_work

    with unit_of_work(make_sessionmaker(make_engine(settings.db_url))) as session:
        project = service.create_project(session, name)
        typer.echo(project.id)


@admin_app.command("create-key")
def create_key(
    project: Annotated[str, typer.Option(help="project name")],
    scopes: Annotated[str, typer.Option(help="comma-separated scopes; all when omitted")] = "",
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    settings = _server()
    from platform_core.auth import service
    from platform_core.db.session import make_engine, make_sessionmaker, unit_of_work
    from platform_core.errors import PlatformError

    wanted = [s.strip() for s in scopes.split(",") if s.strip()] or None
    try:
        with unit_of_work(make_sessionmaker(make_engine(settings.db_url))) as session:
            _key, raw = service.create_key(
                session, service.get_project_by_name(session, project), wanted, name
            )
    except PlatformError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from None
    typer.echo(raw)


def worker(
    queues: Annotated[str, typer.Option(help="queues to consume")] = "ingest,train,infer",
    concurrency: Annotated[int, typer.Option(help="processes; one per GPU for training")] = 1,
    data_dir: Annotated[Path | None, typer.Option(help="embedded data folder")] = None,
    beat: Annotated[
        bool, typer.Option(help="also run the beat (stale-job requeue); one per deployment")
    ] = False,
) -> None:
    """Run a Celery worker on the configured broker."""
    _use_data_dir(data_dir)
    settings = _server()
    schedule = settings.data_dir / "celerybeat-schedule" if beat else None
    os.execvp(sys.executable, [sys.executable, *worker_argv(queues, concurrency, schedule)])


def worker_argv(
    queues: str, concurrency: int, beat_schedule: Path | None = None, name: str | None = None
) -> list[str]:
    argv = [
        "-m", "celery", "-A", "worker.app:celery_app", "worker",
        "-Q", queues, "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip",
        "--without-mingle",
    ]  # fmt: skip
    if name is not None:
        argv += ["--hostname", f"{name}@%h"]
    if beat_schedule is not None:
        # The embedded beat requeues jobs whose worker vanished; one beat per deployment.
        argv += ["--beat", "--schedule", str(beat_schedule)]
    return argv


def dicom(
    data_dir: Annotated[Path | None, typer.Option(help="embedded data folder")] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (MEDTUNE_DICOM_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="DICOM port (MEDTUNE_DICOM_PORT, 11112)")] = None,
) -> None:
    """Run the DICOM listener: C-ECHO, and C-STORE into the dataset named by the called AE title."""
    _use_data_dir(data_dir)
    settings = _server()
    from platform_core.config import check_or_exit
    from platform_core.pacs.listener import serve
    from worker.app import dispatcher, make_celery

    check_or_exit(settings)
    serve(settings, dispatcher(make_celery(settings)), host, port)


def up(
    data_dir: Annotated[Path, typer.Option(help="where embedded mode keeps its database and objects")] = Path(
        ".medtune"
    ),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    mlflow_port: Annotated[int, typer.Option()] = 5000,
    dicom_port: Annotated[int, typer.Option(help="the DICOM listener's port")] = 11112,
) -> None:
    """Run the platform in embedded mode: API + console, a worker per class of work (ingest, train,
    infer), the DICOM listener and the MLflow UI."""
    _use_data_dir(data_dir)
    settings = _server()
    from medtune.cli.supervisor import run_embedded
    from platform_core.config import check_or_exit

    check_or_exit(settings)  # before anything starts: an empty or short secret ends `up` here

    raise typer.Exit(run_embedded(settings, host, port, mlflow_port, console, dicom_port))
