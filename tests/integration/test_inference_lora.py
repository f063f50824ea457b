"""Batched multi-adapter LoRA (platform_core.inference.lora) against peft itself: mixed batches of adapters
with different ranks on Linear, Conv2d and grouped Conv2d layers, per-adapter BatchNorm statistics, rows
without an adapter, the fallback for models that fold their rows, gradients for Grad-CAM, bfloat16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from platform_core.errors import Invalid
from platform_core.inference.loader import BaseKey, Engine, LoraSpec, SharedBase, bf16_supported
from platform_core.training.catalog import BackboneEntry

TARGETS = ("conv", "gconv", "fc")
ENTRY = BackboneEntry("tiny", "tiny", 16, (0.5,) * 3, (0.5,) * 3, TARGETS, "head", "cnn")
KEY = BaseKey("tiny", "x", 16)


class Tiny(nn.Module):
    """A Linear, a Conv2d, a grouped strided Conv2d and a BatchNorm: every layer kind LoRA serves."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gconv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.gconv(torch.relu(self.conv(x))))
        return self.fc(torch.relu(x).mean((2, 3)))


class Folding(nn.Module):
    """Runs its Linear on rows folded with tokens (B * T, C): LoRA cannot tell the rows apart there."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        tokens = x.reshape(n * 3 * 4, 4)
        return self.fc(tokens).reshape(n, 12, 4).mean(1)


def base_model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny()
    assert model.bn.running_mean is not None and model.bn.running_var is not None
    with torch.no_grad():
        model.bn.running_mean.normal_(0, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def adapter_state(r: int, seed: int, stats: bool = True) -> dict[str, torch.Tensor]:
    """What training saves for one adapter of Tiny: peft LoRA keys, a head, BatchNorm statistics."""
    torch.manual_seed(seed)
    tiny = base_model()
    peft_model = get_peft_model(tiny, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(TARGETS)))
    state = {}
    for key, value in peft_model.state_dict().items():
        if ".lora_" in key:
            state[key] = torch.randn_like(value) * 0.3
    head = nn.Linear(6, 2)
    state.update({f"head.{k}": v for k, v in head.state_dict().items()})
    if stats:
        state["bn.running_mean"] = torch.randn(8) * 0.5
        state["bn.running_var"] = torch.rand(8) + 0.5
    return state


def reference(state: dict[str, torch.Tensor], r: int, x: torch.Tensor) -> torch.Tensor:
    """The adapter through peft itself, with the adapter's BatchNorm statistics in the base."""
    tiny = base_model()
    assert tiny.bn.running_mean is not None and tiny.bn.running_var is not None
    if "bn.running_mean" in state:
        tiny.bn.running_mean.copy_(state["bn.running_mean"])
        tiny.bn.running_var.copy_(state["bn.running_var"])
    peft_model = get_peft_model(tiny, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(TARGETS)))
    peft_model.load_state_dict({k: v for k, v in state.items() if ".lora_" in k}, strict=False)
    with torch.no_grad():
        out: torch.Tensor = peft_model.eval()(x)
    return out


