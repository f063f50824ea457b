"""The web console in a real headless Chromium (Debian's, driven by Playwright) against a live server with
a real worker: sign in with the keyboard; create a dataset, drop DICOMs on the page (the drop handler
itself, fed a DataTransfer built in the page), labels, the ingest report; a split from the split form;
a job from it with curves filling in from server-sent events; promote (the confirmation survives the
page change), alias, a prediction from a file dropped on the try-it page, archive; a seed sweep with
mean, SD and 95% CI; cancel then resume. Every page visited is checked for labelled controls, real
buttons, no positive tabindex, a visible focus ring, and no horizontal scrolling at 1280 px and at tablet
width. Screenshots for the README tour land in docs/screenshots/ with MEDTUNE_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import medtune
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
DESKTOP = {"width": 1280, "height": 900}
TABLET = {"width": 820, "height": 1180}
TINY = {"epochs": "2", "batch_size": "4", "image_size": "64", "augmentation": "none"}

# What a keyboard or screen-reader user trips on, listed for the page on screen.
A11Y_PROBLEMS = """() => {
  const problems = [];
  for (const c of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!c.labels?.length && !c.getAttribute("aria-label") && !c.getAttribute("aria-labelledby"))
      problems.push(`unlabelled control #${c.id}`);
  }
  for (const b of document.querySelectorAll("button")) {
    if (!b.getAttribute("type")) problems.push(`button without a type: ${b.textContent}`);
    if (!(b.textContent.trim() || b.getAttribute("aria-label"))) problems.push("button without a name");
  }
  for (const a of document.querySelectorAll("a"))
    if (!a.hasAttribute("href")) problems.push(`link without href: ${a.textContent}`);
  for (const e of document.querySelectorAll("[tabindex]"))
    if (Number(e.getAttribute("tabindex")) > 0) problems.push(`positive tabindex on ${e.tagName}`);
  const clickable = new Set(["A", "BUTTON", "INPUT", "SELECT", "LABEL", "SUMMARY", "OPTION", "TEXTAREA"]);
  for (const e of document.querySelectorAll("main *")) {
    const pointer = getComputedStyle(e).cursor === "pointer";
    if (pointer && !clickable.has(e.tagName) && !e.closest("a, button, label"))
      problems.push(`clickable ${e.tagName} that is not a button or a link`);
  }
  if (document.querySelectorAll("main h1").length !== 1) problems.push("main has no single h1");
  return problems;
}"""

# A DataTransfer made in the page from files sent as base64, as a drag from the desktop carries.
DATA_TRANSFER = """files => {
  const dt = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], f.name, { type: f.type }));
  }
  return dt;
}"""


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


@pytest.fixture(scope="module")
def ready_dataset(live: Live, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A labelled dataset made through the SDK, for the tests that start from training."""
    paths, labels_csv = sample_files(tmp_path_factory.mktemp("console-sdk") / "dicoms", patients=16)
    with medtune.Client(live.url, live.key) as c:
        ds = c.datasets.create("sweep-data", "binary", ["finding"], min_image_size=64, cache_size=64)
        c.datasets.upload(ds, paths, progress=False)
        c.datasets.upload_labels(ds, labels_csv)
        assert c.datasets.wait(ds, timeout=180, poll_interval=0.5).counts.accepted == 16, live.worker_log()
    return ds.id


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, base_url=live.url)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def usable(page: Any, name: str | None = None) -> None:
    """The page on screen passes the keyboard checks and reads at 1280 px and at tablet width."""
    assert page.evaluate(A11Y_PROBLEMS) == [], page.url
    for size in (DESKTOP, TABLET):
        page.set_viewport_size(size)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (page.url, size)
        if name and size is TABLET:
            shot(page, f"{name}-tablet")
    page.set_viewport_size(DESKTOP)


def focus_ring(page: Any) -> None:
    """The focused element shows a ring (the focus moved by keyboard, so :focus-visible applies)."""
    style = page.evaluate("[getComputedStyle(document.activeElement).outlineStyle, "
                          "getComputedStyle(document.activeElement).outlineWidth]")  # fmt: skip
    assert style[0] != "none" and style[1] != "0px", style


def tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab until `selector` has the focus (so it is reachable, in order, by keyboard)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            focus_ring(page)
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def drop(page: Any, target: str, paths: list[Path]) -> None:
    """Drag files over `target` and drop them: the page's own dragover and drop handlers run."""
    kind = {".dcm": "application/dicom"}
    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode(),
              "type": kind.get(p.suffix, "text/plain")} for p in paths]  # fmt: skip
    transfer = page.evaluate_handle(DATA_TRANSFER, files)
    page.dispatch_event(target, "dragover", {"dataTransfer": transfer})
    assert "over" in (page.get_attribute(target, "class") or "")  # the zone shows it will take them
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})
    assert "over" not in (page.get_attribute(target, "class") or "")


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


