"""Test metrics per subgroup (sex, age band, view position, modality) with bootstrap CIs and counts,
flagging a subgroup whose AUROC CI lies wholly below the overall point estimate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from platform_core.training import metrics as M

AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+"))
UNKNOWN = "unknown"
# Subgroups are resampled fewer times than the whole test split: there are many of them.
SUBGROUP_RESAMPLES = 200


def age_band(age: int | None) -> str:
    if age is None:
        return UNKNOWN
    return next((name for lo, hi, name in AGE_BANDS if lo <= age < hi), UNKNOWN)


def attributes(session: Session, image_ids: Sequence[str]) -> dict[str, list[str]]:
    """{attribute: value per image, in order}: view position and modality from the image, sex and age
    band from its study (stored only when the dataset retains patient characteristics)."""
    from platform_core.datasets.models import Image, Study

    rows: dict[str, tuple[Any, ...]] = {}
    ids = list(image_ids)
    for i in range(0, len(ids), 1000):
        q = (
            select(Image.id, Image.view_position, Image.modality, Study.sex, Study.age_years)
            .outerjoin(Study, Study.id == Image.study_id)
            .where(Image.id.in_(ids[i : i + 1000]))
        )
        rows.update({r[0]: tuple(r[1:]) for r in session.execute(q)})
    empty = (None, None, None, None)
    got = [rows.get(i, empty) for i in ids]
    return {
        "sex": [str(r[2] or UNKNOWN) for r in got],
        "age_band": [age_band(r[3]) for r in got],
        "view_position": [str(r[0] or UNKNOWN) for r in got],
        "modality": [str(r[1] or UNKNOWN) for r in got],
    }


def group_report(
    y: np.ndarray, p: np.ndarray, names: Sequence[str], thresholds: Sequence[float], seed: int, resamples: int
) -> dict[str, Any]:
    metrics = M.compute(y, p, names, thresholds)
    ci = M.bootstrap_ci(y, p, names, thresholds, n_resamples=resamples, seed=seed)
    return {
        "n": len(y),
        "n_positive": {n: int(y[:, j].sum()) for j, n in enumerate(names)},
        "macro": metrics["macro"],
        "per_label": metrics["per_label"],
        "ci95": {"macro": ci["macro"], "per_label": ci["per_label"]},
    }


def below_overall(report: dict[str, Any], overall: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The labels ("macro" too) whose subgroup AUROC CI lies wholly below the overall AUROC."""
    out = []
    for key, ci, point in [("macro", report["ci95"]["macro"].get("auroc"), overall["macro"].get("auroc"))] + [
        (n, report["ci95"]["per_label"][n].get("auroc"), overall["per_label"][n].get("auroc")) for n in names
    ]:
        if ci is not None and point is not None and ci[1] < point:
            out.append(key)
    return out


def subgroups(
    y_test: np.ndarray,
    p_test: np.ndarray,
    label_names: Sequence[str],
    thresholds: Sequence[float],
    attrs: dict[str, list[str]],
    overall: dict[str, Any],
    seed: int = 0,
    resamples: int = SUBGROUP_RESAMPLES,
) -> dict[str, Any]:
    """{"attributes": {attribute: [{value, n, n_positive, macro, per_label, ci95, below_overall}]},
    "flagged": [{attribute, value, labels}]}; an attribute with a single known value is left out."""
    names = list(label_names)
    out: dict[str, Any] = {"attributes": {}, "flagged": [], "n_resamples": resamples}
    for attr, values in attrs.items():
        arr = np.asarray(values, dtype=object)
        levels = sorted(set(values))
        if len([v for v in levels if v != UNKNOWN]) < 2:
            continue
        groups = []
        for value in levels:
            inside = arr == value
            report = group_report(y_test[inside], p_test[inside], names, thresholds, seed, resamples)
            report["value"] = value
            report["below_overall"] = below_overall(report, overall, names)
            if report["below_overall"]:
                out["flagged"].append({"attribute": attr, "value": value, "labels": report["below_overall"]})
            groups.append(report)
        out["attributes"][attr] = groups
    return out
