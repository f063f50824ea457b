"""The Python SDK: a typed client over the REST API (httpx; no torch, no platform_core)."""

from __future__ import annotations

import os
from typing import Any

import httpx

from medtune.errors import raise_for_error


class Client:
    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        self.base_url = (base_url or os.environ.get("MEDTUNE_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.api_key = api_key or os.environ.get("MEDTUNE_API_KEY")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        raise_for_error(response)
        return response

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/readyz").json()
        return data

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
