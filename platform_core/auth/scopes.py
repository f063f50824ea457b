"""The scopes an API key can hold."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    DATASETS_READ = "datasets:read"
    DATASETS_WRITE = "datasets:write"
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    MODELS_READ = "models:read"
    MODELS_WRITE = "models:write"
    INFERENCE = "inference"
    ADMIN = "admin"


ALL_SCOPES = [s.value for s in Scope]


def parse_scopes(values: list[str]) -> list[str]:
    known = set(ALL_SCOPES)
    unknown = [v for v in values if v not in known]
    if unknown:
        from platform_core.errors import Invalid

        raise Invalid(
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}", param="scopes"
        )
    return sorted(set(values))
