"""The job page shows the clinical evaluation: calibration, operating points and the subgroup table; its
promote form offers the job's operating points and temperature scaling, shows a refusal, and the model
page and a prediction show what the version serves with (a real headless Chromium against a live server
and worker, with test_console's fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import test_console
from tests.e2e.test_console import drop, sign_in, usable
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
    promote_with_an_operating_point(page, live, job, tmp_path / "varied" / "patient1.dcm")


def promote_with_an_operating_point(page: Any, live: Live, job: dict[str, Any], image: Path) -> None:
    """The select lists the job's operating points; an undefined one is refused with the server's 422
    message; specificity_0.90 with temperature scaling shows on the model page and decides `positive`."""
    points = {p["name"]: p["threshold"] for p in job["result"]["operating_points"]["per_label"]["finding"]}
    assert "specificity_0.90" in points
    options = page.locator("#promote-operating-point option").all_inner_texts()
    assert options[0] == "youden" and sorted(options) == sorted(points)
    assert page.is_enabled("#promote-temperature")  # the job fitted a temperature on validation

    page.fill("#model-name", "cxr-points")
    # A point the job never chose (as a stale page could send): the server's 422 message is shown.
    page.evaluate("""() => document.querySelector("#promote-operating-point")
        .append(new Option("sensitivity_0.80", "sensitivity_0.80"))""")
    page.select_option("#promote-operating-point", "sensitivity_0.80")
    page.click("#promote-form button[type=submit]")
    page.wait_for_selector("#promote-refused:has-text('sensitivity_0.80')")
    assert "Promotion refused" in page.inner_text("#flash")

    page.select_option("#promote-operating-point", "specificity_0.90")
    page.check("#promote-temperature")
    page.click("#promote-form button[type=submit]")
    page.wait_for_url("**/#/models/cxr-points")
    row = '#version-settings tr[data-version="1"]'
    page.wait_for_selector(row)

    def cell(col: str) -> str:
        return str(page.inner_text(f'{row} td[data-col="{col}"]'))

    assert cell("operating-point") == "specificity_0.90"
    assert cell("thresholds") == f"finding ≥ {points['specificity_0.90']:.3f}"
    temperature = job["result"]["calibration"]["per_label"]["finding"]["temperature"]
    assert cell("calibration") == f"temperature (finding T = {temperature:.2f})"
    usable(page)

    page.click("main >> text=Try it")
    drop(page, "#predict-drop", [image])
    page.wait_for_selector('#prediction [data-label="finding"]', timeout=120_000)
    headers = {**live.auth, "Content-Type": "application/dicom"}
    url = f"{live.url}/v1/models/cxr-points:1/predict"
    served = httpx.post(url, headers=headers, content=image.read_bytes(), timeout=60)
    assert served.status_code == 200, served.text
    want = served.json()["predictions"][0]
    assert want["operating_point"]["name"] == "specificity_0.90" and want["calibration"] == "temperature"
    shown = page.get_attribute('#prediction [data-label="finding"]', "data-positive")
    assert shown == str(want["positive"]["finding"]).lower()
    assert "specificity_0.90" in page.inner_text("#prediction-basis")
    assert "temperature-scaled" in page.inner_text("#prediction-basis")
