"""The model card's clinical sections: calibration, operating points and subgroups, as markdown."""

from __future__ import annotations

from typing import Any


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _ci(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"{ci[0]:.3f} - {ci[1]:.3f}"


def calibration_lines(cal: dict[str, Any]) -> list[str]:
    if not cal:
        return []
    lines = [
        "",
        "## Calibration on test",
        f"ECE over {cal['n_bins']} {cal['bins']} bins and Brier score; temperature fitted on validation.",
        "",
        "| label | ECE | Brier | temperature | ECE after scaling |",
        "|---|---|---|---|---|",
    ]
    for label, c in cal["per_label"].items():
        lines.append(
            f"| {label} | {_f(c['ece'])} | {_f(c['brier'])} | {_f(c.get('temperature'))} | "
            f"{_f(c.get('ece_scaled'))} |"
        )
    return lines


def operating_point_lines(points: dict[str, Any]) -> list[str]:
    if not points:
        return []
    lines = [
        "",
        "## Operating points",
        "Thresholds chosen on validation; test sensitivity and specificity with bootstrap 95% CIs.",
        "",
        "| label | operating point | threshold | test sensitivity (95% CI) | test specificity (95% CI) |",
        "|---|---|---|---|---|",
    ]
    for label, rows in points["per_label"].items():
        for r in rows:
            ci = r["test_ci95"]
            lines.append(
                f"| {label} | {r['name']} | {_f(r['threshold'])} | {_f(r['test']['sensitivity'])} "
                f"({_ci(ci['sensitivity'])}) | {_f(r['test']['specificity'])} ({_ci(ci['specificity'])}) |"
            )
    return lines


def subgroup_lines(groups: dict[str, Any]) -> list[str]:
    if not groups or not groups.get("attributes"):
        return []
    lines = [
        "",
        "## Subgroups",
        "Macro AUROC per subgroup with bootstrap 95% CIs "
        f"({groups['n_resamples']} resamples); flagged: the CI lies wholly below the overall AUROC.",
        "",
        "| attribute | value | images | AUROC | 95% CI | flagged |",
        "|---|---|---|---|---|---|",
    ]
    for attr, rows in groups["attributes"].items():
        for g in rows:
            flag = "yes" if g["below_overall"] else ""
            lines.append(
                f"| {attr} | {g['value']} | {g['n']} | {_f(g['macro'].get('auroc'))} | "
                f"{_ci(g['ci95']['macro'].get('auroc'))} | {flag} |"
            )
    return lines


def sections(report: dict[str, Any]) -> list[str]:
    """From an evaluation's JSON (platform_core.training.evaluation.Evaluation.to_json)."""
    return (
        calibration_lines(report.get("calibration") or {})
        + operating_point_lines(report.get("operating_points") or {})
        + subgroup_lines(report.get("subgroups") or {})
    )
