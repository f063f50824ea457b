"""Serving benchmark (prints JSON): single-request latency, throughput at 1/8/32 clients against a naive
server (one forward per request, its adapter put on the base with peft and taken off per request) in
the same run, 20 hot adapters vs 1, and cold adapter load time; with --bf16, the same 32-client
throughput under bfloat16 autocast and how far its probabilities are from float32. timm models on
random weights (nothing downloaded).

The 1-vs-20-adapter comparison alternates the two for --rounds rounds and reports the medians, so a
shared, noisy machine moves both alike; `batch_forward` times one full batch on one adapter against one
mixing 20 adapters (the fastest of --repeats each), the engine's per-adapter cost without client noise.

    .venv/bin/python bench/infer.py [--arch test_vit] [--size 160] [--seconds 4]
    .venv/bin/python bench/infer.py --arch vit_small_patch16_224 --size 224 --seconds 6 --single 10
    .venv/bin/python bench/infer.py --arch resnet50 --size 224 --seconds 6 --single 10 --bf16
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from platform_core.inference.loader import (
    PEFT_PREFIX,
    AdapterSource,
    BaseKey,
    Engine,
    LoraSpec,
    build_backbone,
    split_state,
    state_sha256,
)
from platform_core.training import catalog
from platform_core.training.catalog import BackboneEntry
from platform_core.training.network import MethodConfig, apply_method, create_backbone, trainable_state
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
                                 functools.partial(dict, state), lambda: base))  # fmt: skip
    return base, out


class NaivePeft:
    """Serving without the engine: per request, peft puts the version's adapter on the base (LoRA layers
    injected, weights loaded), one forward of that one image runs, and the adapter is taken off again."""

    def __init__(self, entry: BackboneEntry, size: int, state: dict[str, torch.Tensor], device: torch.device):
        self.entry = entry
        self.device = device
        self.backbone = build_backbone(entry, size, state).to(device).eval()

    def predict(self, source: AdapterSource, x: torch.Tensor) -> torch.Tensor:
        from peft import LoraConfig, get_peft_model

        assert source.lora is not None
        lora, head_state, _ = split_state(source.load_state(), self.entry.classifier)
        spec = source.lora
        targets = spec.targets if isinstance(spec.targets, str) else list(spec.targets)
        config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=targets)
        model = get_peft_model(self.backbone, config)
        rename = {".lora_A.": ".lora_A.default.", ".lora_B.": ".lora_B.default."}
        weights = {}
        for key, value in lora.items():
            for old, new in rename.items():
                key = key.replace(old, new)
            weights[PEFT_PREFIX + key] = value
        model.load_state_dict(weights, strict=False)
        head = torch.nn.Linear(head_state["weight"].shape[1], head_state["weight"].shape[0]).to(self.device)
        head.load_state_dict(head_state)
        with torch.inference_mode():
            out = torch.sigmoid(head(model(x[None].to(self.device))))
        self.backbone = model.unload()
        return out


def throughput(call: Callable[[int], object], clients: int, seconds: float) -> tuple[float, list[float]]:
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


def batch_forward(engine: Engine, sources: list[AdapterSource], args: argparse.Namespace) -> dict[str, Any]:
    """One full batch through the base: every row on one adapter vs rows over 20 adapters, alternated;
    the fastest of --repeats each (the least disturbed by other work on the machine), in wall-clock time
    and in this process's CPU time (which other processes on a shared machine disturb less)."""
    base = engine.base(sources[0].base)
    assert base is not None
    g = torch.Generator().manual_seed(3)
    x = torch.randn(args.max_batch, 3, args.size, args.size, generator=g)
    one = [sources[0].name] * args.max_batch
    mixed = [sources[i % len(sources)].name for i in range(args.max_batch)]
    wall: dict[str, list[float]] = {"one": [], "mixed": []}
    cpu: dict[str, list[float]] = {"one": [], "mixed": []}
    for _ in range(args.repeats):
        for kind, names in (("one", one), ("mixed", mixed)):
            t, c = time.perf_counter(), time.process_time()
            base.probabilities(x, names)
            wall[kind].append(time.perf_counter() - t)
            cpu[kind].append(time.process_time() - c)
    w = {k: min(v) for k, v in wall.items()}
    on_cpu = {k: min(v) for k, v in cpu.items()}
    return {
        "batch": args.max_batch,
        "1_adapter_ms": round(w["one"] * 1000, 1),
        "20_adapters_ms": round(w["mixed"] * 1000, 1),
        "throughput_ratio": round(w["one"] / w["mixed"], 3),
        "cpu_1_adapter_ms": round(on_cpu["one"] * 1000, 1),
        "cpu_20_adapters_ms": round(on_cpu["mixed"] * 1000, 1),
        "cpu_throughput_ratio": round(on_cpu["one"] / on_cpu["mixed"], 3),
    }


