"""Response shapes of the clinical evaluation endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ComparedVersion(BaseModel):
    version: int
    id: str
    test_auroc: float | None


class LabelComparison(BaseModel):
    n: int
    n_positive: int
    # {auroc_a, auroc_b, difference (b - a), se, ci95, z, p_value}; null when the label has one class.
    delong: dict[str, Any] | None
    thresholds: dict[str, float]
    # {a_right_b_wrong, a_wrong_b_right, p_value, method} at each version's own threshold.
    mcnemar: dict[str, Any]


class ComparisonOut(BaseModel):
    model: str
    a: ComparedVersion
    b: ComparedVersion
    split_id: str | None
    n_test: int
    difference: str
    per_label: dict[str, LabelComparison]
