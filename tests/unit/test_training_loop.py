"""The pipeline and loop on synthetic pixel-cache images: it learns, checkpoints each epoch, stops early,
cancels within a step, and a resumed run matches an uninterrupted one."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from platform_core.dicom import cache
from platform_core.storage.local import LocalStore
from platform_core.training import catalog, checkpoints
from platform_core.training.checkpoints import Checkpoint
from platform_core.training.data import (
    CacheDataset,
    Sample,
    augmentation,
    labels_array,
    load_pixels,
    make_loader,
    positive_weights,
)
from platform_core.training.loop import EpochResult, LoopConfig, Trainer, resolve_precision
from platform_core.training.network import MethodConfig, build_model, load_trainable_state, trainable_state
from platform_core.training.weights import ResolvedWeights

SIZE = 32
RANDOM = ResolvedWeights("random", "random", None)


def synthetic(store: LocalStore, n: int, seed: int) -> list[Sample]:
    """Positives carry a bright block in the upper half, negatives in the lower half."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        img = rng.integers(0, 12000, (48, 40)).astype(np.uint16)
        top = 4 if label else 28
        img[top : top + 14, 10:30] = 60000
        key = f"cache/{seed}-{i}.png"
        store.put_bytes(key, cache.encode(img))
        out.append(Sample(f"img_{seed}_{i}", key, (float(label),)))
    return out


class Recorder:
    def __init__(self, store: LocalStore, stop_at: tuple[int, int] | None = None) -> None:
        self.store = store
        self.stop_at = stop_at
        self.position = (0, 0)
        self.epochs: list[EpochResult] = []

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.position == self.stop_at

    def on_step(self, epoch: int, step: int, steps: int) -> None:
        self.position = (epoch, step)

    def on_epoch(self, result: EpochResult, checkpoint: Checkpoint) -> None:
        self.epochs.append(result)
        checkpoints.save(self.store, checkpoints.prefix_for("job", result.epoch), checkpoint)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(f"file://{tmp_path / 'objects'}")


def _setup(
    store: LocalStore, model_name: str = "test_resnet", method: str = "lora", **cfg: Any
) -> tuple[Any, ...]:
    torch.manual_seed(0)
    entry = catalog.get(model_name)
    train, val = synthetic(store, 48, 1), synthetic(store, 16, 2)
    tr = CacheDataset(load_pixels(store, train, SIZE), labels_array(train), augmentation("light", SIZE))
    va = CacheDataset(load_pixels(store, val, SIZE), labels_array(val))
    model = build_model(entry, 1, MethodConfig(method, r=4, alpha=8), RANDOM, image_size=SIZE)
    config = LoopConfig(
        **{"epochs": 4, "learning_rate": 3e-3, "warmup_epochs": 0.5, "precision": "fp32", **cfg}
    )
    trainer = Trainer(model, entry.mean, entry.std, ["finding"], config)
    return trainer, make_loader(tr, 16, True, 0), make_loader(va, 16, False, 0)


def test_pixels_load_resized_and_augmented(store: LocalStore) -> None:
    samples = synthetic(store, 4, 0)
    pixels = load_pixels(store, samples, SIZE)
    assert pixels.shape == (4, SIZE, SIZE) and pixels.dtype == np.uint16 and pixels.max() > 50000
    ds = CacheDataset(pixels, labels_array(samples), augmentation("standard", SIZE))
    x, y = ds[0]
    assert x.shape == (1, SIZE, SIZE) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.tolist() == [0.0]
    assert positive_weights(np.array([[1.0], [0.0], [0.0], [0.0]])) == [3.0]


def test_batches_come_from_threads_in_order_and_depend_on_the_seed_only(store: LocalStore) -> None:
    samples = synthetic(store, 20, 3)
    pixels, ys = load_pixels(store, samples, SIZE), labels_array(samples)
    augmented = CacheDataset(pixels, ys, augmentation("standard", SIZE))
    threaded = list(make_loader(augmented, 6, True, 7, threads=3))
    inline = list(make_loader(augmented, 6, True, 7, threads=0))
    assert len(threaded) == 3 == len(make_loader(augmented, 6, True, 7))  # the last partial batch dropped
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(threaded, inline, strict=True)
    )
    assert not torch.equal(threaded[0][0], list(make_loader(augmented, 6, True, 8))[0][0])
    plain = CacheDataset(pixels, ys)
    xs = torch.cat([x for x, _ in make_loader(plain, 6, False, 0)])
    assert xs.shape == (20, 1, SIZE, SIZE) and torch.equal(xs, torch.stack([plain[i][0] for i in range(20)]))
    batches = iter(make_loader(augmented, 2, True, 0, threads=2))
    next(batches)
    batches.close()  # a cancel mid-epoch: no thread stays behind
    assert not [t for t in threading.enumerate() if t.name.startswith("medtune-batches")]


