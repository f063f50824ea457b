"""The console's PACS parts in a real headless Chromium against a live server with a real worker: a PACS
node added (its token never shown again), a dataset created with an AE title that the list and its page
show, and an import started from a labels CSV on the dataset's page, listed with its progress (the node
answers nothing here, so its study fails: the import still ends and says so)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_console
from tests.e2e.test_console import sign_in, usable
from tests.live import Live
from tests.services import free_port

pytestmark = [pytest.mark.services, pytest.mark.slow]

# test_console's fixtures (the browser, the live platform, a page), used under their names
browser = test_console.browser
live = test_console.live
page = test_console.page

TOKEN = "console-token-" + secrets.token_hex(4)


def test_pacs_nodes_dataset_ae_title_and_an_import(page: Any, live: Live, tmp_path: Path) -> None:
    sign_in(page, live)
    page.goto("/#/pacs-nodes")
    page.fill("#node-name", "orthanc")
    page.fill("#node-url", f"http://127.0.0.1:{free_port()}/dicom-web")  # nothing listens there
    page.fill("#node-token", TOKEN)
    page.click("#node-form button[type=submit]")
    page.wait_for_selector("#nodes table")
    assert "orthanc" in page.inner_text("#nodes") and TOKEN not in page.content()
    usable(page)

    ae = f"C{secrets.token_hex(4).upper()}"
    page.goto("/#/datasets")
    page.fill("#ds-name", "pacs-console")
    page.fill("#ds-labels", "finding")
    page.fill("#ds-ae-title", ae)
    page.click("form.row button[type=submit]")
    page.wait_for_selector("#pacs")
    assert ae in page.inner_text("#pacs")
    csv = tmp_path / "labels.csv"
    csv.write_text("AccessionNumber,finding\nCONSOLE-ACC-1,1\n")
    page.wait_for_selector("#import-node option", state="attached")
    page.set_input_files("#import-labels", str(csv))
    page.click("#import-form button[type=submit]")
    page.wait_for_selector("#imports table")
    page.wait_for_function(
        "document.querySelector('#imports').innerText.includes('succeeded')", timeout=60_000
    )
    assert "0/1" in page.inner_text("#imports")  # the study failed (no PACS there), and says so
    assert "CONSOLE-ACC-1" not in page.content()
    usable(page)
    page.goto("/#/datasets")
    page.wait_for_selector("table")
    assert ae in page.inner_text("main")
