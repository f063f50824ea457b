"""The split assignment itself: pure, deterministic, patient-grouped and label-stratified.

Given the rows of a dataset version, a seed and train/val/test fractions, `assign` returns which
split every image belongs to. The same input gives the same output on any machine:

- nothing depends on input order, hash randomization or set iteration: every collection is sorted
  (by pseudonym, image id or label name) before it is used;
- fractions are exact rationals (`fractions.Fraction` of their decimal text) and split targets are
  integers from the largest-remainder rule, so no float rounding differs between platforms;
- all randomness comes from one `numpy.random.Generator(PCG64(seed))`, consumed in a fixed order.

The unit of assignment is a *group*: the patients joined by identical pixel content (usually one
patient), so no patient and no duplicated image can straddle splits. Groups are stratified by label:
with at most one label, positive and negative groups are apportioned separately (each split gets
the floor or ceiling of its exact share of each, so within one patient of proportional, with the
two roundings coordinated so split sizes stay within one too); with several labels, Sechidis et
al.'s iterative stratification (ECML PKDD 2011) runs over the groups' label vectors with integer
demands and seeded tie-breaks, always taking the label with the fewest unplaced positives next.
The first-placed (rarest) label lands within one patient of proportional; later labels inherit
the placements of co-occurring labels and land close to it (a few patients at most), and groups
with no positive label fill the remaining size demand.

ALGORITHM names this procedure; change it when a change would move any assignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from platform_core.errors import Invalid

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[str, str, str] = ("0.7", "0.15", "0.15")
ALGORITHM = "medtune-split/1"
SEED_MAX = 2**63 - 1

LabelValue = int | None


@dataclass(frozen=True)
class ImageRow:
    """One image of a dataset version as splitting sees it; labels are 1, 0 or None (unknown)."""

    image_id: str
    study_pseudonym: str
    patient_pseudonym: str
    labels: Mapping[str, LabelValue] = field(default_factory=dict)
    pixel_sha256: str | None = None
    user_split: str | None = None

    def positive(self, label: str) -> bool:
        return self.labels.get(label) == 1


@dataclass(frozen=True)
class Fractions:
    """Exact train/val/test fractions that sum to one."""

    train: Fraction
    val: Fraction
    test: Fraction

    @classmethod
    def parse(
        cls, train: float | str | None = None, val: float | str | None = None, test: float | str | None = None
    ) -> Fractions:
        given = {"train": train, "val": val, "test": test}
        defaults = dict(zip(SPLITS, DEFAULT_FRACTIONS, strict=True))
        if all(v is None for v in given.values()):
            given = dict(defaults)
        elif any(v is None for v in given.values()):
            missing = [k for k, v in given.items() if v is None]
            raise Invalid(
                f"fractions: give all of train, val and test (missing {', '.join(missing)}), "
                "or none for the defaults 0.7/0.15/0.15",
                param="fractions",
            )
        exact: dict[str, Fraction] = {}
        for name, value in given.items():
            # The decimal text, not the binary float: 0.15 is 3/20 everywhere.
            exact[name] = Fraction(str(value))
            if not 0 < exact[name] < 1:
                raise Invalid(
                    f"fractions.{name} must lie strictly between 0 and 1, got {value}: "
                    "every split needs some patients",
                    param=f"fractions.{name}",
                )
        total = sum(exact.values(), Fraction(0))
        if abs(total - 1) > Fraction(1, 10**6):
            raise Invalid(
                f"fractions must sum to 1, got {float(total):g} "
                f"({given['train']} + {given['val']} + {given['test']})",
                param="fractions",
            )
        # Tolerated rounding (1/3 each) is normalized away exactly.
        return cls(exact["train"] / total, exact["val"] / total, exact["test"] / total)

    def as_tuple(self) -> tuple[Fraction, Fraction, Fraction]:
        return (self.train, self.val, self.test)

    def as_dict(self) -> dict[str, float]:
        return {name: float(f) for name, f in zip(SPLITS, self.as_tuple(), strict=True)}


def label_names(rows: Iterable[ImageRow]) -> list[str]:
    return sorted({name for row in rows for name in row.labels})


def apportion(
    n: int, fractions: Fractions, rng: np.random.Generator, before: Sequence[int] = (0, 0, 0)
) -> np.ndarray:
    """Split n units into integer shares, each the floor or ceiling of its exact quota.

    The units left after the floors go to the splits furthest below their share of everything
    apportioned so far (`before`: earlier strata's shares, so strata together stay proportional
    too), then to the largest remainders; exact ties go by the rng.
    """
    quotas = [f * n for f in fractions.as_tuple()]
    shares = [q.numerator // q.denominator for q in quotas]
    remainders = [q - s for q, s in zip(quotas, shares, strict=True)]
    total = sum(before) + n
    deficits = [f * total - (b + s) for f, b, s in zip(fractions.as_tuple(), before, shares, strict=True)]
    tiebreak = rng.permutation(len(SPLITS))  # drawn always, so the stream does not depend on n
    candidates = [k for k in range(len(SPLITS)) if remainders[k] > 0]
    order = sorted(candidates, key=lambda k: (-deficits[k], -remainders[k], int(tiebreak[k])))
    for k in order[: n - sum(shares)]:
        shares[k] += 1
    return np.asarray(shares, dtype=np.int64)


@dataclass(frozen=True)
class Group:
    """Patients that must share a split: one patient, or several joined by identical pixels."""

    key: str
    patients: tuple[str, ...]
    image_ids: tuple[str, ...]


def group_patients(rows: Sequence[ImageRow]) -> list[Group]:
    """Union-find over patients, joined by shared pixel hashes; groups sorted by their least pseudonym."""
    parent: dict[str, str] = {}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            # The lesser pseudonym becomes the root, so roots do not depend on input order.
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo

    first_patient_with_pixels: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r.image_id):
        parent.setdefault(row.patient_pseudonym, row.patient_pseudonym)
        if row.pixel_sha256:
            other = first_patient_with_pixels.setdefault(row.pixel_sha256, row.patient_pseudonym)
            union(other, row.patient_pseudonym)

    patients: dict[str, list[str]] = {}
    images: dict[str, list[str]] = {}
    for p in sorted(parent):
        patients.setdefault(find(p), []).append(p)
    for row in rows:
        images.setdefault(find(row.patient_pseudonym), []).append(row.image_id)
    return [
        Group(key=root, patients=tuple(patients[root]), image_ids=tuple(sorted(images[root])))
        for root in sorted(patients)
    ]


def _label_matrix(rows: Sequence[ImageRow], groups: Sequence[Group], labels: Sequence[str]) -> np.ndarray:
    index = {g.key: i for i, g in enumerate(groups)}
    root_of = {p: g.key for g in groups for p in g.patients}
    y = np.zeros((len(groups), len(labels)), dtype=bool)
    for row in rows:
        gi = index[root_of[row.patient_pseudonym]]
        for j, name in enumerate(labels):
            if row.positive(name):
                y[gi, j] = True
    return y


def _pick(candidates: np.ndarray, rng: np.random.Generator) -> int:
    if candidates.shape[0] == 1:
        return int(candidates[0])
    return int(candidates[int(rng.integers(candidates.shape[0]))])


def _stratify_single(y: np.ndarray, fractions: Fractions, rng: np.random.Generator) -> np.ndarray:
    """At most one label: apportion positive and negative groups separately."""
    n = y.shape[0]
    order = rng.permutation(n)
    positive = y[:, 0] if y.shape[1] else np.zeros(n, dtype=bool)
    out = np.full(n, -1, dtype=np.int64)
    before = np.zeros(len(SPLITS), dtype=np.int64)
    for stratum in (True, False):
        members = order[positive[order] == stratum]
        shares = apportion(int(members.shape[0]), fractions, rng, before.tolist())
        out[members] = np.repeat(np.arange(len(SPLITS)), shares)
        before += shares
    return out


def _stratify_iterative(y: np.ndarray, fractions: Fractions, rng: np.random.Generator) -> np.ndarray:
    """Sechidis' iterative stratification over groups, with integer demands and seeded tie-breaks."""
    n, n_labels = y.shape
    order = rng.permutation(n)
    y = y[order]
    demand = apportion(n, fractions, rng)
    label_demand = np.stack([apportion(int(c), fractions, rng) for c in y.sum(axis=0)], axis=1)
    out = np.full(n, -1, dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    while pending.any():
        remaining = y[pending].sum(axis=0)
        if not remaining.any():
            # Groups with no positive label fill whichever split still wants the most groups.
            for i in np.flatnonzero(pending):
                k = _pick(np.flatnonzero(demand == demand.max()), rng)
                out[i] = k
                demand[k] -= 1
            break
        fewest = remaining[remaining > 0].min()
        label = _pick(np.flatnonzero(remaining == fewest), rng)
        for i in np.flatnonzero(pending & y[:, label]):
            wants = label_demand[:, label]
            best = np.flatnonzero(wants == wants.max())
            if best.shape[0] > 1:
                best = best[demand[best] == demand[best].max()]
            k = _pick(best, rng)
            out[i] = k
            pending[i] = False
            label_demand[k, y[i]] -= 1
            demand[k] -= 1
    result = np.empty(n, dtype=np.int64)
    result[order] = out
    return result


def assign(rows: Sequence[ImageRow], seed: int, fractions: Fractions) -> dict[str, str]:
    """image_id -> "train" | "val" | "test", the same for the same rows, seed and fractions anywhere."""
    if not 0 <= seed <= SEED_MAX:
        raise Invalid(f"seed must be an integer from 0 to {SEED_MAX}, got {seed}", param="seed")
    ids = [r.image_id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique within a dataset version")
    if not rows:
        return {}
    groups = group_patients(rows)
    labels = label_names(rows)
    y = _label_matrix(rows, groups, labels)
    rng = np.random.Generator(np.random.PCG64(seed))
    if len(labels) <= 1:
        split_of_group = _stratify_single(y, fractions, rng)
    else:
        split_of_group = _stratify_iterative(y, fractions, rng)
    assignment: dict[str, str] = {}
    for g, k in zip(groups, split_of_group.tolist(), strict=True):
        for image_id in g.image_ids:
            assignment[image_id] = SPLITS[k]
    return dict(sorted(assignment.items()))


USER_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


def from_column(rows: Sequence[ImageRow]) -> dict[str, str]:
    """The user's own assignment from the labels CSV `split` column, normalized to train/val/test."""
    assignment: dict[str, str] = {}
    missing: list[str] = []
    unknown: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: r.image_id):
        value = (row.user_split or "").strip().lower()
        if not value:
            missing.append(row.image_id)
        elif value not in USER_SPLIT_ALIASES:
            unknown[value] = unknown.get(value, 0) + 1
        else:
            assignment[row.image_id] = USER_SPLIT_ALIASES[value]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} image(s) have no value in the 'split' column "
            f"(e.g. {', '.join(missing[:3])}): give every labelled study train, val or test"
        )
    if unknown:
        shown = ", ".join(f"'{v}' ({c})" for v, c in sorted(unknown.items())[:5])
        problems.append(f"the 'split' column holds values other than train/val/test: {shown}")
    if problems:
        raise Invalid("; ".join(problems), param="column")
    return assignment
