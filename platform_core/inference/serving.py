"""The facade the API and the worker call: a ModelManifest + bytes in, predictions out.

Importing this module imports no torch (the API process loads it at start); torch, timm and peft
load on the first prediction or warm-up, inside the functions.
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, Any

from platform_core.artifacts import ADAPTER_FILE, ModelManifest
from platform_core.config import Settings
from platform_core.dicom.read import Caps
from platform_core.errors import Conflict
from platform_core.storage import ObjectStore

if TYPE_CHECKING:
    import numpy as np

    from platform_core.inference.loader import AdapterSource, Engine


def engine(settings: Settings) -> Engine:
    from platform_core.inference.loader import get_engine

    return get_engine(
        settings.adapter_cache_size,
        settings.batch_window_ms,
        settings.max_batch_size,
        settings.inference_bf16,
    )


def source_for(manifest: ModelManifest, store: ObjectStore) -> AdapterSource:
    import torch

    from platform_core.inference.loader import AdapterSource, BaseKey, LoraSpec
    from platform_core.training import catalog

    adapter = manifest.adapter
    base = adapter.base
    entry = catalog.get(base.backbone)
    image_size = adapter.preprocessing.image_size
    method = adapter.method
    lora = LoraSpec(method.r, method.alpha, adapter.lora_targets) if method.type == "lora" else None
    on = manifest.calibration.get("method") == "temperature"
    temperatures = tuple(manifest.temperatures()[label] for label in adapter.labels) if on else None

    def load_state() -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        data = store.get_bytes(f"{manifest.prefix}/{ADAPTER_FILE}")
        if hashlib.sha256(data).hexdigest() != adapter.adapter_sha256:
            raise Conflict(f"the adapter of {manifest.ref} changed since promotion")
        state: dict[str, torch.Tensor] = load(data)
        return state

    def load_base() -> dict[str, torch.Tensor] | None:
        from platform_core.training import weights as W

        if base.registered:
            assert base.object_key is not None and base.weights_sha256 is not None and base.format is not None
            return W.load_registered(store, base.object_key, base.weights_sha256, base.format)
        if base.weights == W.RANDOM:
            from platform_core.training.network import create_backbone

            # Training seeds torch with the job's seed right before it builds the backbone: do the same.
            if base.seed is None:
                raise Conflict(f"{manifest.ref} was trained on random weights but records no seed")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(base.seed)
                model = create_backbone(
                    entry, len(adapter.labels), image_size, W.ResolvedWeights(W.RANDOM, W.RANDOM, None)
                )
            head = entry.classifier + "."
            return {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
        return None

    return AdapterSource(
        name=manifest.id,
        base=BaseKey(entry.name, base.identity(), image_size),
        labels=adapter.labels,
        lora=lora,
        load_state=load_state,
        load_base=load_base,
        temperatures=temperatures,
    )


def _running_engine() -> Any:
    """The process's engine if one was built, without importing torch to find out.

    A warm-up thread may be importing the loader right now: sys.modules then holds a half-initialised
    module without _ENGINE yet, which means "not loaded".
    """
    loader = sys.modules.get("platform_core.inference.loader")
    return getattr(loader, "_ENGINE", None)


def loaded(version_id: str) -> bool:
    """Whether this process holds the version's adapter."""
    running = _running_engine()
    return running is not None and bool(running.loaded(version_id))


def warm(settings: Settings, store: ObjectStore, manifest: ModelManifest) -> None:
    if settings.inference_nodes:
        return  # the deployed mode: the inference tier serves (and loads on first use); no torch here
    engine(settings).load(source_for(manifest, store))


def evict(version_id: str) -> None:
    running = _running_engine()
    if running is not None:
        running.evict(version_id)


def _prediction(manifest: ModelManifest, probs: np.ndarray) -> dict[str, Any]:
    """Probabilities (temperature-scaled when the version says so); `predicted` at Youden's thresholds and
    `positive` at the promoted operating point's, both on the scale of the probabilities returned."""
    labels = manifest.adapter.labels
    thresholds = {n: manifest.served_threshold(n, manifest.adapter.threshold(n)) for n in labels}
    point, at = manifest.positive_thresholds()
    probabilities = {label: float(p) for label, p in zip(labels, probs.tolist(), strict=True)}
    return {
        "probabilities": probabilities,
        "predicted": {label: probabilities[label] >= thresholds[label] for label in labels},
        "thresholds": thresholds,
        "positive": {label: probabilities[label] >= at[label] for label in labels},
        "operating_point": {"name": point, "thresholds": at},
        "calibration": str(manifest.calibration.get("method", "none")),
    }


def predict(
    settings: Settings,
    store: ObjectStore,
    manifest: ModelManifest,
    bodies: list[bytes],
    explain: bool = False,
) -> list[dict[str, Any]]:
    """One prediction per image body (DICOM, PNG or JPEG), micro-batched with concurrent callers."""
    import numpy as np

    from platform_core.inference.preprocess import preprocess

    prep = manifest.adapter.preprocessing
    caps = Caps.of(settings)
    inputs = [preprocess(body, prep, caps) for body in bodies]  # every input is checked before model work
    eng = engine(settings)
    source = source_for(manifest, store)
    probs = eng.predict(source, [x for x, _ in inputs])
    out = [_prediction(manifest, p) for p in probs]
    if explain:
        from platform_core.inference.explain import gradcam, overlay_base64

        base = eng.load(source)
        for (x, grey), p, pred in zip(inputs, probs, out, strict=True):
            heat = gradcam(base, source.name, x, int(np.argmax(p)))
            pred["heatmap_png_base64"] = overlay_base64(grey, heat)
    return out


def predict_cached(
    settings: Settings, store: ObjectStore, manifest: ModelManifest, cache_keys: list[str]
) -> list[dict[str, Any]]:
    """Predictions for images already in the pixel cache (batch jobs on ingested datasets)."""
    from platform_core.dicom import cache
    from platform_core.inference.preprocess import to_input

    prep = manifest.adapter.preprocessing
    eng = engine(settings)
    source = source_for(manifest, store)
    out: list[dict[str, Any]] = []
    step = max(1, settings.max_batch_size)
    for i in range(0, len(cache_keys), step):
        xs = [to_input(cache.decode(store.get_bytes(k)), prep) for k in cache_keys[i : i + step]]
        out.extend(_prediction(manifest, p) for p in eng.predict(source, xs))
    return out
