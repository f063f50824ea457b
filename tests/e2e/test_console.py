"""The web console in a real headless Chromium (Debian's, driven by Playwright) against a live server with
a real worker: sign in with the keyboard, create a dataset, upload DICOMs and labels, read the report,
start a job, watch the curves fill in from server-sent events, and (once the registry exists) promote
and predict. Screenshots for the README tour land in docs/screenshots/ with MEDTUNE_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import Live, live_platform, sample_files
from tests.services import ROOT, unavailable

pytestmark = [pytest.mark.services, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
# The README's screenshots are refreshed only when asked (MEDTUNE_UPDATE_SCREENSHOTS=1), so a test run
# leaves the tracked tree as it found it; otherwise they land in a temporary folder.
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("MEDTUNE_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="medtune-shots-"))
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        unavailable("Chromium (apt-get install chromium, or scripts/install-browser.sh)", f"no {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable("Playwright's Python package", exc)
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_platform(tmp_path_factory.mktemp("live-console")) as platform:
        yield platform


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live.url)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, live: Live) -> None:
    page.goto("/")
    page.wait_for_url("**/#/signin")
    assert page.evaluate("document.activeElement.id") == "api-key"  # keyboard first: focus is in the field
    page.keyboard.type(live.key)
    page.keyboard.press("Enter")
    page.wait_for_url("**/#/datasets")
    assert page.evaluate("sessionStorage.getItem('medtune.apiKey')") == live.key
    assert page.evaluate("localStorage.length") == 0  # never kept beyond the tab


def stat(page: Any, name: str) -> str:
    return str(page.locator(f'#report dd[data-stat="{name}"]').inner_text())


def test_sign_in_refuses_a_bad_key(page: Any) -> None:
    page.goto("/")
    page.fill("#api-key", "mt_wrong")
    page.keyboard.press("Enter")
    page.wait_for_selector("#flash:has-text('Sign-in failed')")
    assert page.evaluate("sessionStorage.getItem('medtune.apiKey')") is None
    shot(page, "01-sign-in")


def test_dataset_upload_labels_job_and_curves(page: Any, live: Live, tmp_path: Path) -> None:
    sign_in(page, live)
    page.fill("#ds-name", "chest-xray")
    page.fill("#ds-labels", "finding")
    page.fill("#ds-min-size", "64")
    page.click("text=Create dataset")
    page.wait_for_url("**/#/datasets/ds_*")
    dataset_id = page.url.rsplit("/", 1)[1]

    paths, labels_csv = sample_files(tmp_path / "dicoms", patients=16)
    junk = tmp_path / "dicoms" / "notes.txt"
    junk.write_text("not a dicom")
    page.set_input_files("#upload-files", [str(p) for p in [*paths, junk]])
    page.wait_for_selector("#upload-status:has-text('16 queued')")
    assert "not_dicom" in page.inner_text("#upload-report")
    page.set_input_files("#labels-file", str(labels_csv))
    page.wait_for_selector("#labels-result:has-text('16 matched')")
    page.wait_for_function("document.querySelector('#report .badge')?.textContent === 'ready'")
    assert stat(page, "Accepted") == "16" and stat(page, "Labelled studies") == "16"
    assert "not_dicom" in page.inner_text("#report")  # rejections by reason
    shot(page, "02-dataset")

    # The console is usable on a tablet: nothing wider than the screen.
    page.set_viewport_size({"width": 820, "height": 1180})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "02b-dataset-tablet")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.click("text=New fine-tuning job")
    page.wait_for_selector("#job-base-model")
    assert page.input_value("#job-dataset") == dataset_id
    assert page.input_value("#hp-learning_rate") == "auto"  # auto by default
    page.select_option("#job-base-model", "test_vit")
    page.select_option("#job-weights", "random")
    page.fill("#job-split-seed", "7")
    for name, value in {"epochs": "2", "batch_size": "4", "image_size": "64", "augmentation": "none"}.items():
        page.fill(f"#hp-{name}", value)
    shot(page, "03-new-job")
    page.click("text=Start fine-tuning")
    page.wait_for_url("**/#/jobs/ftjob_*")

    # The AUROC curve gains its points from the event stream while the job runs.
    page.wait_for_selector('#auroc-chart circle[data-epoch="1"]', timeout=300_000)
    page.wait_for_selector('#auroc-chart circle[data-epoch="2"]', timeout=300_000)
    page.wait_for_selector("#job-summary .badge.succeeded", timeout=300_000)
    assert page.locator('#loss-chart polyline[data-series="val_loss"]').get_attribute("points")
    assert "epoch 2/2" in page.inner_text("#events")
    shot(page, "04-job")

    job_id = page.url.rsplit("/", 1)[1]
    job = httpx.get(f"{live.url}/v1/fine-tuning/jobs/{job_id}", headers=live.auth).json()
    assert job["status"] == "succeeded" and job["split"]["seed"] == 7

    page.click("#nav >> text=Jobs")
    page.wait_for_selector(f"a:has-text('{job_id}')")

    if httpx.get(f"{live.url}/v1/models", headers=live.auth).status_code == 404:
        pytest.skip("promote and predict wait on the models router (issue 6): /v1/models is not served yet")
    page.goto(f"/#/jobs/{job_id}")
    page.fill("#model-name", "chest")
    page.click("text=Promote best checkpoint")
    page.wait_for_url("**/#/models/chest")
    page.wait_for_selector("h1:has-text('Model chest')")
    page.wait_for_selector("td .badge.ready")
    page.click("text=Set alias")  # champion -> 1
    page.wait_for_selector("#flash:has-text('chest@champion')")
    page.wait_for_selector("td:has-text('champion')")
    shot(page, "05-model")
    page.click("main >> text=Try it")
    assert page.input_value("#predict-model") == "chest:1"
    page.check("#predict-explain")
    page.set_input_files("#predict-file", str(paths[0]))
    page.wait_for_selector('#prediction [data-label="finding"]', timeout=120_000)
    probability = float(page.inner_text('#prediction [data-label="finding"] span:last-child'))
    assert 0.0 <= probability <= 1.0
    page.wait_for_selector("#prediction img.heatmap")
    shot(page, "06-predict")
