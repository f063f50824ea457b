"""The SDK stays in step with itself and with the server: the async client mirrors the sync one's
public signatures, and every query parameter the SDK sends is one the OpenAPI document declares."""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from medtune import AsyncClient, Client
from medtune.resources import (
    base_models,
    datasets,
    erasures,
    experiments,
    job_groups,
    jobs,
    models,
    pacs,
    splits,
)

RESOURCE_MODULES = (base_models, datasets, erasures, experiments, job_groups, jobs, models, pacs, splits)
# httpx's naming: the async client closes with `aclose`, the sync one with `close`.
CLOSERS = {"close", "aclose"}


def _pairs() -> list[tuple[type, type]]:
    pairs: list[tuple[type, type]] = [(Client, AsyncClient)]
    for module in RESOURCE_MODULES:
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and cls.__module__ == module.__name__ and name.startswith("Async"):
                pairs.append((getattr(module, name.removeprefix("Async")), cls))
    return pairs


def _public(cls: type) -> dict[str, Callable[..., Any]]:
    return {n: f for n, f in inspect.getmembers(cls, callable) if not n.startswith("_") and n not in CLOSERS}


def _shape(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    return [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize(("sync", "aio"), _pairs(), ids=lambda c: c.__name__)
def test_async_mirrors_sync_signatures(sync: type, aio: type) -> None:
    assert set(_public(sync)) == set(_public(aio))
    for name, fn in _public(sync).items():
        assert _shape(fn) == _shape(_public(aio)[name]), f"{sync.__name__}.{name}"


# --- query parameters against the OpenAPI document -----------------------------------------------


def _sample(annotation: Any) -> Any:
    """A value of the parameter's type, so the SDK puts it on the wire."""
    text = str(annotation)
    if "Callable" in text or "PathLike" in text:
        return inspect.Parameter.empty
    if "bool" in text:
        return True
    if "int" in text:
        return 1
    if "float" in text:
        return 1.0
    if (literal := re.search(r"Literal\[['\"]([^'\"]+)", text)) is not None:
        return literal.group(1)
    return "x"


def _arguments(fn: Callable[..., Any]) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty:
            args.append("x")
        elif p.name == "progress":  # a local bar, never on the wire
            continue
        elif p.kind is p.KEYWORD_ONLY and (value := _sample(p.annotation)) is not inspect.Parameter.empty:
            kwargs[p.name] = value
    return args, kwargs


class Recorder:
    """The transport under the SDK: it writes down each request and answers 404 (the SDK raises)."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(404, json={"error": {"type": "not_found", "message": "recorded"}})


def _call_sync(recorder: Recorder) -> None:
    client = Client("http://sdk.test", "k", max_retries=0, transport=httpx.MockTransport(recorder))
    for sync, _aio in _pairs()[1:]:
        resource = next(v for v in vars(client).values() if type(v) is sync)
        for name in _public(sync):
            args, kwargs = _arguments(getattr(sync, name))
            try:
                result = getattr(resource, name)(*args, **kwargs)
                if inspect.isgenerator(result):
                    next(result)
            except Exception:  # noqa: S112  (the 404 after the request was recorded)
                continue


async def _call_async(recorder: Recorder) -> None:
    client = AsyncClient("http://sdk.test", "k", max_retries=0, transport=httpx.MockTransport(recorder))
    for _sync, aio in _pairs()[1:]:
        resource = next(v for v in vars(client).values() if type(v) is aio)
        for name in _public(aio):
            args, kwargs = _arguments(getattr(aio, name))
            try:
                result = getattr(resource, name)(*args, **kwargs)
                if inspect.isasyncgen(result):
                    await anext(result)
                else:
                    await result
            except Exception:  # noqa: S112
                continue
    await client.aclose()


def _documented() -> dict[tuple[str, re.Pattern[str]], set[str]]:
    from api.app import create_app

    spec = create_app().openapi()
    documented = {}
    for path, operations in spec["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method, op in operations.items():
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            documented[(method.upper(), pattern)] = names
    return documented


def _declared(documented: dict[tuple[str, re.Pattern[str]], set[str]], request: httpx.Request) -> set[str]:
    for (method, pattern), names in documented.items():
        if method == request.method and pattern.match(request.url.path):
            return names
    raise AssertionError(f"{request.method} {request.url.path} is not in the OpenAPI document")


def test_every_sdk_query_parameter_is_documented() -> None:
    recorder = Recorder()
    _call_sync(recorder)
    asyncio.run(_call_async(recorder))
    documented = _documented()
    sent = {(r.method, r.url.path, frozenset(r.url.params.keys())) for r in recorder.sent}
    assert any(params for _m, _p, params in sent)  # the recorder saw query parameters at all
    for request in recorder.sent:
        undeclared = set(request.url.params.keys()) - _declared(documented, request)
        assert not undeclared, f"{request.method} {request.url.path} sends {undeclared}"


def test_job_status_filter_names_every_status() -> None:
    from platform_core.jobs.models import STATUSES
    from platform_core.jobs.schemas import JobStatus

    assert typing.get_args(JobStatus) == STATUSES
