"""What promotion stores beside the adapter: the operating point (its per-label thresholds, by the names
the job's evaluation gives) and temperature scaling; how the manifest carries both, older manifests
included, and how a threshold moves onto the temperature-scaled scale without changing a decision."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from platform_core.artifacts import ArtifactError, ModelManifest
from platform_core.errors import Invalid
from platform_core.evaluation.calibration import scale
from platform_core.registry import operating_point as op
from tests.unit.test_artifacts import _manifest

RESULT: dict[str, Any] = {
    "thresholds": {"finding": 0.4},
    "operating_points": {"per_label": {"finding": [
        {"name": "youden", "threshold": 0.4},
        {"name": "sensitivity_0.90", "threshold": 0.21},
        {"name": "specificity_0.95", "threshold": 0.83},
    ]}},
    "calibration": {"per_label": {"finding": {"ece": 0.1, "brier": 0.2, "temperature": 2.5}}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("given", "name"),
    [("youden", "youden"), ("sensitivity@0.9", "sensitivity_0.90"), ("Specificity_0.95", "specificity_0.95")],
)
def test_names_read_as_the_evaluation_writes_them(given: str, name: str) -> None:
    assert op.canonical(given) == name


def test_a_point_is_chosen_per_label_and_an_undefined_one_refused() -> None:
    chosen = op.choose(RESULT, ["finding"], "sensitivity@0.90")
    assert chosen == {"name": "sensitivity_0.90", "thresholds": {"finding": 0.21}, "chosen_on": "validation"}
    assert op.choose(RESULT, ["finding"], "youden")["thresholds"] == {"finding": 0.4}
    with pytest.raises(
        Invalid, match="no operating point .sensitivity_0.95.*sensitivity_0.90, specificity_0.95, youden"
    ):
        op.choose(RESULT, ["finding"], "sensitivity_0.95")
    with pytest.raises(Invalid, match="is not youden"):
        op.canonical("best")


def test_temperatures_come_from_the_job_and_unfitted_labels_keep_one() -> None:
    cal = op.calibration(RESULT, ["finding", "other"], "temperature")
    assert cal["temperatures"] == {"finding": 2.5, "other": 1.0} and cal["unfitted"] == ["other"]
    assert op.calibration(RESULT, ["finding"], "none") == {"method": "none"}
    with pytest.raises(Invalid, match="promote checkpoint 'best'"):
        op.manifest_fields(RESULT, ["finding"], "youden", "temperature", evaluated=False)
    assert (
        op.manifest_fields(RESULT, ["finding"], "youden", "none", evaluated=False)["operating_point"] is None
    )


def _calibrated(point: str = "specificity_0.95", method: str = "temperature") -> ModelManifest:
    return replace(_manifest(), **op.manifest_fields(RESULT, ["finding"], point, method, evaluated=True))


def test_the_manifest_round_trips_and_an_older_one_reads_as_uncalibrated_youden() -> None:
    m = _calibrated()
    assert ModelManifest.from_json(m.to_json()) == m
    assert m.to_json()["calibration"]["method"] == "temperature"
    old = m.to_json()
    del old["calibration"], old["operating_point"]
    read = ModelManifest.from_stored(old)
    assert read.calibration == {"method": "none"} and read.operating_point is None
    assert read.temperatures() == {"finding": 1.0}
    assert read.positive_thresholds() == ("youden", {"finding": 0.4})
    with pytest.raises(ArtifactError, match="calibration.method"):
        replace(m, calibration={"method": "platt"})


def test_thresholds_move_onto_the_scaled_scale_keeping_every_decision() -> None:
    m = _calibrated()
    name, at = m.positive_thresholds()
    assert name == "specificity_0.95"
    assert at["finding"] == pytest.approx(1 / (1 + math.exp(-math.log(0.83 / 0.17) / 2.5)))
    raw = np.linspace(0.01, 0.99, 197)
    served = scale(raw, 2.5)
    assert ((raw >= 0.83) == (served >= at["finding"])).all()
    off = _calibrated(method="none")
    assert off.positive_thresholds() == ("specificity_0.95", {"finding": 0.83})
    assert off.served_threshold("finding", 0.4) == 0.4
