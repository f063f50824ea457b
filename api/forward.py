"""The deployed mode's predict path: with MEDTUNE_INFERENCE_URLS set, the API decodes a request's
images and sends them with the version's manifest to the inference tier (`medtune serve` replicas,
inference_server), and returns the tier's predictions unchanged.

Routing is stable per base model (a consistent-hash ring, platform_core.inference.routing), so every
API replica sends a base's versions to the same tier replica, where they stay hot; a replica that
cannot be reached hands its keys to the next one on the ring. The tier's 4xx come back with their own
status and body; a tier that cannot be reached, times out or fails answers 503 in the platform's
shape, never a 500. One async client, built in the lifespan, serves every request: a request holds
no thread while it waits on the network. Nothing here imports torch: even a timm name outside the
catalog (a job's base_model) is inferred by the tier, not here (catalog.infer_with).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from fastapi import Depends, Request

from api.predict_bodies import decode_bodies
from api.state import AppState
from platform_core.artifacts import ModelManifest
from platform_core.config import Settings
from platform_core.errors import PlatformError
from platform_core.inference import wire
from platform_core.inference.routing import Ring, base_key, expand_nodes
from platform_core.training import catalog
from platform_core.training.backbone_entry import BackboneEntry

log = logging.getLogger("medtune.api")
RESOLVE_EVERY_S = 10.0  # how stale the replica list may get when a service is scaled


class TierUnavailable(PlatformError):
    status_code = 503
    type = "service_unavailable_error"


class TierRefused(PlatformError):
    """A 4xx the tier answered, rendered again in the same shape (the one error handler does it)."""

    def __init__(self, status: int, type_: str, message: str, param: str | None) -> None:
        super().__init__(message, status, param)
        self.type = type_


class InferenceTier:
    def __init__(self, nodes: list[str], timeout_s: float, token: str | None) -> None:
        """Call from a coroutine (the lifespan): the async session belongs to the running loop."""
        self.urls = nodes
        self.ring = Ring.build(nodes)
        self.resolved_at = 0.0
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": wire.MEDIA_TYPE}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        # aiohttp, not httpx, for the hot path: its C parser costs ~0.15 ms of CPU a request against
        # httpx's 0.7-1.7 ms (32 concurrent), which on a busy API is most of the hop's cost. Connecting
        # is quick or the replica is down: fail over fast; the model run may take a while.
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s)),
            connector=aiohttp.TCPConnector(limit=512),
        )
        self.sync_client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)))
        self.entries: dict[str, BackboneEntry] = {}
        self.replaced: Callable[[str], BackboneEntry] | None = None  # the catalog's resolver before

    @classmethod
    def from_settings(cls, settings: Settings) -> InferenceTier | None:
        """The tier's client, installed as the catalog's resolver of names outside it; None: embedded."""
        nodes = settings.inference_nodes
        if not nodes:
            return None
        tier = cls(nodes, settings.inference_timeout_s, settings.inference_token)
        tier.replaced = catalog.infer_with(tier.backbone)
        return tier

    async def aclose(self) -> None:
        catalog.infer_with(self.replaced)
        self.sync_client.close()
        await self.session.close()

    def backbone(self, name: str) -> BackboneEntry:
        """The catalog entry the tier infers for a timm name (from worker threads; cached, as an
        entry never changes)."""
        if name in self.entries:
            return self.entries[name]
        for node in self.ring.order(name):
            try:
                response = self.sync_client.get(f"{node}/v1/backbones/{name}", headers=self.headers)
            except httpx.ConnectError:
                continue
            except httpx.HTTPError:
                raise TierUnavailable("the inference tier did not answer about the base model") from None
            body = _checked(node, response.status_code, response.content)
            entry = self.entries[name] = wire.entry_from_json(body)
            return entry
        raise TierUnavailable("no inference tier replica can be reached (MEDTUNE_INFERENCE_URLS)")

    async def refresh(self) -> None:
        """Rebuild the ring when the replicas behind a URL's name changed (checked every few seconds)."""
        if time.monotonic() - self.resolved_at < RESOLVE_EVERY_S:
            return
        self.resolved_at = time.monotonic()
        nodes = expand_nodes(self.urls, await _addresses(self.urls))
        if sorted(set(nodes)) != sorted(set(self.ring.owners)):
            log.info("inference replicas: %s", ", ".join(nodes))
            self.ring = Ring.build(nodes)

    async def predict(self, manifest: ModelManifest, payload: bytes) -> list[dict[str, Any]]:
        """The tier's predictions for a wire payload, from the base's replica (its successor if down)."""
        await self.refresh()
        for node in self.ring.order(base_key(manifest)):
            try:
                async with self.session.post(f"{node}/v1/predict", data=payload, headers=self.headers) as r:
                    status, content = r.status, await r.read()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                log.warning("inference replica %s cannot be reached: %s", node, exc)
                continue  # nothing was sent: the next replica may answer
            except TimeoutError:
                log.warning("inference replica %s did not answer in %ss", node, self.timeout_s)
                message = f"the inference tier did not answer within {self.timeout_s:g} s"
                raise TierUnavailable(message) from None
            except aiohttp.ClientError as exc:
                log.warning("inference replica %s failed mid-request: %s", node, exc)
                raise TierUnavailable("the inference tier dropped the request; retry it") from None
            predictions = _checked(node, status, content).get("predictions")
            if not isinstance(predictions, list):
                raise TierUnavailable("the inference tier answered without predictions")
            return predictions
        raise TierUnavailable("no inference tier replica can be reached (MEDTUNE_INFERENCE_URLS)")


async def _addresses(urls: list[str]) -> dict[str, list[str]]:
    """Each URL host's addresses now (none where the lookup fails: the URL is then kept as written)."""
    loop, found = asyncio.get_running_loop(), dict[str, list[str]]()
    for url in urls:
        host = urlsplit(url).hostname or ""
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            continue
        found[host] = [str(info[4][0]) for info in infos]
    return found


def _checked(node: str, status: int, content: bytes) -> dict[str, Any]:
    """The tier's JSON answer; its 4xx raised again as they are; anything else a 503."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if status == 200 and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if 400 <= status < 500 and isinstance(error, dict) and "message" in error:
        raise TierRefused(status, str(error.get("type")), str(error["message"]), error.get("param"))
    log.warning("inference replica %s answered HTTP %s", node, status)
    raise TierUnavailable(f"the inference tier failed (HTTP {status}); retry later")


def payload(state: AppState, content_type: str, raw: bytes, manifest: ModelManifest, explain: bool) -> bytes:
    """The tier's request body (in a worker thread: decoding copies the images)."""
    bodies = decode_bodies(content_type, raw, state.settings.max_predict_instances)
    return wire.encode(manifest, bodies, explain)


def get_tier(request: Request) -> InferenceTier | None:
    tier: InferenceTier | None = getattr(request.app.state, "inference_tier", None)
    return tier


TierDep = Annotated[InferenceTier | None, Depends(get_tier)]