def test_lora_learns_and_checkpoints_every_epoch(store: LocalStore) -> None:
    trainer, train, val = _setup(store, epochs=6)
    hooks = Recorder(store)
    outcome = trainer.fit(train, val, hooks)
    assert outcome.status == "completed" and outcome.epochs_run == 6
    assert [r.epoch for r in hooks.epochs] == [1, 2, 3, 4, 5, 6]
    assert all("val_auroc" in r.metrics and "train_loss" in r.metrics for r in hooks.epochs)
    assert max(r.metrics["val_auroc"] for r in hooks.epochs) >= 0.9
    assert outcome.best_epoch is not None and hooks.epochs[outcome.best_epoch - 1].is_best
    ckpt = checkpoints.load(store, checkpoints.prefix_for("job", 6))
    assert ckpt.epoch == 6 and any("lora_A" in k for k in ckpt.weights)
    assert "optimizer" in ckpt.state and "rng" in ckpt.state


def test_cancel_stops_within_one_step(store: LocalStore) -> None:
    trainer, train, val = _setup(store)
    hooks = Recorder(store, stop_at=(2, 1))
    outcome = trainer.fit(train, val, hooks)
    assert outcome.status == "cancelled" and outcome.epochs_run == 1
    assert hooks.position == (2, 1) and len(hooks.epochs) == 1


def test_early_stopping(store: LocalStore) -> None:
    # A learning rate of zero cannot improve after the first epoch.
    trainer, train, val = _setup(store, epochs=8, learning_rate=0.0, early_stopping_patience=2,
                                 checkpoint_metric="val_loss")  # fmt: skip
    outcome = trainer.fit(train, val, Recorder(store))
    assert outcome.status == "early_stopped" and outcome.epochs_run == 3 and outcome.best_epoch == 1


def test_resume_matches_an_uninterrupted_run(store: LocalStore) -> None:
    trainer, train, val = _setup(store, epochs=3)
    full = Recorder(store)
    trainer.fit(train, val, full)

    trainer2, train2, val2 = _setup(store, epochs=3)
    stopped = Recorder(store, stop_at=(2, 1))
    assert trainer2.fit(train2, val2, stopped).status == "cancelled"
    resumed_from = checkpoints.load(store, checkpoints.prefix_for("job", 1))
    trainer3, train3, val3 = _setup(store, epochs=3)
    rest = Recorder(store)
    outcome = trainer3.fit(train3, val3, rest, resume=resumed_from)
    assert [r.epoch for r in rest.epochs] == [2, 3] and outcome.status == "completed"
    assert rest.epochs[-1].metrics["val_loss"] == pytest.approx(full.epochs[-1].metrics["val_loss"], rel=1e-4)


@pytest.mark.parametrize("method", ["full", "linear_probe"])
def test_other_methods_train_only_what_they_should(store: LocalStore, method: str) -> None:
    trainer, train, val = _setup(store, model_name="test_vit", method=method, epochs=1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit(train, val, Recorder(store))
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if method == "linear_probe":
        assert changed == {"head.weight", "head.bias"}
    else:
        assert "blocks.0.attn.qkv.weight" in changed


def test_adapter_state_round_trips_and_refuses_missing_tensors() -> None:
    entry = catalog.get("test_vit")
    a = build_model(entry, 2, MethodConfig("lora", r=4), RANDOM, image_size=SIZE)
    state = trainable_state(a)
    b = build_model(entry, 2, MethodConfig("lora", r=4), RANDOM, image_size=SIZE)
    load_trainable_state(b, state)
    assert all(torch.equal(v, trainable_state(b)[k]) for k, v in state.items())
    with pytest.raises(ValueError, match="lacks"):
        load_trainable_state(b, {k: v for k, v in state.items() if "head" not in k})


def test_precision_choice() -> None:
    assert resolve_precision(torch.device("cpu"), "fp32") == "fp32"
    assert resolve_precision(torch.device("cpu")) in ("bf16", "fp32")
