"""Test metrics per subgroup (sex, age band, view position, modality, manufacturer and model, the labels
CSV's `group:<name>` columns) with bootstrap CIs and counts,
flagging a subgroup whose AUROC CI lies wholly below the overall point estimate."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from platform_core.storage import ObjectStore
from platform_core.training import metrics as M

AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+"))
UNKNOWN = "unknown"
# Subgroups are resampled fewer times than the whole test split: there are many of them.
SUBGROUP_RESAMPLES = 200
HEADER_BYTES = 256 * 1024


def age_band(age: int | None) -> str:
    if age is None:
        return UNKNOWN
    return next((name for lo, hi, name in AGE_BANDS if lo <= age < hi), UNKNOWN)


def attributes(
    session: Session, image_ids: Sequence[str], store: ObjectStore | None = None
) -> dict[str, list[str]]:
    """{attribute: value per image, in order}: view position and modality from the image, sex and age
    band from its study (stored only when the dataset retains patient characteristics); with the object
    store, also manufacturer and model from the de-identified DICOM's header, and the `group:<name>`
    columns of the dataset's labels CSVs."""
    from platform_core.datasets import repository as datasets

    rows = datasets.image_attributes(session, image_ids)
    ids = list(image_ids)
    got = [rows.get(i) for i in ids]
    out = {
        "sex": [str((r and r.sex) or UNKNOWN) for r in got],
        "age_band": [age_band(r.age_years if r else None) for r in got],
        "view_position": [str((r and r.view_position) or UNKNOWN) for r in got],
        "modality": [str((r and r.modality) or UNKNOWN) for r in got],
    }
    if store is not None:
        out.update(device_attributes(store, got))
        out.update(group_attributes(store, got))
    return out


def device_attributes(store: ObjectStore, rows: Sequence[Any]) -> dict[str, list[str]]:
    """Manufacturer, and manufacturer with model name, from each DICOM's header; de-identification keeps
    them when the dataset retains device identity (PS3.15's option, as sex and age need the patient
    characteristics option); otherwise, and for PNG and JPEG, they are unknown and the table is left out."""
    dicom = [r is not None and r.source == "dicom" and bool(r.dicom_key) for r in rows]
    found = [_device(store, r.dicom_key) if ok else (None, None) for r, ok in zip(rows, dicom, strict=True)]
    return {
        "manufacturer": [m or UNKNOWN for m, _ in found],
        "manufacturer_model": [
            f"{m or UNKNOWN} / {model}" if model else (m or UNKNOWN) for m, model in found
        ],
    }


def _device(store: ObjectStore, key: str) -> tuple[str | None, str | None]:
    """The header is read from the object's first HEADER_BYTES, not the whole image."""
    from pydicom import dcmread

    buf = bytearray()
    chunks = store.open(key)
    try:
        for chunk in chunks:
            buf += chunk
            if len(buf) >= HEADER_BYTES:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    try:
        ds = dcmread(io.BytesIO(bytes(buf)), stop_before_pixels=True, force=True,
                     specific_tags=["Manufacturer", "ManufacturerModelName"])  # fmt: skip
    except Exception:  # a header longer than HEADER_BYTES or unreadable: unknown, not a failed job
        return None, None
    maker, model = ds.get("Manufacturer"), ds.get("ManufacturerModelName")
    return (str(maker).strip() or None) if maker else None, (str(model).strip() or None) if model else None


def group_attributes(store: ObjectStore, rows: Sequence[Any]) -> dict[str, list[str]]:
    """`group:<name>` per image: the value its study's row of a labels CSV declared."""
    from platform_core.datasets.labels import read_groups

    by_dataset = {ds: read_groups(store, ds) for ds in {r.dataset_id for r in rows if r is not None}}
    per_image = [
        (
            by_dataset[r.dataset_id].get(r.study_key_hmac)
            or by_dataset[r.dataset_id].get(r.accession_hmac)
            or {}
        )
        if r is not None
        else {}
        for r in rows
    ]
    names = sorted({name for g in per_image for name in g})
    return {f"group:{name}": [g.get(name, UNKNOWN) for g in per_image] for name in names}


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
