"""The SDK's `pacs_nodes` and `imports` (sync and async) and the CLI's `medtune pacs-nodes` / `medtune
imports` against a live server (uvicorn, PostgreSQL; no worker: an import against a node that nothing
answers stays queued until it is cancelled). Secrets never come back; original keys never come back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import medtune
from medtune import errors
from tests.integration.test_cli_client import Cli
from tests.live import Live, live_platform

pytestmark = [pytest.mark.services, pytest.mark.slow]

TOKEN = "sdk-bearer-never-returned"
UNREACHABLE = "http://127.0.0.1:9/dicom-web"  # the discard port: nothing answers DICOMweb there
UIDS = ["1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_platform(tmp_path_factory.mktemp("live-sdk-pacs"), worker=False) as platform:
        yield platform


@pytest.fixture
def client(live: Live) -> Iterator[medtune.Client]:
    with medtune.Client(live.url, live.key, max_retries=0) as c:
        yield c


def test_nodes_and_imports_with_the_sync_client(client: medtune.Client) -> None:
    node = client.pacs_nodes.create("orthanc", "dicomweb", url=UNREACHABLE, token=TOKEN)
    assert node.auth_type == "bearer" and node.url == UNREACHABLE and TOKEN not in node.model_dump_json()
    assert client.pacs_nodes.get(node).name == "orthanc"
    assert node.id in [n.id for n in client.pacs_nodes.list()]
    with pytest.raises(errors.ConflictError):
        client.pacs_nodes.create("orthanc", "dicomweb", url=UNREACHABLE)
    with pytest.raises(errors.InvalidRequestError):
        client.pacs_nodes.create("peer", "dimse", host="pacs")  # no port, no AE title

    ds = client.datasets.create("from-pacs", "binary", ["finding"], dicom_ae_title="SDK_PACS")
    assert client.datasets.get(ds).dicom_ae_title == "SDK_PACS"
    with pytest.raises(errors.InvalidRequestError) as own:
        client.datasets.create("own", "binary", ["finding"], dicom_ae_title="MEDTUNE")
    assert own.value.param == "dicom_ae_title" and "listener" in own.value.message

    imp = client.imports.create(ds, node, study_instance_uids=[*UIDS, UIDS[0]])
    assert (imp.status, imp.key_type, imp.progress.studies_total) == ("queued", "StudyInstanceUID", 2)
    assert not imp.done and all(s.status == "pending" and UIDS[0] not in s.key_hmac for s in imp.studies)
    by_csv = client.imports.create(ds, node, labels_csv=f"StudyInstanceUID,finding\n{UIDS[0]},1\n".encode())
    assert by_csv.labels == {"rows": 1, "imported": 1, "matched": 0, "unmatched": 1}
    assert {i.id for i in client.imports.list(ds)} == {imp.id, by_csv.id}
    cancelled = client.imports.cancel(ds, imp)
    assert cancelled.status == "cancelled" and cancelled.done and cancelled.finished_at is not None
    assert client.imports.get(ds, imp.id).status == "cancelled"

    client.pacs_nodes.delete(node)
    with pytest.raises(errors.NotFoundError):
        client.pacs_nodes.get(node.id)


def test_the_async_client_mirrors_it(live: Live) -> None:
    async def scenario() -> None:
        async with medtune.AsyncClient(live.url, live.key, max_retries=0) as c:
            node = await c.pacs_nodes.create("peer", "dimse", host="127.0.0.1", port=9, ae_title="PEER")
            assert (node.kind, node.ae_title, node.auth_type) == ("dimse", "PEER", "none")
            assert (await c.pacs_nodes.get(node.id)).port == 9
            ds = await c.datasets.create("async-pacs", "binary", ["finding"])
            imp = await c.imports.create(ds, node, accession_numbers=["ACC-1"])
            assert imp.key_type == "AccessionNumber" and imp.status == "queued"
            assert [i.id async for i in await c.imports.list(ds)] == [imp.id]
            assert (await c.imports.cancel(ds, imp.id)).status == "cancelled"
            assert (await c.imports.get(ds, imp)).status == "cancelled"
            assert node.id in [n.id async for n in await c.pacs_nodes.list()]
            await c.pacs_nodes.delete(node)
            with pytest.raises(errors.NotFoundError):
                await c.pacs_nodes.get(node)

    asyncio.run(scenario())


def test_the_cli_commands(live: Live, client: medtune.Client, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config")
    assert cli("login", "--url", live.url, "--api-key", live.key).returncode == 0
    made = cli("pacs-nodes", "create", "cli-node", "--kind", "dicomweb", "--url", UNREACHABLE,
               "--username", "medtune", "--password", "s3cret-never-returned")  # fmt: skip
    assert made.returncode == 0, made.stderr
    node_id = made.stdout.strip()
    shown = cli.json("pacs-nodes", "show", node_id)
    assert shown["auth_type"] == "basic" and "s3cret" not in json.dumps(shown)
    assert node_id in [n["id"] for n in cli.json("pacs-nodes", "list")]
    table = cli("pacs-nodes", "list")
    assert table.returncode == 0 and "cli-node" in table.stdout and "s3cret" not in table.stdout

    dataset_id = client.datasets.create("cli-pacs", "binary", ["finding"]).id
    started = cli("imports", "create", dataset_id, "--node", node_id, "--study-uids", ",".join(UIDS))
    assert started.returncode == 0, started.stderr
    import_id = started.stdout.strip()
    assert cli.json("imports", "show", dataset_id, import_id)["progress"]["studies_total"] == 2
    assert [i["id"] for i in cli.json("imports", "list", dataset_id)] == [import_id]
    assert cli.json("imports", "cancel", dataset_id, import_id)["status"] == "cancelled"
    shown_import = cli("imports", "show", dataset_id, import_id)
    assert shown_import.returncode == 0 and "cancelled" in shown_import.stdout
    assert UIDS[0] not in shown_import.stdout

    assert cli("imports", "create", dataset_id, "--node", node_id).returncode == 2  # no query: usage
    assert cli("imports", "create", dataset_id, "--node", "pn_missing", "--accessions", "A1").returncode == 1
    assert cli("pacs-nodes", "delete", node_id).returncode == 0
    assert cli("pacs-nodes", "show", node_id).returncode == 1
