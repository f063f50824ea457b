"""The console's experiment pages: the list, and an experiment's table by size, its two figures (test
AUROC by size with the CIs and the learning curve; epoch seconds by size with the linear fit) drawn from
a real experiment's result, and the samples-needed form (a real headless Chromium against a live server
and worker, with test_console's browser and page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import medtune
from tests.e2e import test_console
from tests.e2e.test_console import sign_in, usable
from tests.live import Live, live_platform, sample_files

pytestmark = [pytest.mark.services, pytest.mark.slow]

browser = test_console.browser
page = test_console.page
SIZES = [4, 8, 12]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")  # as in test_experiments: torch on one thread on a shared machine
        with live_platform(tmp_path_factory.mktemp("live-console-experiments")) as platform:
            yield platform


@pytest.fixture(scope="module")
def experiment(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Any:
    paths, labels_csv = sample_files(tmp_path_factory.mktemp("console-volume") / "dicoms", patients=24)
    hyperparameters = {
        "epochs": 1,
        "batch_size": 4,
        "image_size": 64,
        "augmentation": "none",
        "warmup_epochs": 0,
    }
    with medtune.Client(live.url, live.key) as c:
        ds = c.datasets.create("volume-console", "binary", ["finding"], min_image_size=64, cache_size=64)
        c.datasets.upload(ds, paths, progress=False)
        c.datasets.upload_labels(ds, labels_csv)
        assert c.datasets.wait(ds, timeout=120, poll_interval=0.5).counts.accepted == 24, live.worker_log()
        split = c.splits.create(ds, seed=3, fractions={"train": 0.5, "val": 0.25, "test": 0.25})
        made = c.experiments.create(dataset_id=ds.id, split_id=split.id, sizes=SIZES, seeds=[2],
                                    balanced=True, base_model="test_resnet", weights="random", method="lora",
                                    hyperparameters=hyperparameters)  # fmt: skip
        done = c.experiments.wait(made, timeout=240, poll_interval=0.5)
    assert done.status == "succeeded", (done.model_dump(), live.worker_log())
    return done


def test_experiment_page_draws_both_figures_and_answers_a_target(
    page: Any, live: Live, experiment: Any
) -> None:
    sign_in(page, live)
    page.click("#nav >> text=Experiments")
    page.wait_for_url("**/#/experiments")
    page.click(f"text={experiment.id}")
    page.wait_for_selector("#experiment-result table")
    rows = page.locator("#experiment-result tbody tr[data-size]")
    assert [int(rows.nth(i).get_attribute("data-size")) for i in range(rows.count())] == SIZES
    auroc = experiment.result["sizes"][0]["metrics"]["auroc"]["mean"]
    first = page.locator('#experiment-result tr[data-size="4"] td[data-metric="auroc"]').inner_text()
    assert first.startswith(f"{auroc:.3f}")

    dots = page.locator("#auroc-chart circle[data-size]")
    assert sorted(int(dots.nth(i).get_attribute("data-size")) for i in range(dots.count())) == SIZES
    assert page.locator("#auroc-chart line.ci").count() == 3  # one 95% CI bar per size
    epochs = page.locator("#epoch-chart circle[data-size]")
    assert epochs.count() == 3
    assert page.locator('#epoch-chart polyline[data-fit="epoch_time"]').count() == 1
    fit = experiment.epoch_time_fit
    assert f"+{fit['seconds_per_100']:.2f} s per 100" in page.inner_text("#epoch-fit")
    assert (page.locator('#auroc-chart polyline[data-fit="learning_curve"]').count() == 1) == (
        experiment.learning_curve is not None
    )

    page.fill("#target-auroc", "0.99")
    page.click("#target-form button[type=submit]")
    page.wait_for_function("document.getElementById('target-answer').textContent.includes('AUROC 0.99')")
    with medtune.Client(live.url, live.key) as c:
        target = c.experiments.get(experiment.id, target_auroc=0.99).target
    answer = page.inner_text("#target-answer")
    assert (target.reason or str(target.samples)) in answer
    assert page.locator("button[data-figure]").count() == 2  # the stored PNGs, downloadable
    usable(page, "experiment")
