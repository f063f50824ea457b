"""The inference tier's hash ring: stable per key, spread evenly, and adding a node moves ~1/n keys."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from api.forward import InferenceTier
from platform_core.inference.routing import Ring, expand_nodes

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


def test_a_name_with_several_addresses_stands_for_one_node_per_address() -> None:
    urls = ["http://inference:8000", "http://gpu-host:9000", "http://127.0.0.1:8001"]
    addresses = {"inference": ["172.18.0.7", "172.18.0.5", "172.18.0.5"], "gpu-host": ["10.0.0.9"]}
    nodes = expand_nodes(urls, addresses)
    assert nodes == [
        "http://172.18.0.5:8000",
        "http://172.18.0.7:8000",
        "http://gpu-host:9000",
        "http://127.0.0.1:8001",
    ]
    assert expand_nodes(["http://svc:80"], {"svc": ["fd00::2", "fd00::1"]}) == [
        "http://[fd00::1]:80",
        "http://[fd00::2]:80",
    ]


def test_the_tier_rebuilds_its_ring_from_a_real_lookup() -> None:
    """localhost really resolves here; a name that resolves to one address stays as written."""

    async def scenario() -> list[str]:
        tier = InferenceTier(["http://127.0.0.1:9", "http://no-such-host.invalid:9"], 1.0, None)
        try:
            await tier.refresh()
            return sorted(set(tier.ring.owners))
        finally:
            await tier.session.close()
            tier.sync_client.close()

    assert asyncio.run(scenario()) == ["http://127.0.0.1:9", "http://no-such-host.invalid:9"]
