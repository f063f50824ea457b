"""Which inference replica serves a base model: a consistent-hash ring with virtual nodes.

Every API replica builds the same ring from the same list of tier URLs, so all of them send one base
model's predictions to one replica, where its base and adapters stay hot. Adding or removing a replica
moves only the keys that land on its arcs (about 1/n of them), not the whole mapping. Pure functions,
no I/O and no torch: the API imports this in the deployed mode.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from platform_core.artifacts import ModelManifest

VNODES = 160  # points per node: spread within a few percent of even for a handful of nodes


def _point(text: str) -> int:
    # blake2b is stable across processes and Python versions, unlike hash() (salted per process).
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Ring:
    points: tuple[int, ...]
    owners: tuple[str, ...]

    @classmethod
    def build(cls, nodes: Sequence[str], vnodes: int = VNODES) -> Ring:
        unique = sorted(set(nodes))
        if not unique:
            raise ValueError("a ring needs at least one node")
        placed = sorted((_point(f"{node}#{i}"), node) for node in unique for i in range(vnodes))
        return cls(tuple(p for p, _ in placed), tuple(n for _, n in placed))

    def node(self, key: str) -> str:
        """The node owning `key`: the first point clockwise from the key's own point."""
        i = bisect.bisect_right(self.points, _point(key))
        return self.owners[i % len(self.owners)]

    def order(self, key: str) -> list[str]:
        """Every node, the owner first, then the others as met clockwise: where a key goes when the
        nodes before it cannot be reached (each key fails over to its own successor, not one for all)."""
        start = bisect.bisect_right(self.points, _point(key))
        nodes, seen = len(set(self.owners)), dict[str, None]()
        for j in range(len(self.owners)):
            seen.setdefault(self.owners[(start + j) % len(self.owners)], None)
            if len(seen) == nodes:
                break
        return list(seen)


def expand_nodes(urls: Sequence[str], addresses: Mapping[str, Sequence[str]]) -> list[str]:
    """One node per replica: a URL whose host resolves to several addresses (a compose service scaled
    to n, a headless Kubernetes service) stands for one node per address, in sorted order so every API
    replica builds the same ring. A host with one address, or none known, stays as written."""
    nodes: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        found = sorted(set(addresses.get(parts.hostname or "", ())))
        if len(found) < 2:
            nodes.append(url)
            continue
        port = f":{parts.port}" if parts.port else ""
        for address in found:
            host = f"[{address}]" if ":" in address else address
            nodes.append(parts._replace(netloc=f"{host}{port}").geturl())
    return nodes


def base_key(manifest: ModelManifest) -> str:
    """What routes a version: its base (backbone, weights, input size), the serving engine's cache key."""
    adapter = manifest.adapter
    base = adapter.base
    return f"{base.backbone}|{base.identity()}|{adapter.preprocessing.image_size}"
