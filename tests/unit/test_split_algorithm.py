"""The split algorithm: patient grouping, stratification, determinism across runs and processes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_core.errors import Invalid
from platform_core.splits import checks, manifest
from platform_core.splits.algorithm import (
    SPLITS,
    Fractions,
    ImageRow,
    assign,
    from_column,
    group_patients,
)
from tests.services import ROOT

DEFAULT = Fractions.parse()


def make_rows(
    n_patients: int,
    labels: dict[str, float],
    seed: int = 0,
    max_studies: int = 3,
    duplicates: int = 0,
) -> list[ImageRow]:
    """A synthetic dataset: patients with 1..max_studies studies of 1-2 images; labels per patient."""
    rnd = random.Random(seed)
    rows: list[ImageRow] = []
    for p in range(n_patients):
        patient_labels = {name: int(rnd.random() < prevalence) for name, prevalence in labels.items()}
        for s in range(rnd.randint(1, max_studies)):
            for i in range(rnd.randint(1, 2)):
                rows.append(
                    ImageRow(
                        image_id=f"img_{p:04d}_{s}_{i}",
                        study_pseudonym=f"2.25.{p}{s}",
                        patient_pseudonym=f"pt_{p:04d}",
                        labels=patient_labels,
                        pixel_sha256=f"{rnd.getrandbits(256):064x}",
                    )
                )
    # The same pixels uploaded under two different patients: must never straddle splits.
    for d in range(duplicates):
        a, b = rows[(7 * d) % len(rows)], rows[(13 * d + 5) % len(rows)]
        rows[rows.index(b)] = ImageRow(
            b.image_id, b.study_pseudonym, b.patient_pseudonym, b.labels, a.pixel_sha256
        )
    return rows


def positive_patients(rows: list[ImageRow], assignment: dict[str, str], label: str) -> dict[str, int]:
    return {
        s: len({r.patient_pseudonym for r in rows if r.positive(label) and assignment[r.image_id] == s})
        for s in SPLITS
    }


def within_one(counts: dict[str, int], total: int, fractions: Fractions) -> bool:
    return all(abs(counts[s] - f * total) < 1 for s, f in zip(SPLITS, fractions.as_tuple(), strict=True))


# --- fractions --------------------------------------------------------------------------------


def test_fractions_default_and_exact() -> None:
    assert DEFAULT.as_tuple() == (Fraction(7, 10), Fraction(3, 20), Fraction(3, 20))
    third = Fractions.parse(1 / 3, 1 / 3, 1 / 3)
    assert sum(third.as_tuple()) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0.8, 0.3, 0.1), "sum to 1"),
        ((1.0, 0.0, 0.0), "strictly between 0 and 1"),
        ((0.7, None, 0.15), "missing val"),
    ],
)
def test_fractions_refused(args: tuple[float | None, ...], words: str) -> None:
    with pytest.raises(Invalid, match=words):
        Fractions.parse(*args)


# --- grouping -----------------------------------------------------------------------------------


def test_pixel_duplicates_join_patients_into_one_group() -> None:
    rows = [
        ImageRow("i1", "s1", "pB", {}, "h1"),
        ImageRow("i2", "s2", "pA", {}, "h2"),
        ImageRow("i3", "s3", "pC", {}, "h1"),
        ImageRow("i4", "s4", "pD", {}, "h4"),
    ]
    groups = group_patients(rows)
    assert [(g.key, g.patients, g.image_ids) for g in groups] == [
        ("pA", ("pA",), ("i2",)),
        ("pB", ("pB", "pC"), ("i1", "i3")),
        ("pD", ("pD",), ("i4",)),
    ]
    # The grouping does not depend on input order.
    assert group_patients(list(reversed(rows))) == groups


# --- patients never straddle --------------------------------------------------------------------

BINARY = make_rows(120, {"effusion": 0.25}, seed=1, duplicates=6)
MULTI = make_rows(150, {"a": 0.06, "b": 0.2, "c": 0.35, "d": 0.12}, seed=2, duplicates=6)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**63 - 1))
def test_no_patient_or_pixel_straddles_splits_over_200_seeds(seed: int) -> None:
    for rows in (BINARY, MULTI):
        assignment = assign(rows, seed, DEFAULT)
        assert set(assignment) == {r.image_id for r in rows}
        assert checks.patient_leaks(rows, assignment) == []
        assert checks.pixel_leaks(rows, assignment) == []


@settings(max_examples=60, deadline=None)
@given(
    n_patients=st.integers(min_value=1, max_value=80),
    prevalence=st.floats(min_value=0.0, max_value=1.0),
    data_seed=st.integers(min_value=0, max_value=10**6),
    seed=st.integers(min_value=0, max_value=2**32),
    train=st.sampled_from(["0.5", "0.6", "0.7", "0.8"]),
)
def test_binary_prevalence_within_one_patient_of_proportional(
    n_patients: int, prevalence: float, data_seed: int, seed: int, train: str
) -> None:
    rest = (1 - Fraction(train)) / 2
    fractions = Fractions.parse(train, str(float(rest)), str(float(rest)))
    rows = make_rows(n_patients, {"effusion": prevalence}, seed=data_seed)
    assignment = assign(rows, seed, fractions)
    assert checks.patient_leaks(rows, assignment) == []
    positives = {r.patient_pseudonym for r in rows if r.positive("effusion")}
    negatives = {r.patient_pseudonym for r in rows} - positives
    pos = positive_patients(rows, assignment, "effusion")
    neg = {s: len({r.patient_pseudonym for r in rows if r.patient_pseudonym in negatives
                   and assignment[r.image_id] == s}) for s in SPLITS}  # fmt: skip
    assert within_one(pos, len(positives), fractions), (pos, len(positives))
    assert within_one(neg, len(negatives), fractions), (neg, len(negatives))
    # Strata are rounded together, so split sizes stay within one patient of proportional too.
    sizes = {s: pos[s] + neg[s] for s in SPLITS}
    assert within_one(sizes, n_patients, fractions), sizes


@settings(max_examples=40, deadline=None)
@given(data_seed=st.integers(min_value=0, max_value=10**6), seed=st.integers(min_value=0, max_value=2**32))
def test_multilabel_prevalence_is_stratified(data_seed: int, seed: int) -> None:
    prevalences = {"atelectasis": 0.05, "cardiomegaly": 0.15, "effusion": 0.3}
    rows = make_rows(160, prevalences, seed=data_seed)
    assignment = assign(rows, seed, DEFAULT)
    assert checks.patient_leaks(rows, assignment) == []
    for name in prevalences:
        total = len({r.patient_pseudonym for r in rows if r.positive(name)})
        counts = positive_patients(rows, assignment, name)
        if name == "atelectasis":
            # The rarest label is placed first, into exactly its proportional share.
            assert within_one(counts, total, DEFAULT), (name, counts, total)
        else:
            # Later labels inherit co-occurring placements: still close (observed worst case ~3).
            assert all(
                abs(counts[s] - f * total) <= 4 for s, f in zip(SPLITS, DEFAULT.as_tuple(), strict=True)
            )


def test_split_sizes_follow_fractions() -> None:
    rows = make_rows(400, {"effusion": 0.3}, seed=3)
    assignment = assign(rows, 11, DEFAULT)
    patients = {s: len({r.patient_pseudonym for r in rows if assignment[r.image_id] == s}) for s in SPLITS}
    assert patients == {"train": 280, "val": 60, "test": 60}


# --- determinism -----------------------------------------------------------------------------


def test_same_input_same_manifest_regardless_of_order() -> None:
    shuffled = list(MULTI)
    random.Random(5).shuffle(shuffled)
    a = manifest.render(MULTI, assign(MULTI, 1234, DEFAULT))
    b = manifest.render(shuffled, assign(shuffled, 1234, DEFAULT))
    assert a == b
    assert manifest.sha256(a) == manifest.sha256(b)
    rows, assignment = manifest.parse(a)
    assert assignment == assign(MULTI, 1234, DEFAULT)
    assert [r.labels for r in rows] == [r.labels for r in sorted(MULTI, key=lambda r: r.image_id)]


def test_different_seed_different_assignment() -> None:
    assignments = {json.dumps(assign(MULTI, seed, DEFAULT), sort_keys=True) for seed in range(10)}
    assert len(assignments) == 10
    binaries = {json.dumps(assign(BINARY, seed, DEFAULT), sort_keys=True) for seed in range(10)}
    assert len(binaries) == 10


SCRIPT = """
import json, sys
from platform_core.splits.algorithm import Fractions, ImageRow, assign
from platform_core.splits import manifest
data = json.load(sys.stdin)
rows = [ImageRow(**r) for r in data["rows"]]
out = manifest.render(rows, assign(rows, data["seed"], Fractions.parse(*data["fractions"])))
print(manifest.sha256(out))
"""


def test_same_sha256_in_two_processes_with_different_hash_seeds() -> None:
    payload = json.dumps(
        {
            "rows": [r.__dict__ | {"labels": dict(r.labels)} for r in MULTI],
            "seed": 987654321,
            "fractions": ["0.7", "0.15", "0.15"],
        }
    )
    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], input=payload, capture_output=True, text=True, env=env,
            cwd=ROOT, check=True, timeout=120,
        )  # fmt: skip
        digests.append(done.stdout.strip())
    here = manifest.sha256(manifest.render(MULTI, assign(MULTI, 987654321, DEFAULT)))
    assert digests == [here, here]


def test_manifest_is_canonical_csv() -> None:
    rows = [
        ImageRow("img_b", "2.25.2", "pt_2", {"effusion": 0, "atelectasis": None}),
        ImageRow("img_a", "2.25.1", "pt_1", {"effusion": 1, "atelectasis": 1}),
    ]
    data = manifest.render(rows, {"img_a": "train", "img_b": "test"})
    assert data == (
        b"image_id,study_pseudonym,patient_pseudonym,split,atelectasis,effusion\n"
        b"img_a,2.25.1,pt_1,train,1,1\n"
        b"img_b,2.25.2,pt_2,test,,0\n"
    )


# --- checks ----------------------------------------------------------------------------------


def test_tiny_dataset_refused_with_counts_and_remedy() -> None:
    rows = make_rows(4, {"effusion": 0.5}, seed=4)
    assignment = assign(rows, 0, DEFAULT)
    with pytest.raises(Invalid) as exc:
        checks.check(rows, assignment, DEFAULT)
    message = exc.value.message
    assert "would hold 0 images" in message
    assert "4 patient(s)" in message
    assert "raise fractions." in message


def test_label_without_positive_in_val_refused() -> None:
    rows = make_rows(60, {"effusion": 0.3, "rare": 0.0}, seed=5)
    rows[0] = ImageRow(rows[0].image_id, rows[0].study_pseudonym, rows[0].patient_pseudonym,
                       {**rows[0].labels, "rare": 1}, rows[0].pixel_sha256)  # fmt: skip
    assignment = assign(rows, 3, DEFAULT)
    with pytest.raises(Invalid) as exc:
        checks.check(rows, assignment, DEFAULT)
    assert "label 'rare' has no positive patient in val" in exc.value.message
    assert "1 in all" in exc.value.message
    assert "effusion" not in exc.value.message


def test_user_split_leak_names_patient() -> None:
    rows = [
        ImageRow(f"img_{p}_{i}", f"st_{p}_{i}", f"pt_{p}", {"effusion": p % 2}, None, split)
        for p, splits in enumerate(
            [
                ("train", "train"),
                ("val", "val"),
                ("test", "test"),
                ("train", "test"),
                ("val",),
                ("test",),
                ("train",),
            ]
        )  # fmt: skip
        for i, split in enumerate(splits)
    ]
    assignment = from_column(rows)
    with pytest.raises(Invalid) as exc:
        checks.check(rows, assignment)
    assert "patient pt_3 has images in train (1 image(s)) and test (1 image(s))" in exc.value.message
    assert "pt_0" not in exc.value.message


def test_user_split_values_refused() -> None:
    rows = [ImageRow("a", "s", "p", {}, None, "TRAIN"), ImageRow("b", "s", "q", {}, None, "holdout"),
            ImageRow("c", "s", "r", {}, None, None)]  # fmt: skip
    with pytest.raises(Invalid) as exc:
        from_column(rows)
    assert "1 image(s) have no value" in exc.value.message
    assert "'holdout' (1)" in exc.value.message


def test_pixel_duplicate_across_splits_refused() -> None:
    rows = [ImageRow("a", "s1", "p1", {}, "same"), ImageRow("b", "s2", "p2", {}, "same"),
            ImageRow("c", "s3", "p3", {}, "other")]  # fmt: skip
    with pytest.raises(Invalid, match=r"identical pixels .* a \(train, patient p1\), b \(val, patient p2\)"):
        checks.check(rows, {"a": "train", "b": "val", "c": "test"})
