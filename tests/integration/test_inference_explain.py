"""Grad-CAM through a shared base for one adapter, on a tiny CNN and a tiny ViT."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from platform_core.inference.explain import gradcam, overlay_base64, overlay_png
from platform_core.inference.loader import BaseKey, Engine, state_sha256
from tests.integration.test_inference_engine import SIZE, images, make_base, make_trained, source


@pytest.mark.parametrize("name", ["test_vit", "test_resnet"])
def test_gradcam_gives_a_map_per_image_and_leaves_serving_unchanged(name: str) -> None:
    base_state = make_base(name)
    key = BaseKey(name, state_sha256(base_state), SIZE)
    model = make_trained(name, base_state, 2, seed=7)
    src = source("mvx", key, base_state, model, 2)
    engine = Engine(cache_size=2, window_ms=0, max_batch=8)
    try:
        base = engine.load(src)
        x = images(1)[0]
        before = engine.predict(src, [x])[0]
        heat = gradcam(base, "mvx", x, label_index=1)
        assert heat.shape == (SIZE, SIZE)
        assert heat.min() >= 0 and heat.max() <= 1 and float(heat.std()) > 0
        after = engine.predict(src, [x])[0]
        np.testing.assert_allclose(after, before, atol=1e-6)  # no hooks or grads left behind
        assert all(not p.requires_grad for p in base.backbone.parameters())
        grey = np.linspace(0, 1, SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)
        png = overlay_png(grey, heat)
        with Image.open(io.BytesIO(png)) as img:
            assert img.size == (SIZE, SIZE) and img.mode == "RGB"
        assert overlay_base64(grey, heat[:32, :32]).startswith("iVBOR")
    finally:
        engine.close()
        torch.set_grad_enabled(True)
