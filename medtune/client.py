"""The Python SDK: `medtune.Client`, a typed client over the REST API (httpx; no torch, no platform_core)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
    close_files,
    connection_error,
    parse_sse,
)
from medtune.errors import error_from_response
from medtune.models import PageData, Project, Resource
from medtune.pagination import Page
from medtune.resources.base_models import BaseModels
from medtune.resources.datasets import Datasets
from medtune.resources.erasures import Erasures
from medtune.resources.experiments import Experiments
from medtune.resources.job_groups import JobGroups
from medtune.resources.jobs import Jobs
from medtune.resources.models import Models
from medtune.resources.pacs import Imports, PacsNodes
from medtune.resources.splits import Splits

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Resource)


class Client:
    """`Client(base_url, api_key)`; both default to MEDTUNE_URL / MEDTUNE_API_KEY, then `medtune login`.

    Resources: `datasets`, `splits`, `jobs`, `job_groups`, `experiments` (data-volume sweeps),
    `base_models`, `models`, `erasures`, `pacs_nodes`, `imports` (pulls from a PACS into a dataset). Errors
    raise the exception named after the server's error type (`medtune.errors.NotFoundError`, ...).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 60.0,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        login = config.resolve(base_url, api_key)
        self.base_url = login.url
        self.api_key = login.api_key
        self.retry = RetryPolicy(max_retries=max_retries)
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )
        self.datasets = Datasets(self)
        self.splits = Splits(self)
        self.jobs = Jobs(self)
        self.job_groups = JobGroups(self)
        self.experiments = Experiments(self)
        self.base_models = BaseModels(self)
        self.models = Models(self)
        self.erasures = Erasures(self)
        self.pacs_nodes = PacsNodes(self)
        self.imports = Imports(self)

    # --- transport ------------------------------------------------------------------------

    def request(
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
        """Send with retries; raise the typed error for a 4xx/5xx answer."""
        opts = RequestOptions(method.upper(), path, params, json, files, data, content, headers or {},
                              timeout, idempotent)  # fmt: skip
        response = self._send(opts)
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _send(self, opts: RequestOptions, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            files = opts.open_files()
            try:
                response = self.http.send(opts.build(self.http, files), stream=stream)
            except httpx.TransportError as exc:
                if attempt < self.retry.max_retries and self.retry.retry_error(exc, opts.is_idempotent):
                    time.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise connection_error(exc, self.base_url) from exc
            finally:
                if callable(opts.files):
                    close_files(files)
            if attempt < self.retry.max_retries and self.retry.retry_status(
                response.status_code, opts.is_idempotent
            ):
                response.close()
                time.sleep(self.retry.delay(attempt, response))
                attempt += 1
                continue
            return response

    def get(self, path: str, cast_to: type[M], *, params: dict[str, Any] | None = None) -> M:
        return cast_to.model_validate(self.request("GET", path, params=params).json())

    def post(self, path: str, cast_to: type[M], *, json: Any = None, **kwargs: Any) -> M:
        return cast_to.model_validate(self.request("POST", path, json=json, **kwargs).json())

    def put(self, path: str, cast_to: type[M], *, json: Any = None) -> M:
        return cast_to.model_validate(self.request("PUT", path, json=json).json())

    def delete(self, path: str, cast_to: type[M]) -> M:
        return cast_to.model_validate(self.request("DELETE", path).json())

    def page(self, path: str, item: type[R], params: dict[str, Any] | None = None) -> Page[R]:
        """One page of a cursor list; iterating the page walks the following ones."""
        params = dict(params or {})
        data = PageData[item].model_validate(self.request("GET", path, params=params).json())  # type: ignore[valid-type]
        return Page(data, lambda after: self.page(path, item, {**params, "after": after}))

    def events(self, path: str, *, params: dict[str, Any] | None = None) -> Iterator[ServerSentEvent]:
        """Server-sent events from `path`, reconnecting with Last-Event-ID when the stream drops."""
        last_id: str | None = None
        reconnects = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            opts = RequestOptions("GET", path, params, headers=headers,
                                  timeout=httpx.Timeout(10.0, read=None))  # fmt: skip
            response = self._send(opts, stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                for event in parse_sse(response.iter_lines()):
                    reconnects = 0
                    if event.id:
                        last_id = event.id
                    yield event
                return  # the server closed the stream: it has said everything
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if reconnects >= self.retry.max_retries:
                    raise connection_error(exc, self.base_url) from exc
                time.sleep(self.retry.delay(reconnects))
                reconnects += 1
            finally:
                response.close()

    # --- top-level calls ------------------------------------------------------------------

    def project(self) -> Project:
        """The project the API key belongs to, and the key's scopes."""
        return self.get("/v1/project", Project)

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/readyz").json()
        return data

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"medtune.Client(base_url={self.base_url!r})"
