"""The console's new-job form groups the catalog: radiography foundation models first, then general
vision (a real headless Chromium against a live server, with test_console's fixtures)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import test_console
from tests.e2e.test_console import sign_in
from tests.live import Live

pytestmark = [pytest.mark.services, pytest.mark.slow]

# test_console's fixtures (the browser, the live platform, a page), used under their names
browser = test_console.browser
live = test_console.live
page = test_console.page


def test_the_new_job_form_lists_radiography_foundation_models_first(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.goto("/#/jobs/new")
    page.wait_for_selector("#job-base-model optgroup", state="attached")
    groups = page.eval_on_selector_all("#job-base-model optgroup", "gs => gs.map((g) => g.label)")
    assert groups[:2] == ["radiography foundation models", "general vision"]
    first = page.eval_on_selector_all(
        "#job-base-model optgroup:first-child option", "os => os.map((o) => o.value)"
    )
    assert {"rad_dino", "biomedclip_vit_base_patch16_224", "xrv_densenet121_res224_all"} <= set(first)
    page.select_option("#job-base-model", "test_vit")  # options inside groups still select by value
    assert page.input_value("#job-base-model") == "test_vit"
