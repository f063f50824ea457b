"""`client.base_models`: the backbone catalog (grouped, with licenses), and registering your own checkpoint
for an architecture in the format it is published in."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medtune.models import BaseModelEntry
from medtune.resources._base import AsyncResource, SyncResource
from medtune.resources._files import PathLike
from medtune.resources.datasets import UPLOAD_TIMEOUT


def _checkpoint(path: PathLike) -> Callable[[], list[tuple[str, Any]]]:
    def files() -> list[tuple[str, Any]]:
        p = Path(path)
        return [("file", (p.name, p.open("rb"), "application/octet-stream"))]

    return files


class BaseModels(SyncResource):
    def list(self) -> list[BaseModelEntry]:
        """Catalog entries and registered checkpoints, with whether weights are available."""
        return builtins.list(self._client.page("/v1/base-models", BaseModelEntry))

    def register(
        self, name: str, architecture: str, checkpoint: PathLike, format: str = "timm"
    ) -> BaseModelEntry:
        """Upload weights for a catalog architecture in the format they are published in (bring your own
        foundation model): `timm` a .safetensors/.pth state dict, `transformers` or `open_clip` a zip of
        the published folder, `torchxrayvision` the release .pt; jobs then name the returned entry's
        `weights` field in theirs."""
        data = {"architecture": architecture, "name": name, "format": format}
        response = self._client.request("POST", "/v1/base-models", files=_checkpoint(checkpoint), data=data,
                                        timeout=UPLOAD_TIMEOUT)  # fmt: skip
        return BaseModelEntry.model_validate(response.json())


class AsyncBaseModels(AsyncResource):
    async def list(self) -> list[BaseModelEntry]:
        page = await self._client.page("/v1/base-models", BaseModelEntry)
        return [entry async for entry in page]

    async def register(
        self, name: str, architecture: str, checkpoint: PathLike, format: str = "timm"
    ) -> BaseModelEntry:
        data = {"architecture": architecture, "name": name, "format": format}
        response = await self._client.request("POST", "/v1/base-models", files=_checkpoint(checkpoint),
                                              data=data, timeout=UPLOAD_TIMEOUT)  # fmt: skip
        return BaseModelEntry.model_validate(response.json())
