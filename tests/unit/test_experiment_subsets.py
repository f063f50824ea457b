"""Nested training subsets: each larger contains the smaller, a seed gives the same subsets whatever the
row order, different seeds differ, and balanced subsets hold the label strata in equal numbers."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from platform_core.experiments.subsets import NEGATIVE, Candidate, nested, ordering, strata

SIZES = [8, 16, 40, 80]


def _binary_pool(n: int = 200, positives: int = 50) -> list[Candidate]:
    return [Candidate(f"img{i:04d}", {"finding": 1 if i < positives else 0}) for i in range(n)]


@pytest.mark.parametrize("balanced", [False, True])
def test_each_larger_subset_contains_the_smaller(balanced: bool) -> None:
    drawn = nested(_binary_pool(), SIZES, seed=7, balanced=balanced, labels=["finding"])
    assert [len(drawn[n]) for n in SIZES] == SIZES
    for small, big in zip(SIZES, SIZES[1:], strict=False):
        assert set(drawn[small]) <= set(drawn[big])
        assert len(set(drawn[big])) == big  # no image twice


@pytest.mark.parametrize("balanced", [False, True])
def test_a_seed_gives_the_same_subsets_whatever_the_row_order(balanced: bool) -> None:
    pool = _binary_pool()
    shuffled = list(pool)
    random.Random(3).shuffle(shuffled)
    a = nested(pool, SIZES, seed=11, balanced=balanced, labels=["finding"])
    b = nested(shuffled, SIZES, seed=11, balanced=balanced, labels=["finding"])
    assert a == b
    other = nested(pool, SIZES, seed=12, balanced=balanced, labels=["finding"])
    assert other[40] != a[40]


def test_balanced_binary_subsets_hold_positives_and_negatives_equally() -> None:
    pool = _binary_pool(n=200, positives=30)  # 15% positive
    positive = {c.image_id for c in pool if c.labels["finding"] == 1}
    drawn = nested(pool, [8, 16, 40, 60, 100], seed=5, balanced=True, labels=["finding"])
    for n in (8, 16, 40, 60):
        assert sum(i in positive for i in drawn[n]) == n // 2
    # Past twice the positives, the rest is filled from the negatives.
    assert sum(i in positive for i in drawn[100]) == 30
    unbalanced = nested(pool, [40], seed=5, balanced=False, labels=["finding"])
    assert sum(i in positive for i in unbalanced[40]) < 20


def test_multi_label_strata_are_the_rarest_positive_label_or_negative() -> None:
    pool = [
        Candidate("a", {"effusion": 1, "nodule": 1}),  # nodule is the rarer: its stratum
        Candidate("b", {"effusion": 1, "nodule": 0}),
        Candidate("c", {"effusion": 1, "nodule": None}),
        Candidate("d", {"effusion": 0, "nodule": 0}),
    ]
    assert strata(pool, ["effusion", "nodule"]) == {"nodule": ["a"], "effusion": ["b", "c"], NEGATIVE: ["d"]}
    order = ordering(pool, seed=0, balanced=True, labels=["effusion", "nodule"])
    first_round = Counter(
        next(k for k, v in strata(pool, ["effusion", "nodule"]).items() if i in v) for i in order[:3]
    )
    assert first_round == {"nodule": 1, "effusion": 1, NEGATIVE: 1}


def test_a_size_past_the_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the 200 usable training images"):
        nested(_binary_pool(), [100, 201], seed=0, balanced=False, labels=["finding"])
