"""The async SDK: `medtune.AsyncClient` mirrors `medtune.Client` with `await`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from medtune import config
from medtune._transport import (
    USER_AGENT,
    FilesArg,
    RequestOptions,
    RetryPolicy,
    ServerSentEvent,
    SSEDecoder,
    close_files,
    connection_error,
)
from medtune.errors import error_from_response
from medtune.models import PageData, Project, Resource
from medtune.pagination import AsyncPage
from medtune.resources.base_models import AsyncBaseModels
from medtune.resources.datasets import AsyncDatasets
from medtune.resources.erasures import AsyncErasures
from medtune.resources.experiments import AsyncExperiments
from medtune.resources.job_groups import AsyncJobGroups
from medtune.resources.jobs import AsyncJobs
from medtune.resources.models import AsyncModels
from medtune.resources.pacs import AsyncImports, AsyncPacsNodes
from medtune.resources.splits import AsyncSplits

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Resource)


class AsyncClient:
    """`async with AsyncClient(base_url, api_key) as client: await client.datasets.get(...)`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 60.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        login = config.resolve(base_url, api_key)
        self.base_url = login.url
        self.api_key = login.api_key
        self.retry = RetryPolicy(max_retries=max_retries)
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout,
                                      transport=transport)  # fmt: skip
        self.datasets = AsyncDatasets(self)
        self.splits = AsyncSplits(self)
        self.jobs = AsyncJobs(self)
        self.job_groups = AsyncJobGroups(self)
        self.experiments = AsyncExperiments(self)
        self.base_models = AsyncBaseModels(self)
        self.models = AsyncModels(self)
        self.erasures = AsyncErasures(self)
        self.pacs_nodes = AsyncPacsNodes(self)
        self.imports = AsyncImports(self)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: FilesArg = None,
        data: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        opts = RequestOptions(method.upper(), path, params, json, files, data, content, headers or {},
                              timeout, idempotent)  # fmt: skip
        response = await self._send(opts)
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    async def _send(self, opts: RequestOptions, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            files = opts.open_files()
            try:
                response = await self.http.send(opts.build(self.http, files), stream=stream)
            except httpx.TransportError as exc:
                if attempt < self.retry.max_retries and self.retry.retry_error(exc, opts.is_idempotent):
                    await asyncio.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise connection_error(exc, self.base_url) from exc
            finally:
                if callable(opts.files):
                    close_files(files)
            if attempt < self.retry.max_retries and self.retry.retry_status(
                response.status_code, opts.is_idempotent
            ):
                await response.aclose()
                await asyncio.sleep(self.retry.delay(attempt, response))
                attempt += 1
                continue
            return response

    async def get(self, path: str, cast_to: type[M], *, params: dict[str, Any] | None = None) -> M:
        return cast_to.model_validate((await self.request("GET", path, params=params)).json())

    async def post(self, path: str, cast_to: type[M], *, json: Any = None, **kwargs: Any) -> M:
        return cast_to.model_validate((await self.request("POST", path, json=json, **kwargs)).json())

    async def put(self, path: str, cast_to: type[M], *, json: Any = None) -> M:
        return cast_to.model_validate((await self.request("PUT", path, json=json)).json())

    async def delete(self, path: str, cast_to: type[M]) -> M:
        return cast_to.model_validate((await self.request("DELETE", path)).json())

    async def page(self, path: str, item: type[R], params: dict[str, Any] | None = None) -> AsyncPage[R]:
        params = dict(params or {})
        payload = (await self.request("GET", path, params=params)).json()
        data = PageData[item].model_validate(payload)  # type: ignore[valid-type]

        async def fetch_after(after: str) -> AsyncPage[R]:
            return await self.page(path, item, {**params, "after": after})

        return AsyncPage(data, fetch_after)

    async def events(
        self, path: str, *, params: dict[str, Any] | None = None
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events from `path`, reconnecting with Last-Event-ID when the stream drops."""
        last_id: str | None = None
        reconnects = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            opts = RequestOptions("GET", path, params, headers=headers,
                                  timeout=httpx.Timeout(10.0, read=None))  # fmt: skip
            response = await self._send(opts, stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(response)
                decoder = SSEDecoder()
                async for line in response.aiter_lines():
                    if (event := decoder.feed(line)) is not None:
                        reconnects = 0
                        last_id = event.id or last_id
                        yield event
                if (event := decoder.feed("")) is not None:
                    yield event
                return
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if reconnects >= self.retry.max_retries:
                    raise connection_error(exc, self.base_url) from exc
                await asyncio.sleep(self.retry.delay(reconnects))
                reconnects += 1
            finally:
                await response.aclose()

    async def project(self) -> Project:
        return await self.get("/v1/project", Project)

    async def health(self) -> dict[str, Any]:
        data: dict[str, Any] = (await self.request("GET", "/readyz")).json()
        return data

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"medtune.AsyncClient(base_url={self.base_url!r})"