def fill_job_form(page: Any, hyperparameters: dict[str, str]) -> None:
    page.wait_for_selector("#job-base-model")
    assert page.input_value("#hp-learning_rate") == "auto"  # auto by default
    page.select_option("#job-base-model", "test_vit")
    page.select_option("#job-weights", "random")
    for name, value in hyperparameters.items():
        page.fill(f"#hp-{name}", value)


def test_sign_in_refuses_a_bad_key(page: Any) -> None:
    page.goto("/")
    page.fill("#api-key", "mt_wrong")
    page.keyboard.press("Enter")
    page.wait_for_selector("#flash:has-text('Sign-in failed')")
    assert page.evaluate("sessionStorage.getItem('medtune.apiKey')") is None
    usable(page)
    shot(page, "01-sign-in")


def test_dataset_to_prediction(page: Any, live: Live, tmp_path: Path) -> None:
    sign_in(page, live)
    # The skip link is the first stop and shows when focused; from the page, Tab reaches the form first.
    page.focus(".skip")
    assert page.evaluate("document.querySelector('.skip').getBoundingClientRect().left >= 0")
    focus_ring(page)
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement.id === 'main'")
    tab_to(page, "#ds-name", limit=3)
    page.keyboard.type("chest-xray")
    page.fill("#ds-labels", "finding")
    page.fill("#ds-min-size", "64")
    usable(page)
    tab_to(page, "button[type=submit]")
    page.keyboard.press("Enter")
    page.wait_for_url("**/#/datasets/ds_*")
    dataset_id = page.url.rsplit("/", 1)[1]

    paths, labels_csv = sample_files(tmp_path / "dicoms", patients=16)
    junk = tmp_path / "dicoms" / "notes.txt"
    junk.write_text("not a dicom")
    drop(page, "#drop", [*paths, junk])
    page.wait_for_selector("#upload-status:has-text('16 queued')")
    assert "not_dicom" in page.inner_text("#upload-report")
    page.set_input_files("#labels-file", str(labels_csv))
    page.wait_for_selector("#labels-result:has-text('16 matched')")
    page.wait_for_function("document.querySelector('#report .badge')?.textContent === 'ready'")
    assert stat(page, "Accepted") == "16" and stat(page, "Labelled studies") == "16"
    assert "not_dicom" in page.inner_text("#report")  # rejections by reason

    # The split form: a seeded, patient-grouped split with its own fractions.
    page.fill("#split-seed", "7")
    for part, value in {"train": "0.5", "val": "0.25", "test": "0.25"}.items():
        page.fill(f"#split-{part}", value)
    page.click("#split-form button[type=submit]")
    page.wait_for_selector("#flash:has-text('(seed 7)')")
    page.wait_for_selector("#splits td:has-text('8 / 4 / 4')")
    usable(page, "02-dataset")
    shot(page, "02-dataset")
    split_id = page.inner_text("#splits tbody tr td:first-child")
    assert split_id.startswith("spl_")

    page.click("#splits >> text=Train on it")
    page.wait_for_url("**/#/jobs/new?*")
    fill_job_form(page, TINY)
    assert page.input_value("#job-dataset") == dataset_id and page.input_value("#job-split") == split_id
    usable(page)
    shot(page, "03-new-job")
    page.click("text=Start fine-tuning")
    page.wait_for_url("**/#/jobs/ftjob_*")
    job_id = page.url.rsplit("/", 1)[1]

    # The AUROC curve gains its points from the event stream while the job runs.
    page.wait_for_selector('#auroc-chart circle[data-epoch="1"]', timeout=300_000)
    page.wait_for_selector('#auroc-chart circle[data-epoch="2"]', timeout=300_000)
    page.wait_for_selector("#job-summary .badge.succeeded", timeout=300_000)
    assert page.locator('#loss-chart polyline[data-series="val_loss"]').get_attribute("points")
    assert "epoch 2/2" in page.inner_text("#events")
    usable(page)
    shot(page, "04-job")
    job = httpx.get(f"{live.url}/v1/fine-tuning/jobs/{job_id}", headers=live.auth).json()
    assert job["status"] == "succeeded" and job["split"]["id"] == split_id

    page.click("#nav >> text=Jobs")
    page.wait_for_selector(f"a:has-text('{job_id}')")
    usable(page)

    # Promote by keyboard; the confirmation stays on screen on the model's page.
    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_selector("#model-name")
    page.fill("#model-name", "chest")
    page.focus("#model-name")
    page.keyboard.press("Enter")
    page.wait_for_url("**/#/models/chest")
    page.wait_for_selector("h1:has-text('Model chest')")
    page.wait_for_selector("td .badge.ready")
    assert page.inner_text("#flash") == "Registered chest:1."
    page.click("text=Set alias")  # champion -> 1
    page.wait_for_selector("#flash:has-text('chest@champion')")
    page.wait_for_selector("td:has-text('champion')")
    usable(page)
    shot(page, "05-model")

    page.click("main >> text=Try it")
    assert page.input_value("#predict-model") == "chest:1"
    page.check("#predict-explain")
    usable(page)
    drop(page, "#predict-drop", [paths[0]])
    page.wait_for_selector('#prediction [data-label="finding"]', timeout=120_000)
    probability = float(page.inner_text('#prediction [data-label="finding"] span:last-child'))
    assert 0.0 <= probability <= 1.0
    page.wait_for_selector("#prediction img.heatmap")
    shot(page, "06-predict")

    # Archive: asked first, then the version stops serving and its record stays.
    page.goto("/#/models/chest")
    page.wait_for_selector("button[aria-label='Archive chest:1']")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("button[aria-label='Archive chest:1']")
    assert httpx.get(f"{live.url}/v1/models/chest:1", headers=live.auth).json()["serving"] is not None
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[aria-label='Archive chest:1']")
    page.wait_for_selector("#flash:has-text('Archived chest:1')")
    page.wait_for_selector("td .badge.archived")
    assert page.locator("main >> text=Try it").count() == 0
    archived = httpx.post(f"{live.url}/v1/models/chest:1/predict", headers={**live.auth,
                          "Content-Type": "application/dicom"}, content=paths[0].read_bytes())  # fmt: skip
    assert archived.status_code == 410


