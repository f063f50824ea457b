"""What promotion takes from the job's validation evaluation: the operating point whose per-label
thresholds decide a prediction's `positive`, and the temperatures of optional temperature scaling.

Operating points are named as platform_core.evaluation.operating_points names them: `youden`,
`sensitivity_0.90`, `specificity_0.95`, ... (`sensitivity@0.90` is read as `sensitivity_0.90`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from platform_core.errors import Invalid

YOUDEN = "youden"
PATTERN = r"^(youden|(sensitivity|specificity)[_@](0(\.\d{1,3})?|1(\.0{1,3})?))$"
_NAME = re.compile(PATTERN)


def canonical(name: str) -> str:
    """`sensitivity@0.9` -> `sensitivity_0.90`, as the job's evaluation names its points."""
    m = _NAME.match(name.strip().lower())
    if m is None:
        raise Invalid(
            f"operating_point '{name}' is not youden, sensitivity_<target> or specificity_<target>",
            param="operating_point",
        )
    if m[1] == YOUDEN:
        return YOUDEN
    return f"{m[2]}_{float(m[3]):.2f}"


def choose(result: Mapping[str, Any], labels: Sequence[str], name: str) -> dict[str, Any]:
    """{"name", "thresholds": {label: t}, "chosen_on": "validation"} from the job's operating points; a
    point the validation split could not define for a label is refused, naming the points it has."""
    wanted = canonical(name)
    if wanted == YOUDEN:
        thresholds = {str(k): float(v) for k, v in (result.get("thresholds") or {}).items()}
        return {"name": YOUDEN, "thresholds": thresholds, "chosen_on": "validation"}
    per_label = (result.get("operating_points") or {}).get("per_label") or {}
    out: dict[str, float] = {}
    for label in labels:
        points = {p["name"]: p for p in per_label.get(label, [])}
        if wanted not in points:
            have = ", ".join(sorted(points)) or "none"
            raise Invalid(
                f"the job has no operating point '{wanted}' for label '{label}' (validation defines: {have})",
                param="operating_point",
            )
        out[label] = float(points[wanted]["threshold"])
    return {"name": wanted, "thresholds": out, "chosen_on": "validation"}


def calibration(result: Mapping[str, Any], labels: Sequence[str], method: str) -> dict[str, Any]:
    """{"method": "none"} or the temperatures the job fitted on validation; a label it fitted none for
    (validation had one class) keeps T = 1 and is listed under `unfitted`."""
    if method == "none":
        return {"method": "none"}
    per_label = (result.get("calibration") or {}).get("per_label") or {}
    fitted = {n: per_label.get(n, {}).get("temperature") for n in labels}
    return {
        "method": "temperature",
        "temperatures": {n: float(t) if t is not None else 1.0 for n, t in fitted.items()},
        "unfitted": [n for n, t in fitted.items() if t is None],
        "fitted_on": "validation",
    }


def manifest_fields(
    result: Mapping[str, Any], labels: Sequence[str], point: str, method: str, evaluated: bool
) -> dict[str, Any]:
    """The manifest's `operating_point` and `calibration` for a promotion. Only the best epoch was
    evaluated on validation by training: another epoch gets Youden's point and no calibration."""
    if not evaluated:
        if canonical(point) != YOUDEN or method != "none":
            raise Invalid(
                "operating points other than youden and temperature scaling come from the job's "
                "validation evaluation of its best epoch: promote checkpoint 'best'",
                param="checkpoint",
            )
        return {"operating_point": None, "calibration": {"method": "none"}}
    return {
        "operating_point": choose(result, labels, point),
        "calibration": calibration(result, labels, method),
    }
