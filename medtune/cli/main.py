"""`medtune`: the root typer app; server commands load only when the server extra is installed."""

from __future__ import annotations

import typer

import medtune.cli.serve_command as serve_command
from medtune.cli import client_commands, experiment_commands, pacs_commands, recipe_commands, server

app = typer.Typer(no_args_is_help=True, help="medtune: fine-tune and serve medical-imaging models.")
app.add_typer(server.db_app, name="db")
app.add_typer(server.admin_app, name="admin")
app.command("up")(server.up)
app.command("worker")(server.worker)
app.command("dicom")(server.dicom)
app.command("serve")(serve_command.serve)
client_commands.register(app)
pacs_commands.register(app)
experiment_commands.register(app)
recipe_commands.register(app)

if __name__ == "__main__":
    app()
