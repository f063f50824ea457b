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

With --tier, the deployed mode instead: the predict route over HTTP end to end, an API process serving
in process (embedded) against an API process forwarding to a `medtune serve` process (the inference
tier), both on one PostgreSQL database and object store; p50 latency and throughput at 1, 8 and 32
clients, the two alternated for --rounds rounds (medians), and the overhead of the hop.

    .venv/bin/python bench/infer.py --tier --arch test_vit --size 160 --seconds 4 --rounds 3
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
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
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


# --- --tier: the API embedded vs the API forwarding to the inference tier ------------------------


def start_api(env: dict[str, str], log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    from tests.services import free_port

    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with log.open("ab") as fh:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT, stdout=fh, stderr=fh)
    return f"http://127.0.0.1:{port}", proc


def route_load(url: str, key: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads, each with its own connection, posting one PNG to the predict route."""
    import httpx

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/png"}
    pool = [httpx.Client(base_url=url, timeout=120, headers=headers) for _ in range(clients)]
    failures: list[int] = []

    def call(i: int) -> None:
        r = pool[i % clients].post("/v1/models/bench/predict", content=body)
        if r.status_code != 200:
            failures.append(r.status_code)

    rps, latencies = throughput(call, clients, seconds)
    for c in pool:
        c.close()
    if failures:
        raise RuntimeError(f"{len(failures)} predictions failed (HTTP {sorted(set(failures))})")
    return {"rps": rps, "p50_ms": pct(latencies, 0.5), "n": len(latencies)}


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (their threads included)."""
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(stat[11]) + int(stat[12])
    return total / os.sysconf("SC_CLK_TCK")


def tier_runs(
    urls: dict[str, str], pids: dict[str, list[int]], key: str, body: bytes, args: argparse.Namespace
) -> dict[str, Any]:
    """Medians over rounds; within a round, the modes alternate (and swap order each round). cpu_ms:
    CPU per request of the serving processes (the API; the API and the tier), the client excluded."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {m: {"1": [], "8": [], "32": []} for m in urls}
    for r in range(args.rounds):
        for clients in (1, 8, 32):
            for mode in list(urls)[:: 1 if r % 2 == 0 else -1]:
                before = cpu_s(pids[mode])
                run = route_load(urls[mode], key, body, clients, args.seconds)
                run["cpu_ms"] = (cpu_s(pids[mode]) - before) * 1000 / max(1, run["n"])
                runs[mode][str(clients)].append(run)
    out: dict[str, Any] = {}
    for mode, by_clients in runs.items():
        keys = ("rps", "p50_ms", "cpu_ms")
        out[mode] = {c: {k: round(statistics.median(x[k] for x in xs), 2) for k in keys}
                     for c, xs in by_clients.items()}  # fmt: skip
    out["overhead"] = {
        c: {"throughput": round(1 - out["tier"][c]["rps"] / out["embedded"][c]["rps"], 3),
            "p50": round(out["tier"][c]["p50_ms"] / out["embedded"][c]["p50_ms"] - 1, 3)}
        for c in ("1", "8", "32")
    }  # fmt: skip
    return out


def tier_report(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from platform_core.config import Settings
    from platform_core.db.migrate import upgrade
    from platform_core.storage import open_store
    from tests.live import make_key
    from tests.services import create_pg_database, drop_pg_database, wait_for
    from tests.tier import png, register_version, start_tier, stop, wait_healthy

    body = png(0, args.image_side)
    with tempfile.TemporaryDirectory() as tmp:
        data, db = Path(tmp) / "data", create_pg_database("medtune_bench")
        env = {"MEDTUNE_DATA_DIR": str(data), "MEDTUNE_DATABASE_URL": db,
               "MEDTUNE_OBJECT_STORE_URL": f"file://{data / 'objects'}", "MEDTUNE_DEID_SECRET": "b" * 64,
               "MEDTUNE_BATCH_WINDOW_MS": str(args.window_ms), "MEDTUNE_MAX_BATCH_SIZE": str(args.max_batch),
               "MEDTUNE_MAX_CONCURRENT_PREDICTIONS_PER_KEY": "64"}  # fmt: skip
        procs: list[subprocess.Popen[bytes]] = []
        try:
            upgrade(db)
            settings = Settings(data_dir=data, database_url=db, deid_secret=env["MEDTUNE_DEID_SECRET"],
                                object_store_url=env["MEDTUNE_OBJECT_STORE_URL"])  # fmt: skip
            project_id, key = make_key(settings, "bench")
            store = open_store(settings.object_store_url or "", settings)
            register_version(settings, store, project_id, "bench", 0, args.arch, args.size)
            tier = start_tier(env, Path(tmp) / "tier.log")
            procs.append(tier.proc)
            urls, pids = {}, {}
            for mode, extra in (("embedded", {}), ("tier", {"MEDTUNE_INFERENCE_URLS": tier.url})):
                urls[mode], proc = start_api({**env, **extra}, Path(tmp) / f"api-{mode}.log")
                procs.append(proc)
                pids[mode] = [proc.pid] + ([tier.proc.pid] if mode == "tier" else [])
            wait_healthy(tier)
            for url in urls.values():
                wait_for(lambda u=url: httpx.get(f"{u}/healthz", timeout=2).status_code == 200, 90, 0.2, url)
                route_load(url, key, body, 1, 1.0)  # the model loads (embedded: in the API process)
            report = tier_runs(urls, pids, key, body, args)
            report["tier_health"] = tier.health()
            report["png_bytes"] = len(body)
            return report
        finally:
            for proc in procs:
                stop(proc)
            drop_pg_database(db)


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
    parser.add_argument("--tier", action="store_true", help="the API embedded vs forwarding to the tier")
    parser.add_argument("--image-side", type=int, default=256, help="--tier: the PNG's side in pixels")
    args = parser.parse_args()
    if args.tier:
        report = {"arch": args.arch, "image_size": args.size, "seconds": args.seconds, "rounds": args.rounds}
        print(json.dumps({**report, **tier_report(args)}, indent=2))
        return
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
