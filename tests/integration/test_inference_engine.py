"""The serving engine on tiny timm models: one base shared by many LoRA adapters, mixed-adapter
batches equal per-request answers and the training model's own output, the adapter LRU."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from platform_core.errors import Invalid
from platform_core.inference.loader import AdapterSource, BaseKey, Engine, LoraSpec, state_sha256
from platform_core.training import catalog
from platform_core.training.network import MethodConfig, apply_method, create_backbone, trainable_state
from platform_core.training.weights import ResolvedWeights

SIZE = 64
RANDOM = ResolvedWeights(kind="random", source="random", sha256=None)


def make_base(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random backbone weights; BatchNorm gammas randomised so residual branches (zero-init) matter."""
    torch.manual_seed(seed)
    model = create_backbone(catalog.get(name), 0, SIZE, RANDOM)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def make_trained(name: str, base: dict[str, torch.Tensor], labels: int, seed: int) -> torch.nn.Module:
    """What training produces: the backbone with LoRA + classifier, weights moved off their init."""
    entry = catalog.get(name)
    torch.manual_seed(seed)
    model = create_backbone(entry, labels, SIZE, RANDOM)
    model.load_state_dict({k: v for k, v in base.items() if not k.startswith(entry.classifier)}, strict=False)
    model = apply_method(model, entry, MethodConfig(r=4, alpha=8))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
        for bname, b in model.named_buffers():
            if bname.endswith("running_mean"):
                b.normal_(0, 0.3)
            elif bname.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    return model.eval()


def source(name: str, key: BaseKey, base: dict[str, torch.Tensor], model: torch.nn.Module, labels: int,
           calls: list[str] | None = None) -> AdapterSource:  # fmt: skip
    entry = catalog.get(key.backbone)
    state = trainable_state(model)

    def load_state() -> dict[str, torch.Tensor]:
        if calls is not None:
            calls.append(name)
        return state

    return AdapterSource(
        name=name,
        base=key,
        labels=tuple(f"l{i}" for i in range(labels)),
        lora=LoraSpec(r=4, alpha=8, targets=entry.lora_targets),
        load_state=load_state,
        load_base=lambda: base,
    )