def bf16_report(args: argparse.Namespace, sources: list[AdapterSource], fp32: Engine, x: torch.Tensor) -> Any:
    """32-client throughput (20 adapters) under bfloat16 autocast, and its distance from float32."""
    engine = Engine(cache_size=32, window_ms=args.window_ms, max_batch=args.max_batch, bf16=True)
    if engine.autocast_dtype is None:
        engine.close()
        return {"supported": False}
    g = torch.Generator().manual_seed(7)
    images = list(torch.randn(32, 3, args.size, args.size, generator=g))
    for s in sources:
        engine.load(s)
    diffs: list[float] = []
    for i, s in enumerate(sources):
        ref = fp32.predict(s, images[i : i + 8])
        got = engine.predict(s, images[i : i + 8])
        diffs.extend(float(abs(a - b).max()) for a, b in zip(ref, got, strict=True))
    rps, _ = throughput(lambda i: engine.predict(sources[i % 20], [x]), 32, args.seconds)
    fp, _ = throughput(lambda i: fp32.predict(sources[i % 20], [x]), 32, args.seconds)
    engine.close()
    return {"supported": True, "20_adapters_rps": round(rps, 1), "fp32_20_adapters_rps": round(fp, 1),
            "speedup": round(rps / fp, 3), "max_abs_prob_diff": round(max(diffs), 5)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="test_vit")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--single", type=int, default=50, help="single requests timed for latency")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of 1 vs 20 hot adapters")
    parser.add_argument("--repeats", type=int, default=5, help="full-batch forwards timed per kind")
    parser.add_argument("--bf16", action="store_true", help="also measure bfloat16 autocast serving")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base_state, sources = adapters(args.arch, args.size, 20)
    x = torch.randn(3, args.size, args.size)
    engine = Engine(cache_size=32, window_ms=args.window_ms, max_batch=args.max_batch)
    report: dict[str, Any] = {"arch": args.arch, "image_size": args.size, "device": str(engine.device),
                              "threads": torch.get_num_threads(), "seconds": args.seconds,
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

    for _ in range(3):
        engine.predict(sources[0], [x])
    single = []
    for _ in range(args.single):
        t = time.perf_counter()
        engine.predict(sources[0], [x])
        single.append(time.perf_counter() - t)
    report["single_request_ms"] = {"p50": round(pct(single, 0.5), 2), "p95": round(pct(single, 0.95), 2)}

    entry = catalog.get(args.arch)

    naive_server = NaivePeft(entry, args.size, base_state, engine.device)

    def naive(i: int) -> None:
        naive_server.predict(sources[0], x)

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
    ones, twenties = [], []
    for _ in range(args.rounds):
        one, _ = throughput(lambda i: engine.predict(sources[0], [x]), 32, args.seconds)
        twenty, _ = throughput(lambda i: engine.predict(sources[i % 20], [x]), 32, args.seconds)
        ones.append(one)
        twenties.append(twenty)
    one, twenty = statistics.median(ones), statistics.median(twenties)
    per_round = [round(b / a, 3) for a, b in zip(ones, twenties, strict=True)]
    report["hot_adapters"] = {"1_adapter_rps": round(one, 1), "20_adapters_rps": round(twenty, 1),
                              "ratio": round(twenty / one, 3), "ratio_per_round": per_round}  # fmt: skip
    report["batch_forward"] = batch_forward(engine, sources, args)
    if args.bf16:
        report["bf16"] = bf16_report(args, sources, engine, x)
    batcher = engine._batchers[sources[0].base]
    report["batches"] = {"count": batcher.stats.batches, "largest": batcher.stats.largest,
                         "mean": round(batcher.stats.items / max(1, batcher.stats.batches), 2)}  # fmt: skip
    engine.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
