"""Nested training subsets of a split's training part, drawn by seed, optionally balanced per label.

One ordering of the training images per seed; the subset of size n is its first n images, so each
larger subset contains every smaller one (as in the white paper's sweep) and a seed gives the same
subsets on every call, whatever order the rows arrive in.

Balancing rule (`balanced=True`): each image falls in one stratum, the positive class of its rarest
positive label among the balanced labels (rarest by count in the training pool; ties by label order),
or the "negative" stratum when none of those labels is positive. For one binary label that is simply
positives and negatives. The ordering takes one image from each stratum in turn (strata in a fixed
order), each stratum in its own seeded shuffle; a stratum that runs out drops out of the rotation.
So every prefix holds the strata in equal numbers (within one) until the smaller strata are used up,
and after that the rest is filled from the strata that remain. Unbalanced: one seeded shuffle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NEGATIVE = "negative"


@dataclass(frozen=True)
class Candidate:
    """A training image as drawing sees it: its labels are 1, 0 or None (unknown)."""

    image_id: str
    labels: Mapping[str, int | None]


def _shuffled(ids: Sequence[str], rng: np.random.Generator) -> list[str]:
    ordered = sorted(ids)  # independent of the order the rows came in
    return [ordered[i] for i in rng.permutation(len(ordered))]


def strata(pool: Sequence[Candidate], labels: Sequence[str]) -> dict[str, list[str]]:
    """Image ids by stratum: the rarest positive label of each image, or NEGATIVE."""
    counts = {name: sum(1 for c in pool if c.labels.get(name) == 1) for name in labels}
    rank = {name: (counts[name], i) for i, name in enumerate(labels)}
    out: dict[str, list[str]] = {}
    for c in pool:
        positive = [name for name in labels if c.labels.get(name) == 1]
        key = min(positive, key=rank.__getitem__) if positive else NEGATIVE
        out.setdefault(key, []).append(c.image_id)
    return out


def ordering(pool: Sequence[Candidate], seed: int, balanced: bool, labels: Sequence[str]) -> list[str]:
    """Every image of the pool, in the order the nested subsets take them."""
    rng = np.random.default_rng(seed)
    if not balanced:
        return _shuffled([c.image_id for c in pool], rng)
    groups = strata(pool, labels)
    queues = [_shuffled(groups[key], rng) for key in sorted(groups)]
    out: list[str] = []
    depth = 0
    while len(out) < len(pool):
        out.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return out


def nested(
    pool: Sequence[Candidate], sizes: Sequence[int], seed: int, balanced: bool, labels: Sequence[str]
) -> dict[int, list[str]]:
    """The subset of each size (each contains the smaller ones). Sizes must not exceed the pool."""
    order = ordering(pool, seed, balanced, labels)
    too_big = [n for n in sizes if n > len(order)]
    if too_big:
        raise ValueError(f"size {max(too_big)} exceeds the {len(order)} usable training images")
    return {n: order[:n] for n in sizes}