def reference(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = torch.sigmoid(model(x)).numpy()
    return out


Setup = tuple[
    BaseKey, dict[str, torch.Tensor], Callable[[str, int, int], tuple[AdapterSource, torch.nn.Module]]
]


@pytest.fixture(params=["test_vit", "test_resnet"])
def setup(request: pytest.FixtureRequest) -> Setup:
    name = request.param
    base = make_base(name)
    key = BaseKey(name, state_sha256(base), SIZE)

    def adapter(version: str, labels: int, seed: int) -> tuple[AdapterSource, torch.nn.Module]:
        model = make_trained(name, base, labels, seed)
        return source(version, key, base, model, labels), model

    return key, base, adapter


def images(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, SIZE, SIZE, generator=g)


def test_two_adapters_share_one_base_and_match_the_training_model(setup: Setup) -> None:
    key, _base, adapter = setup
    (a, model_a), (b, model_b) = adapter("mva", 2, 1), adapter("mvb", 3, 2)
    engine = Engine(cache_size=4, window_ms=1, max_batch=16)
    try:
        x = images(4)
        got_a = engine.predict(a, list(x))
        got_b = engine.predict(b, list(x))
        assert engine.stats.base_loads == 1 and engine.base_count() == 1
        assert engine.stats.adapter_loads == 2
        np.testing.assert_allclose(np.stack(got_a), reference(model_a, x), atol=1e-5)
        np.testing.assert_allclose(np.stack(got_b), reference(model_b, x), atol=1e-5)
        assert not np.allclose(np.stack(got_a)[:, :2], np.stack(got_b)[:, :2], atol=1e-3)
    finally:
        engine.close()


def test_a_mixed_adapter_batch_equals_per_request_answers(setup: Setup) -> None:
    key, _base, adapter = setup
    (a, model_a), (b, model_b) = adapter("mva", 2, 1), adapter("mvb", 3, 2)
    engine = Engine(cache_size=4, window_ms=1, max_batch=16)
    try:
        served = engine.load(a)
        engine.load(b)
        assert served.mixed, "these LoRA layers should mix adapters in one forward"
        x = images(6, seed=3)
        names = ["mva", "mvb", "mvb", "mva", "mvb", "mva"]
        batched = served.probabilities(x, names)
        for i, name in enumerate(names):
            model = model_a if name == "mva" else model_b
            np.testing.assert_allclose(batched[i], reference(model, x[i : i + 1])[0], atol=1e-5)
        # The fallback (one forward per adapter within the batch) gives the same answers.
        served.mixed = False
        grouped = served.probabilities(x, names)
        for one, other in zip(batched, grouped, strict=True):
            np.testing.assert_allclose(one, other, atol=1e-5)
    finally:
        engine.close()


def test_concurrent_requests_for_different_adapters_batch_together(setup: Setup) -> None:
    key, _base, adapter = setup
    sources = [adapter(f"mv{i}", 2, i) for i in range(3)]
    engine = Engine(cache_size=8, window_ms=50, max_batch=32)
    try:
        for s, _ in sources:
            engine.load(s)
        x = images(12, seed=5)
        barrier = threading.Barrier(12)

        def call(i: int) -> np.ndarray:
            s, _ = sources[i % 3]
            barrier.wait()
            return engine.predict(s, [x[i]])[0]

        with ThreadPoolExecutor(12) as pool:
            got = list(pool.map(call, range(12)))
        for i, probs in enumerate(got):
            np.testing.assert_allclose(probs, reference(sources[i % 3][1], x[i : i + 1])[0], atol=1e-5)
        batcher = engine._batchers[key]
        assert batcher.stats.largest > 1
        assert batcher.stats.batches < 12
    finally:
        engine.close()


def test_the_adapter_cache_evicts_the_least_recently_used() -> None:
    base = make_base("test_vit")
    key = BaseKey("test_vit", state_sha256(base), SIZE)
    calls: list[str] = []
    models = {n: make_trained("test_vit", base, 1, i) for i, n in enumerate(["va", "vb", "vc"])}
    sources = {n: source(n, key, base, m, 1, calls) for n, m in models.items()}
    engine = Engine(cache_size=2, window_ms=0, max_batch=8)
    try:
        x = images(1)
        engine.predict(sources["va"], list(x))
        engine.predict(sources["vb"], list(x))
        engine.predict(sources["va"], list(x))  # va is now the most recently used
        assert calls == ["va", "vb"], "a loaded version is not loaded again"
        engine.predict(sources["vc"], list(x))
        assert engine.loaded("va") and engine.loaded("vc") and not engine.loaded("vb")
        assert engine.stats.evictions == 1
        assert "vb" not in engine.base(key).heads  # type: ignore[union-attr]
        got = engine.predict(sources["vb"], list(x))
        assert calls == ["va", "vb", "vc", "vb"]
        np.testing.assert_allclose(got[0], reference(models["vb"], x)[0], atol=1e-5)
        assert engine.stats.base_loads == 1
    finally:
        engine.close()


def test_an_adapter_missing_tensors_is_refused_and_leaves_the_base_clean() -> None:
    base = make_base("test_vit")
    key = BaseKey("test_vit", state_sha256(base), SIZE)
    model = make_trained("test_vit", base, 2, 0)
    state = trainable_state(model)
    dropped = next(k for k in state if "lora_B" in k)
    spec = LoraSpec(4, 8, catalog.get("test_vit").lora_targets)
    partial = {k: v for k, v in state.items() if k != dropped}
    broken = AdapterSource("broken", key, ("a", "b"), spec, lambda: partial, lambda: base)
    engine = Engine(cache_size=2, window_ms=0, max_batch=8)
    try:
        with pytest.raises(Invalid, match="lacks 1 LoRA tensors"):
            engine.load(broken)
        assert not engine.loaded("broken")
        good = source("good", key, base, model, 2)
        x = images(2)
        np.testing.assert_allclose(np.stack(engine.predict(good, list(x))), reference(model, x), atol=1e-5)
    finally:
        engine.close()
