"""Every /v1 router, in one list so create_app stays one line per concern."""

from __future__ import annotations

from api.routers import (
    base_models,
    compare,
    datasets,
    dicomweb,
    erasures,
    experiments,
    jobs,
    keys,
    models,
    pacs,
    projects,
    splits,
)

ROUTERS = [
    projects.router,
    keys.router,
    splits.router,
    datasets.router,
    dicomweb.router,
    jobs.router,
    experiments.router,
    base_models.router,
    compare.router,  # before models: /models/{name}/compare
    models.router,
    erasures.router,
    pacs.router,
]
