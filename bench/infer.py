"""Serving benchmark (prints JSON): single-request latency, throughput at 1/8/32 clients against a naive
server (one forward per request, adapter loaded per request) in the same run, 20 hot adapters vs 1,
and cold adapter load time. A small timm model on random weights, so it runs in a minute or two on CPU.

    .venv/bin/python bench/infer.py [--arch test_vit] [--size 160] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from platform_core.inference.loader import (
    AdapterSource,
    BaseKey,
    Engine,
    LoraSpec,
    SharedBase,
    build_backbone,
    state_sha256,
)
from platform_core.training import catalog
from platform_core.training.models import MethodConfig, apply_method, create_backbone, trainable_state
from platform_core.training.weights import ResolvedWeights

RANDOM = ResolvedWeights(kind="random", source="random", sha256=None)


def adapters(arch: str, size: int, n: int) -> tuple[dict[str, torch.Tensor], list[AdapterSource]]:
    entry = catalog.get(arch)
    torch.manual_seed(0)
    base = {k: v.clone() for k, v in create_backbone(entry, 0, size, RANDOM).state_dict().items()}
    key = BaseKey(arch, state_sha256(base), size)
    out = []
    for i in range(n):
        torch.manual_seed(i + 1)
        model = create_backbone(entry, 2, size, RANDOM)
        model.load_state_dict(
            {k: v for k, v in base.items() if not k.startswith(entry.classifier)}, strict=False
        )
        model = apply_method(model, entry, MethodConfig(r=8, alpha=16))
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.normal_(0, 0.02)
        state = trainable_state(model)
        out.append(AdapterSource(f"mv{i}", key, ("a", "b"), LoraSpec(8, 16, entry.lora_targets),
                                 lambda s=state: s, lambda: base))  # fmt: skip
    return base, out


def throughput(call: Callable[[int], None], clients: int, seconds: float) -> tuple[float, list[float]]:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(c: int) -> None:
        i = c
        while time.monotonic() < stop:
            t = time.perf_counter()
            call(i)
            with lock:
                latencies.append(time.perf_counter() - t)
            i += clients

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.monotonic() - start), latencies


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="test_vit")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base_state, sources = adapters(args.arch, args.size, 20)
    x = torch.randn(3, args.size, args.size)
    engine = Engine(cache_size=32, window_ms=args.window_ms, max_batch=args.max_batch)
    report: dict[str, Any] = {"arch": args.arch, "image_size": args.size, "device": str(engine.device),
                              "window_ms": args.window_ms, "max_batch": args.max_batch}  # fmt: skip

    t = time.perf_counter()
    engine.load(sources[0])
    report["cold_first_load_s"] = round(time.perf_counter() - t, 4)  # base + adapter
    cold = []
    for s in sources[1:6]:
        t = time.perf_counter()
        engine.load(s)
        cold.append(time.perf_counter() - t)
    report["cold_adapter_load_ms"] = round(statistics.median(cold) * 1000, 2)

    for _ in range(5):
        engine.predict(sources[0], [x])
    single = []
    for _ in range(50):
        t = time.perf_counter()
        engine.predict(sources[0], [x])
        single.append(time.perf_counter() - t)
    report["single_request_ms"] = {"p50": round(pct(single, 0.5), 2), "p95": round(pct(single, 0.95), 2)}

    entry = catalog.get(args.arch)

    naive_base = SharedBase(
        BaseKey("naive", "x", args.size), entry, build_backbone(entry, args.size, base_state), engine.device
    )

    def naive(i: int) -> None:
        # One forward per request; the adapter loaded for it and unloaded after (the base stays in memory).
        src = sources[0]
        naive_base.add(src.name, src.labels, src.lora, src.load_state())
        naive_base.probabilities(x[None], [src.name])
        naive_base.remove(src.name)

    served: dict[str, Any] = {}
    naive_out: dict[str, Any] = {}
    naive_lock = threading.Lock()

    def locked(i: int) -> None:
        with naive_lock:  # one backbone in memory: the naive server serialises its requests
            naive(i)

    for clients in (1, 8, 32):
        rps, _ = throughput(lambda i: engine.predict(sources[0], [x]), clients, args.seconds)
        served[str(clients)] = round(rps, 1)
        n_rps, _ = throughput(locked, clients, args.seconds)
        naive_out[str(clients)] = round(n_rps, 1)
    speedup = round(served["32"] / max(naive_out["32"], 1e-9), 2)
    report["throughput_rps"] = {"batched": served, "naive": naive_out, "speedup_at_32": speedup}

    for s in sources:
        engine.load(s)
    one, _ = throughput(lambda i: engine.predict(sources[0], [x]), 32, args.seconds)
    twenty, _ = throughput(lambda i: engine.predict(sources[i % 20], [x]), 32, args.seconds)
    report["hot_adapters"] = {"1_adapter_rps": round(one, 1), "20_adapters_rps": round(twenty, 1),
                              "ratio": round(twenty / one, 3)}  # fmt: skip
    batcher = engine._batchers[sources[0].base]
    report["batches"] = {"count": batcher.stats.batches, "largest": batcher.stats.largest,
                         "mean": round(batcher.stats.items / max(1, batcher.stats.batches), 2)}  # fmt: skip
    engine.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
