"""The facade the API and the worker call: manifest + bytes in, predictions out.

Importing this module imports no torch (the API process loads it at start); torch, timm and peft
load on the first prediction or warm-up, inside the functions.
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, Any

from platform_core.config import Settings
from platform_core.dicom.read import Caps
from platform_core.errors import Conflict
from platform_core.inference.preprocess import Preprocessing
from platform_core.storage import ObjectStore

if TYPE_CHECKING:
    import numpy as np

    from platform_core.inference.loader import AdapterSource, Engine

ADAPTER_FILE = "adapter_model.safetensors"


def engine(settings: Settings) -> Engine:
    from platform_core.inference.loader import get_engine

    return get_engine(
        settings.adapter_cache_size,
        settings.batch_window_ms,
        settings.max_batch_size,
        settings.inference_bf16,
    )


def base_sha(manifest: dict[str, Any]) -> str:
    base = manifest["base"]
    if base.get("weights_sha256"):
        return str(base["weights_sha256"])
    if base["weights"] == "random":
        return f"random-seed-{base['seed']}"
    return f"pretrained-{base['arch']}"


def source_for(manifest: dict[str, Any], store: ObjectStore) -> AdapterSource:
    import torch

    from platform_core.inference.loader import AdapterSource, BaseKey, LoraSpec
    from platform_core.training import catalog

    base = manifest["base"]
    entry = catalog.get(base["backbone"])
    prep = Preprocessing.from_dict(manifest["preprocessing"])
    labels = tuple(manifest["labels"])
    method = manifest["method"]
    lora = None
    if method.get("type") == "lora":
        targets = manifest["lora_targets"]
        lora = LoraSpec(
            int(method["lora"]["r"]) if "lora" in method else int(method["r"]),
            int(method["lora"]["alpha"]) if "lora" in method else int(method["alpha"]),
            targets if isinstance(targets, str) else tuple(targets),
        )
    prefix = manifest["adapter"]["prefix"]
    expected = manifest["adapter"]["files"][ADAPTER_FILE]

    def load_state() -> dict[str, torch.Tensor]:
        from safetensors.torch import load

        data = store.get_bytes(f"{prefix}/{ADAPTER_FILE}")
        if hashlib.sha256(data).hexdigest() != expected:
            raise Conflict(
                f"the adapter of {manifest['model']}:{manifest['version']} changed since promotion"
            )
        state: dict[str, torch.Tensor] = load(data)
        return state

    def load_base() -> dict[str, torch.Tensor] | None:
        from platform_core.training import weights as W

        if base["weights"].startswith("bm_"):
            return W.load_registered(store, base["object_key"], base["weights_sha256"], base["format"])
        if base["weights"] == "random":
            from platform_core.training.models import create_backbone

            # Training seeds torch with the job's seed right before it builds the backbone: do the same.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(base["seed"]))
                model = create_backbone(
                    entry, len(labels), prep.image_size, W.ResolvedWeights(W.RANDOM, W.RANDOM, None)
                )
            head = entry.classifier + "."
            return {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
        return None

    return AdapterSource(
        name=str(manifest["id"]),
        base=BaseKey(entry.name, base_sha(manifest), prep.image_size),
        labels=labels,
        lora=lora,
        load_state=load_state,
        load_base=load_base,
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


def warm(settings: Settings, store: ObjectStore, manifest: dict[str, Any]) -> None:
    engine(settings).load(source_for(manifest, store))


def evict(version_id: str) -> None:
    running = _running_engine()
    if running is not None:
        running.evict(version_id)


def _prediction(manifest: dict[str, Any], probs: np.ndarray) -> dict[str, Any]:
    labels = list(manifest["labels"])
    thresholds = {label: float(manifest["thresholds"].get(label, 0.5)) for label in labels}
    probabilities = {label: float(p) for label, p in zip(labels, probs.tolist(), strict=True)}
    return {
        "probabilities": probabilities,
        "predicted": {label: probabilities[label] >= thresholds[label] for label in labels},
        "thresholds": thresholds,
    }


def predict(
    settings: Settings,
    store: ObjectStore,
    manifest: dict[str, Any],
    bodies: list[bytes],
    explain: bool = False,
) -> list[dict[str, Any]]:
    """One prediction per image body (DICOM, PNG or JPEG), micro-batched with concurrent callers."""
    import numpy as np

    from platform_core.inference.preprocess import preprocess

    prep = Preprocessing.from_dict(manifest["preprocessing"])
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
    settings: Settings, store: ObjectStore, manifest: dict[str, Any], cache_keys: list[str]
) -> list[dict[str, Any]]:
    """Predictions for images already in the pixel cache (batch jobs on ingested datasets)."""
    from platform_core.dicom import cache
    from platform_core.inference.preprocess import to_input

    prep = Preprocessing.from_dict(manifest["preprocessing"])
    eng = engine(settings)
    source = source_for(manifest, store)
    out: list[dict[str, Any]] = []
    step = max(1, settings.max_batch_size)
    for i in range(0, len(cache_keys), step):
        xs = [to_input(cache.decode(store.get_bytes(k)), prep) for k in cache_keys[i : i + step]]
        out.extend(_prediction(manifest, p) for p in eng.predict(source, xs))
    return out
