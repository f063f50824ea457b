"""The job page shows the clinical evaluation: calibration, operating points and the subgroup table
(a real headless Chromium against a live server and worker, with test_console's fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import test_console
from tests.e2e.test_console import sign_in, usable
from tests.integration.test_clinical_evaluation import varied_dataset
from tests.labelled import create_job, wait_job
from tests.live import Live

pytestmark = [pytest.mark.services, pytest.mark.slow]

# test_console's fixtures (the browser, the live platform, a page), used under their names
browser = test_console.browser
live = test_console.live
page = test_console.page


def test_job_page_shows_the_clinical_evaluation(page: Any, live: Live, tmp_path: Path) -> None:
    with httpx.Client(base_url=live.url, timeout=60) as client:
        dataset_id, split_id = varied_dataset(client, live.auth, tmp_path / "varied")
        job = create_job(client, live.auth, dataset_id, split_id)
        job = wait_job(client, live.auth, job["id"], timeout=300, log=live.worker_log)
    assert job["status"] == "succeeded", job

    sign_in(page, live)
    page.goto(f"/#/jobs/{job['id']}")
    page.wait_for_selector("#clinical #subgroups table")
    rows = page.locator('#subgroups tr[data-attribute="view_position"]')
    assert sorted(rows.nth(i).get_attribute("data-value") for i in range(rows.count())) == ["AP", "PA"]
    counts = page.locator('#subgroups tr[data-attribute="sex"] td[data-col="n"]').all_inner_texts()
    assert sum(int(c) for c in counts) == job["result"]["n_test"]
    assert page.locator("#calibration tbody tr").count() == 1
    assert "youden" in page.inner_text("#operating-points")
    usable(page)
