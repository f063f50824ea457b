"""The inference tier's hash ring: stable per key, spread evenly, and adding a node moves ~1/n keys."""

from __future__ import annotations

from collections import Counter

import pytest

from platform_core.inference.routing import Ring

NODES = [f"http://inference-{i}:8000" for i in range(4)]
KEYS = [f"test_vit|random-seed-{i}|{64 + i % 3}" for i in range(4000)]


def test_the_same_key_goes_to_the_same_node_whatever_the_order_of_the_nodes() -> None:
    ring = Ring.build(NODES)
    shuffled = Ring.build(list(reversed(NODES)) + [NODES[0]])  # order and duplicates do not matter
    assert [ring.node(k) for k in KEYS] == [shuffled.node(k) for k in KEYS]
    assert all(ring.node(k) == ring.node(k) for k in KEYS[:50])


def test_keys_spread_over_every_node() -> None:
    counts = Counter(Ring.build(NODES).node(k) for k in KEYS)
    assert set(counts) == set(NODES)
    even = len(KEYS) / len(NODES)
    assert all(0.75 * even < c < 1.25 * even for c in counts.values()), counts


def test_adding_a_node_moves_only_the_keys_it_takes() -> None:
    before = Ring.build(NODES)
    grown = NODES + ["http://inference-4:8000"]
    after = Ring.build(grown)
    moved = [k for k in KEYS if before.node(k) != after.node(k)]
    assert all(after.node(k) == grown[-1] for k in moved)  # nothing moves between old nodes
    share = len(moved) / len(KEYS)
    assert 0.12 < share < 0.28, share  # about 1/5 of the keys, not a reshuffle


def test_one_node_takes_everything_and_no_node_is_refused() -> None:
    assert {Ring.build(NODES[:1]).node(k) for k in KEYS} == {NODES[0]}
    with pytest.raises(ValueError, match="at least one node"):
        Ring.build([])


def test_the_failover_order_starts_at_the_owner_and_names_every_node_once() -> None:
    ring = Ring.build(NODES)
    for key in KEYS[:200]:
        order = ring.order(key)
        assert order[0] == ring.node(key)
        assert sorted(order) == sorted(NODES)
    # without its owner, a key goes where the smaller ring sends it: failover is the ring's own answer
    for key in KEYS[:200]:
        owner, second = ring.order(key)[:2]
        assert Ring.build([n for n in NODES if n != owner]).node(key) == second
