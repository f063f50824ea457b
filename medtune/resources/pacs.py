"""`client.pacs_nodes` (the PACS medtune pulls from: DICOMweb or DIMSE, credentials sent once and never
returned) and `client.imports` (pull studies from a node into a dataset by StudyInstanceUIDs,
AccessionNumbers or a labels CSV; poll, list, cancel)."""

from __future__ import annotations

from typing import Any

from medtune.models import Dataset
from medtune.pacs_models import PacsImport, PacsNode
from medtune.pagination import AsyncPage, Page
from medtune.resources._base import AsyncResource, SyncResource, id_of
from medtune.resources._files import PathLike
from medtune.resources.datasets import _labels_part


def _node_body(
    name: str, kind: str, url: str | None, host: str | None, port: int | None, ae_title: str | None,
    token: str | None, username: str | None, password: str | None,
) -> dict[str, Any]:  # fmt: skip
    auth: dict[str, Any] = {"type": "none"}
    if token is not None:
        auth = {"type": "bearer", "token": token}
    elif username is not None:
        auth = {"type": "basic", "username": username, "password": password or ""}
    address = {"url": url, "host": host, "port": port, "ae_title": ae_title}
    return {"name": name, "kind": kind, "auth": auth, **{k: v for k, v in address.items() if v is not None}}


def _import_request(
    node: str | PacsNode,
    study_instance_uids: list[str] | None,
    accession_numbers: list[str] | None,
    labels_csv: PathLike | bytes | None,
) -> dict[str, Any]:
    """The request's keyword arguments: JSON keys, or a multipart form with the labels CSV."""
    node_id = id_of(node)
    if labels_csv is None:
        body: dict[str, Any] = {"node_id": node_id}
        if study_instance_uids is not None:
            body["study_instance_uids"] = list(study_instance_uids)
        if accession_numbers is not None:
            body["accession_numbers"] = list(accession_numbers)
        return {"json": body}
    return {"data": {"node_id": node_id}, "files": _labels_part(labels_csv, "labels")}


def _imports_path(dataset: str | Dataset) -> str:
    return f"/v1/datasets/{id_of(dataset)}/imports"


class PacsNodes(SyncResource):
    def create(
        self,
        name: str,
        kind: str,
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        ae_title: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> PacsNode:
        """A source PACS: kind "dicomweb" with `url` (the DICOMweb base), or "dimse" with `host`,
        `port` and the peer's `ae_title`. `token` (bearer) or `username`/`password` (basic) are stored
        encrypted and never returned."""
        body = _node_body(name, kind, url, host, port, ae_title, token, username, password)
        return self._client.post("/v1/pacs-nodes", PacsNode, json=body)

    def get(self, node: str | PacsNode) -> PacsNode:
        return self._client.get(f"/v1/pacs-nodes/{id_of(node)}", PacsNode)

    def list(self, *, limit: int | None = None, after: str | None = None) -> Page[PacsNode]:
        return self._client.page("/v1/pacs-nodes", PacsNode, {"limit": limit, "after": after})

    def delete(self, node: str | PacsNode) -> None:
        self._client.request("DELETE", f"/v1/pacs-nodes/{id_of(node)}")


class Imports(SyncResource):
    def create(
        self,
        dataset: str | Dataset,
        node: str | PacsNode,
        *,
        study_instance_uids: list[str] | None = None,
        accession_numbers: list[str] | None = None,
        labels_csv: PathLike | bytes | None = None,
    ) -> PacsImport:
        """Pull studies from `node` into `dataset` (queued; poll `get`). Name them by one of
        `study_instance_uids`, `accession_numbers`, or a `labels_csv` whose labels are imported too."""
        request = _import_request(node, study_instance_uids, accession_numbers, labels_csv)
        return self._client.post(_imports_path(dataset), PacsImport, **request)

    def get(self, dataset: str | Dataset, import_id: str | PacsImport) -> PacsImport:
        return self._client.get(f"{_imports_path(dataset)}/{id_of(import_id)}", PacsImport)

    def list(
        self, dataset: str | Dataset, *, limit: int | None = None, after: str | None = None
    ) -> Page[PacsImport]:
        return self._client.page(_imports_path(dataset), PacsImport, {"limit": limit, "after": after})

    def cancel(self, dataset: str | Dataset, import_id: str | PacsImport) -> PacsImport:
        """Stop the import before its next study; its sealed keys are deleted now."""
        return self._client.post(f"{_imports_path(dataset)}/{id_of(import_id)}/cancel", PacsImport)


class AsyncPacsNodes(AsyncResource):
    async def create(
        self,
        name: str,
        kind: str,
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        ae_title: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> PacsNode:
        body = _node_body(name, kind, url, host, port, ae_title, token, username, password)
        return await self._client.post("/v1/pacs-nodes", PacsNode, json=body)

    async def get(self, node: str | PacsNode) -> PacsNode:
        return await self._client.get(f"/v1/pacs-nodes/{id_of(node)}", PacsNode)

    async def list(self, *, limit: int | None = None, after: str | None = None) -> AsyncPage[PacsNode]:
        return await self._client.page("/v1/pacs-nodes", PacsNode, {"limit": limit, "after": after})

    async def delete(self, node: str | PacsNode) -> None:
        await self._client.request("DELETE", f"/v1/pacs-nodes/{id_of(node)}")


class AsyncImports(AsyncResource):
    async def create(
        self,
        dataset: str | Dataset,
        node: str | PacsNode,
        *,
        study_instance_uids: list[str] | None = None,
        accession_numbers: list[str] | None = None,
        labels_csv: PathLike | bytes | None = None,
    ) -> PacsImport:
        request = _import_request(node, study_instance_uids, accession_numbers, labels_csv)
        return await self._client.post(_imports_path(dataset), PacsImport, **request)

    async def get(self, dataset: str | Dataset, import_id: str | PacsImport) -> PacsImport:
        return await self._client.get(f"{_imports_path(dataset)}/{id_of(import_id)}", PacsImport)

    async def list(
        self, dataset: str | Dataset, *, limit: int | None = None, after: str | None = None
    ) -> AsyncPage[PacsImport]:
        return await self._client.page(_imports_path(dataset), PacsImport, {"limit": limit, "after": after})

    async def cancel(self, dataset: str | Dataset, import_id: str | PacsImport) -> PacsImport:
        return await self._client.post(f"{_imports_path(dataset)}/{id_of(import_id)}/cancel", PacsImport)
