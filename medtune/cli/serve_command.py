"""`medtune serve`: the inference tier (inference_server.app) under uvicorn; needs the server extra.

One process per GPU: the engine, its bases and its adapter cache live in the process, so replicas
scale by processes or containers (compose `inference`), not by uvicorn workers. Settings come from
MEDTUNE_* (see inference_server.app); the API finds replicas through MEDTUNE_INFERENCE_URLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtune.cli.server import _server, _use_data_dir


def serve(
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 in a container)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="embedded data folder (objects on disk)")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the inference tier: the serving engine behind HTTP (GET /healthz, POST /v1/predict), on
    the GPU where there is one."""
    _use_data_dir(data_dir)
    _server()
    import uvicorn

    uvicorn.run(
        "inference_server.app:create_app", factory=True, host=host, port=port, log_level=log_level,
        access_log=False,
    )  # fmt: skip