def test_a_mixed_batch_of_ranks_and_layer_kinds_equals_peft_per_adapter() -> None:
    shared = SharedBase(KEY, ENTRY, base_model(), torch.device("cpu"))
    states = {
        "ra": (2, adapter_state(2, 1)),
        "rb": (4, adapter_state(4, 2)),
        "rc": (2, adapter_state(2, 3, False)),
    }
    for name, (r, state) in states.items():
        shared.add(name, ("p", "q"), LoraSpec(r, 2 * r, TARGETS), state)
    assert set(shared.layers) == set(TARGETS) and set(shared.norms) == {"bn"}
    x = torch.randn(7, 3, 16, 16)
    names = ["ra", "rb", "nobody", "rc", "rb", "ra", "rc"]
    with torch.no_grad():
        mixed = shared.features(x, names)
        alone = [shared.features(x[i : i + 1], [n])[0] for i, n in enumerate(names)]
    with torch.no_grad():
        bare = base_model()(x)
    for i, name in enumerate(names):
        want = bare[i] if name == "nobody" else reference(states[name][1], states[name][0], x[i : i + 1])[0]
        torch.testing.assert_close(mixed[i], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone[i], want, atol=1e-5, rtol=1e-5)
    # Removing an adapter frees its slot; the next adapter reuses it and carries nothing over.
    shared.remove("rb")
    assert "rb" not in shared.slots
    shared.add("rd", ("p", "q"), LoraSpec(2, 4, TARGETS), adapter_state(2, 4, False))
    with torch.no_grad():
        got = shared.features(x[:2], ["rd", "ra"])
    torch.testing.assert_close(
        got[0], reference(adapter_state(2, 4, False), 2, x[:1])[0], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(got[1], reference(states["ra"][1], 2, x[1:2])[0], atol=1e-5, rtol=1e-5)


def test_slots_grow_past_the_initial_capacity() -> None:
    shared = SharedBase(KEY, ENTRY, base_model(), torch.device("cpu"))
    states = {f"v{i}": adapter_state(2, 10 + i) for i in range(11)}
    for name, state in states.items():
        shared.add(name, ("p", "q"), LoraSpec(2, 4, TARGETS), state)
    assert shared.capacity > 8
    x = torch.randn(11, 3, 16, 16)
    with torch.no_grad():
        got = shared.features(x, list(states))
    for i, state in enumerate(states.values()):
        torch.testing.assert_close(got[i], reference(state, 2, x[i : i + 1])[0], atol=1e-5, rtol=1e-5)


def test_wrong_shapes_and_unservable_layers_are_refused() -> None:
    shared = SharedBase(KEY, ENTRY, base_model(), torch.device("cpu"))
    with pytest.raises(Invalid, match="rank 4 needs"):
        shared.add("wrong", ("p", "q"), LoraSpec(4, 8, TARGETS), adapter_state(2, 1))
    with pytest.raises(Invalid, match="match no layer"):
        shared.add("none", ("p", "q"), LoraSpec(2, 4, ("nothing",)), adapter_state(2, 1))
    assert not shared.slots and not shared.heads


def test_a_model_that_folds_its_rows_falls_back_to_one_forward_per_adapter() -> None:
    entry = BackboneEntry("fold", "fold", 4, (0.5,) * 3, (0.5,) * 3, ("fc",), "head", "vit")
    torch.manual_seed(0)
    shared = SharedBase(BaseKey("fold", "x", 4), entry, Folding(), torch.device("cpu"))
    for i, name in enumerate(["fa", "fb"]):
        torch.manual_seed(i)
        state = {"fc.lora_A.default.weight": torch.randn(2, 4), "fc.lora_B.default.weight": torch.randn(4, 2),
                 "head.weight": torch.randn(1, 4), "head.bias": torch.zeros(1)}  # fmt: skip
        shared.add(name, ("p",), LoraSpec(2, 4, ("fc",)), state)
    x = torch.randn(4, 3, 4, 4)
    names = ["fa", "fb", "fb", "fa"]
    with torch.no_grad():
        mixed = shared.features(x, names)
        alone = torch.stack([shared.features(x[i : i + 1], [n])[0] for i, n in enumerate(names)])
    assert not shared.mixed
    torch.testing.assert_close(mixed, alone)
    assert not torch.allclose(alone[0], alone[1])


def test_gradients_flow_through_the_lora_hooks_for_grad_cam() -> None:
    shared = SharedBase(KEY, ENTRY, base_model(), torch.device("cpu"))
    state = adapter_state(2, 1)
    shared.add("ga", ("p", "q"), LoraSpec(2, 4, TARGETS), state)
    x = torch.randn(1, 3, 16, 16, requires_grad=True)
    out = shared.features(x, ["ga"])
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    torch.testing.assert_close(out.detach(), reference(state, 2, x.detach()), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="no bfloat16 matmuls on this CPU")
def test_bf16_serving_stays_close_to_float32() -> None:
    from tests.integration.test_inference_engine import SIZE, images, make_base, make_trained, source

    base = make_base("test_vit")
    key = BaseKey("test_vit", "bf16", SIZE)
    models = [make_trained("test_vit", base, 2, seed) for seed in (1, 2)]
    sources = [source(f"b{i}", key, base, m, 2) for i, m in enumerate(models)]
    fp32, bf16 = Engine(4, 1, 16), Engine(4, 1, 16, bf16=True)
    try:
        assert bf16.autocast_dtype == torch.bfloat16 and fp32.autocast_dtype is None
        x = list(images(6, seed=9))
        for s in sources:
            want, got = np.stack(fp32.predict(s, x)), np.stack(bf16.predict(s, x))
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=0.05)  # bf16 keeps 8 bits of mantissa: opt-in only
    finally:
        fp32.close()
        bf16.close()
