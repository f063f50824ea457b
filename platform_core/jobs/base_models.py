"""Base models: the catalog's pretrained backbones and the weights a project registers for them."""

from __future__ import annotations

import hashlib
import re
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from platform_core.errors import Conflict, Invalid, PayloadTooLarge
from platform_core.ids import new_id
from platform_core.jobs import repository as repo
from platform_core.jobs.models import BaseModelWeights
from platform_core.jobs.schemas import BaseModelOut
from platform_core.pagination import Page
from platform_core.storage import ObjectStore
from platform_core.training import catalog
from platform_core.training import weights as W


class _Hashing:
    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(f"the weights file exceeds {self.limit} bytes")
        self.sha.update(data)
        return data


def register_base_model(
    session: Session,
    store: ObjectStore,
    project_id: str,
    name: str,
    architecture: str,
    filename: str,
    stream: BinaryIO,
    max_bytes: int,
    weights_format: str = "timm",
) -> BaseModelWeights:
    entry = catalog.get(architecture)
    fmt = W.detect_format(filename, b"", weights_format)
    if not name.strip():
        raise Invalid("name must not be empty", param="name")
    if repo.base_model_by_name(session, project_id, name) is not None:
        raise Conflict(f"a base model named '{name}' already exists", param="name")
    bm_id = new_id("bm")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename.rsplit("/", 1)[-1])[:100] or "weights"
    key = f"base-models/{project_id}/{bm_id}/{safe}"
    reader = _Hashing(stream, max_bytes)
    store.put(key, reader)  # type: ignore[arg-type]
    if reader.size == 0:
        store.delete(key)
        raise Invalid("the weights file is empty", param="file")
    W.check_registered_files(store, key, fmt)
    record = BaseModelWeights(
        id=bm_id,
        project_id=project_id,
        name=name,
        architecture=entry.name,
        format=fmt,
        object_key=key,
        sha256=reader.sha.hexdigest(),
        size_bytes=reader.size,
    )
    session.add(record)
    session.flush()
    return record


def base_models(session: Session, project_id: str) -> list[BaseModelOut]:
    out = [
        BaseModelOut(
            id=e.name,
            name=e.name,
            architecture=e.arch,
            input_size=e.input_size,
            family=e.family,
            description=e.description,
            weights=W.PRETRAINED,
            weights_available=W.pretrained_cached(e),
            **published_fields(e),
        )
        for e in catalog.entries()
    ]
    out += [registered_out(r) for r in repo.list_base_models(session, project_id)]
    return out


def list_base_models(session: Session, project_id: str, limit: int, after: str | None) -> Page[BaseModelOut]:
    """The catalog's entries, then the project's registered weights, one page of them."""
    return Page.of_list(base_models(session, project_id), limit, after)


def published_fields(e: catalog.BackboneEntry) -> dict[str, Any]:
    """Where the entry's weights are published, under which license, and what the model expects."""
    return {
        "group": e.group,
        "license": e.license or None,
        "pretraining": e.pretraining or None,
        "input_convention": e.input_convention or None,
        "weights_format": e.weights_format,
        "weights_files": list(e.weights_files),
        "weights_source": e.weights_source,
        "mean": list(e.mean),
        "std": list(e.std),
    }


def registered_out(r: BaseModelWeights) -> BaseModelOut:
    entry = catalog.get(r.architecture)
    return BaseModelOut(
        id=r.id,
        name=r.name,
        architecture=r.architecture,
        input_size=entry.input_size,
        family=entry.family,
        description=f"registered weights for {r.architecture}",
        weights=r.id,
        weights_available=True,
        **{**published_fields(entry), "weights_format": r.format},
        sha256=r.sha256,
        size_bytes=r.size_bytes,
        created_at=r.created_at,
    )
