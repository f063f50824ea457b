"""The held-out test evaluation of the best epoch: metrics with bootstrap CIs at Youden thresholds chosen
on validation, confusion matrices, ROC and PR curve PNGs, metrics.json and the model card."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from platform_core.training import metrics as M


@dataclass
class Evaluation:
    label_names: list[str]
    n_test: int
    thresholds: dict[str, float]
    metrics: dict[str, Any]  # metrics.compute() at the thresholds
    ci95: dict[str, Any]  # metrics.bootstrap_ci()
    confusion: dict[str, dict[str, int]]
    # platform_core.evaluation: calibration on test, validation-chosen operating points, subgroups.
    calibration: dict[str, Any] = field(default_factory=dict)
    operating_points: dict[str, Any] = field(default_factory=dict)
    subgroups: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "n_test": self.n_test,
            "labels": self.label_names,
            "threshold_method": "youden_j_on_validation",
            "thresholds": self.thresholds,
            "macro": self.metrics["macro"],
            "per_label": self.metrics["per_label"],
            "ci95": self.ci95,
            "confusion": self.confusion,
            "calibration": self.calibration,
            "operating_points": self.operating_points,
            "subgroups": self.subgroups,
        }


def evaluate(
    y_val: np.ndarray,
    p_val: np.ndarray,
    y_test: np.ndarray,
    p_test: np.ndarray,
    label_names: Sequence[str],
    seed: int = 0,
    n_resamples: int = 1000,
    attributes: dict[str, list[str]] | None = None,
) -> Evaluation:
    """`attributes`: per test image, the subgroup values (platform_core.evaluation.subgroups.attributes)."""
    from platform_core.evaluation import calibration, operating_points, subgroups

    names = list(label_names)
    y_val, p_val = y_val.reshape(len(y_val), -1), p_val.reshape(len(p_val), -1)
    y_test, p_test = y_test.reshape(len(y_test), -1), p_test.reshape(len(p_test), -1)
    thresholds = [M.youden_threshold(y_val[:, j], p_val[:, j]) for j in range(len(names))]
    metrics = M.compute(y_test, p_test, names, thresholds)
    return Evaluation(
        label_names=names,
        n_test=len(y_test),
        thresholds=dict(zip(names, thresholds, strict=True)),
        metrics=metrics,
        ci95=M.bootstrap_ci(y_test, p_test, names, thresholds, n_resamples=n_resamples, seed=seed),
        confusion={n: M.confusion(y_test[:, j], p_test[:, j], thresholds[j]) for j, n in enumerate(names)},
        calibration=calibration.calibrate(y_val, p_val, y_test, p_test, names),
        operating_points=operating_points.operating_points(
            y_val, p_val, y_test, p_test, names, n_resamples=n_resamples, seed=seed
        ),
        subgroups=subgroups.subgroups(
            y_test, p_test, names, thresholds, attributes or {}, metrics, seed=seed
        ),
    )


PREDICTIONS_FILE = "test_predictions.json"


def predictions_json(
    image_ids: Sequence[str], y_test: np.ndarray, p_test: np.ndarray, evaluation: Evaluation
) -> bytes:
    """The test split's per-image labels and probabilities (platform ids only), for paired comparisons
    of model versions (platform_core.evaluation.compare)."""
    y, p = y_test.reshape(len(y_test), -1), p_test.reshape(len(p_test), -1)
    doc = {
        "labels": evaluation.label_names,
        "image_ids": list(image_ids),
        "y": y.astype(int).tolist(),
        "p": p.astype(float).tolist(),
        "thresholds": evaluation.thresholds,
    }
    return json.dumps(doc).encode()


def curves_png(y_true: np.ndarray, y_prob: np.ndarray, label_names: Sequence[str], kind: str) -> bytes:
    """One PNG with a ROC ("roc") or precision-recall ("pr") curve per label."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    y_true = y_true.reshape(len(y_true), -1).astype(int)
    y_prob = y_prob.reshape(len(y_prob), -1)
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    for j, name in enumerate(label_names):
        if len(np.unique(y_true[:, j])) < 2:
            continue
        if kind == "roc":
            fpr, tpr, _ = roc_curve(y_true[:, j], y_prob[:, j])
            ax.plot(fpr, tpr, label=name)
        else:
            precision, recall, _ = precision_recall_curve(y_true[:, j], y_prob[:, j])
            ax.plot(recall, precision, label=name)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (test)")
    else:
        ax.set(xlabel="recall (sensitivity)", ylabel="precision", title="Precision-recall (test)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    if len(label_names) <= 15:
        ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def metrics_json(evaluation: Evaluation, extra: dict[str, Any]) -> bytes:
    return json.dumps({**extra, **evaluation.to_json()}, indent=2, sort_keys=True).encode()


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def model_card(info: dict[str, Any], evaluation: Evaluation) -> str:
    """A markdown model card: where the data came from, how the model was trained, how it scored."""
    lines = [
        f"# Model card: {info.get('name', 'fine-tuned model')}",
        "",
        "## Data",
        f"- Dataset: {info.get('dataset_id')} (version {info.get('dataset_version')})",
        f"- Split: {info.get('split_id')} (seed {info.get('split_seed')}, sha256 {info.get('split_sha256')})",
        f"- Images: train {info.get('n_train')}, validation {info.get('n_val')}, test {evaluation.n_test}",
        f"- De-identification: {info.get('deid_profile', 'DICOM PS3.15 Basic Profile, HMAC pseudonyms')}",
        f"- Labels: {', '.join(evaluation.label_names)}",
        "",
        "## Model",
        f"- Base model: {info.get('base_model')} (timm `{info.get('arch')}`)",
        f"- Weights: {info.get('weights')} (sha256 {info.get('weights_sha256') or 'n/a'})",
        f"- Method: {json.dumps(info.get('method'))}",
        f"- Hyperparameters: {json.dumps(info.get('hyperparameters'), sort_keys=True)}",
        f"- Best epoch: {info.get('best_epoch')} by {info.get('checkpoint_metric')}",
        f"- Adapter sha256: {info.get('adapter_sha256')}",
        "",
        "## Results on the held-out test split",
        "Thresholds chosen on validation by Youden's J; 95% CIs by bootstrap "
        f"({evaluation.ci95['n_resamples']} resamples, seed {evaluation.ci95['seed']}).",
        "",
        "| label | metric | value | 95% CI |",
        "|---|---|---|---|",
    ]
    rows = [("macro", evaluation.metrics["macro"], evaluation.ci95["macro"])]
    if len(evaluation.label_names) > 1:
        rows += [
            (n, evaluation.metrics["per_label"][n], evaluation.ci95["per_label"][n])
            for n in evaluation.label_names
        ]
    for label, values, cis in rows:
        for m in M.METRICS:
            ci = cis.get(m)
            ci_text = f"{_fmt(ci[0])} - {_fmt(ci[1])}" if ci else "n/a"
            lines.append(f"| {label} | {m} | {_fmt(values.get(m))} | {ci_text} |")
    from platform_core.evaluation import card

    lines += card.sections(evaluation.to_json())
    lines += [
        "",
        "## Intended use and limits",
        "Research and decision support under clinical supervision; validated only on the data above.",
        "Performance can differ on other sites, scanners and populations: validate locally before use.",
        "",
    ]
    return "\n".join(lines)
