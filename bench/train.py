"""Training throughput for one model: raw steps on in-memory tensors vs a real epoch through the pipeline
(pixel cache -> DataLoader -> loop), MLflow logging share and peak memory. Prints JSON.

    .venv/bin/python bench/train.py --model vit_base_patch16_224 --batch 16 --images 128
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_core.dicom import cache  # noqa: E402
from platform_core.storage.local import LocalStore  # noqa: E402
from platform_core.training import catalog  # noqa: E402
from platform_core.training.data import (
    CacheDataset,
    Sample,
    augmentation,
    labels_array,
    load_pixels,
    make_loader,
)  # noqa: E402
from platform_core.training.loop import LoopConfig, Trainer  # noqa: E402
from platform_core.training.models import MethodConfig, build_model  # noqa: E402
from platform_core.training.tracking import MlflowTracker  # noqa: E402
from platform_core.training.weights import ResolvedWeights  # noqa: E402


class _NoHooks:
    def should_stop(self) -> bool:
        return False

    def on_step(self, epoch: int, step: int, steps: int) -> None:
        pass

    def on_epoch(self, result: object, checkpoint: object) -> None:
        self.result = result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_base_patch16_224")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    entry = catalog.get(args.model)
    size = entry.input_size
    tmp = Path(tempfile.mkdtemp())
    store = LocalStore(f"file://{tmp}")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(args.images):
        key = f"cache/{i}.png"
        store.put_bytes(key, cache.encode(rng.integers(0, 65535, (512, 512)).astype(np.uint16)))
        samples.append(Sample(str(i), key, (float(i % 2),)))
    model = build_model(entry, 1, MethodConfig("lora"), ResolvedWeights("random", "random", None), size)
    trainer = Trainer(
        model,
        entry.mean,
        entry.std,
        ["x"],
        LoopConfig(
            epochs=1, learning_rate=1e-4, warmup_epochs=0, precision=args.precision, device=args.device
        ),
    )
    trainer.scheduler = None
    x = torch.rand(args.batch, 1, size, size)
    y = torch.randint(0, 2, (args.batch, 1)).float()
    for _ in range(2):
        trainer.train_step(x, y)
    steps = max(1, args.images // args.batch)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step(x, y)
    float(loss)
    sync()
    raw = steps * args.batch / (time.perf_counter() - t)

    t = time.perf_counter()
    pixels = load_pixels(store, samples, size)
    load_s = time.perf_counter() - t
    ds = CacheDataset(pixels, labels_array(samples), augmentation("light", size))
    loader = make_loader(ds, args.batch, True, 0, args.workers, trainer.device.type == "cuda")
    val = make_loader(
        CacheDataset(pixels[: args.batch], labels_array(samples[: args.batch])), args.batch, False, 0
    )
    t = time.perf_counter()
    trainer.fit(loader, val, _NoHooks())
    epoch_s = time.perf_counter() - t
    pipeline = len(loader) * args.batch / epoch_s

    tracker = MlflowTracker(f"sqlite:///{tmp / 'mlflow.sqlite'}", "bench", "bench")
    t = time.perf_counter()
    tracker.log_metrics({f"m{i}": float(i) for i in range(40)}, step=1)
    log_s = time.perf_counter() - t
    tracker.close()
    print(
        json.dumps(
            {
                "model": args.model,
                "device": trainer.device.type,
                "precision": trainer.precision,
                "batch": args.batch,
                "image_size": size,
                "images": args.images,
                "torch_threads": torch.get_num_threads(),
                "raw_images_per_s": round(raw, 2),
                "pipeline_images_per_s": round(pipeline, 2),
                "pipeline_over_raw": round(pipeline / raw, 3),
                "cache_load_s": round(load_s, 2),
                "epoch_s": round(epoch_s, 2),
                "mlflow_log_share_of_epoch": round(log_s / epoch_s, 6),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
                if torch.cuda.is_available()
                else None,
                "not_measured": "naive pydicom-every-epoch fp32 baseline; images/s vs GPU bf16 peak",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