def test_seed_sweep_then_cancel_and_resume(page: Any, live: Live, ready_dataset: str) -> None:
    sign_in(page, live)
    page.goto(f"/#/jobs/new?dataset={ready_dataset}")
    fill_job_form(page, {**TINY, "epochs": "1"})
    page.fill("#job-split-seeds", "1, 2")
    page.click("text=Start the seed sweep")
    page.wait_for_url("**/#/job-groups/ftgrp_*")
    row = "#group-metrics tr[data-metric='test_auroc']"
    page.wait_for_selector(f"{row} td[data-col='n']:text-is('2')", timeout=300_000)
    page.wait_for_selector("#group-summary .badge.succeeded")
    mean = float(page.inner_text(f"{row} td[data-col='mean']"))
    sd = float(page.inner_text(f"{row} td[data-col='sd']"))
    low, high = (float(x) for x in page.inner_text(f"{row} td[data-col='ci95']").split("–"))
    assert low <= mean <= high and sd >= 0.0  # t-based with two seeds: wide, and it brackets the mean
    group_id = page.url.rsplit("/", 1)[1]
    api = httpx.get(f"{live.url}/v1/fine-tuning/job-groups/{group_id}", headers=live.auth).json()
    assert f"{api['summary']['metrics']['test_auroc']['mean']:.3f}" == f"{mean:.3f}"
    assert page.locator("#group-jobs tbody tr").count() == 2
    usable(page)
    shot(page, "04b-seed-sweep")
    page.click("#group-jobs tbody tr:first-child a")
    page.wait_for_selector(f"#job-summary a:has-text('{group_id}')")

    # Cancel, then resume with the keyboard: the focus lands on the button that replaced the one pressed.
    page.goto(f"/#/jobs/new?dataset={ready_dataset}")
    fill_job_form(page, {**TINY, "epochs": "1"})
    page.click("text=Start fine-tuning")
    page.wait_for_url("**/#/jobs/ftjob_*")
    page.click("#cancel-job")
    page.wait_for_selector("#job-summary .badge.cancelled", timeout=120_000)
    page.wait_for_function("document.activeElement.id === 'resume-job'")
    usable(page)
    page.keyboard.press("Enter")
    page.wait_for_selector("#flash:has-text('Resumed')")
    page.wait_for_selector("#job-summary .badge.succeeded", timeout=300_000)
    page.wait_for_selector('#auroc-chart circle[data-epoch="1"]')  # the stream was followed again
    assert "resumed" in page.inner_text("#events")
