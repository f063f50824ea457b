"""Training throughput for one model, printed as JSON:

- raw: training steps on in-memory tensors (the compute ceiling);
- medtune: epochs through the real pipeline (DICOM -> ingestion's pixel cache -> the job run's own
  steps, load_samples and build_trainer, over a RunContext: thread-prefetched batches -> Trainer.fit
  with its precision, validation and checkpoint hook logging to MLflow);
- naive: the loop people write first (a torch Dataset that decodes the DICOM with pydicom every epoch,
  fp32, no prefetch), same model, batch and device.

The three are interleaved step by step (a raw step, a medtune step, a naive step, repeated): each
ratio compares steps taken under the same machine load. Reported are the median of the paired ratios
and the ratio of the median step times; on a shared machine, whole passes timed one after the other
gave impossible ratios (pipeline faster than raw compute) whenever load came in bursts.

    .venv/bin/python bench/train.py --model vit_base_patch16_224 --images 32 --batch 8 --reps 3
    .venv/bin/python bench/train.py --model vit_base_patch16_224 --device cuda --images 512 --batch 64
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_core.artifacts import Method  # noqa: E402
from platform_core.datasets.pixel_caches import PixelJob, build_caches  # noqa: E402
from platform_core.jobs.models import Job  # noqa: E402
from platform_core.jobs.run import steps  # noqa: E402
from platform_core.jobs.run.context import RunContext, RunHandle, RunOptions  # noqa: E402
from platform_core.jobs.validation import resolve_hyperparameters  # noqa: E402
from platform_core.splits.algorithm import ImageRow  # noqa: E402
from platform_core.splits.checks import VerifiedSplit  # noqa: E402
from platform_core.storage import ObjectStore  # noqa: E402
from platform_core.storage.local import LocalStore  # noqa: E402
from platform_core.training import catalog  # noqa: E402
from platform_core.training.checkpoints import Checkpoint  # noqa: E402
from platform_core.training.loop import EpochResult, Trainer  # noqa: E402
from platform_core.training.network import build_model  # noqa: E402
from platform_core.training.tracking import MlflowTracker, NullTracker  # noqa: E402
from platform_core.training.weights import RANDOM, ResolvedWeights  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 6000 Ada": 364.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


# --- data ------------------------------------------------------------------------------------------


def dicom_bytes(i: int, size: int, label: int, rng: np.random.Generator) -> bytes:
    """A 12-bit DX radiograph (as ingestion stores it, de-identified); positives carry a bright disc."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    y, x = np.mgrid[0:size, 0:size]
    img = (x + y) * (1200 / (2 * size)) + 300 + rng.normal(0, 120, (size, size))
    if label:
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        img[(y - cy) ** 2 + (x - cx) ** 2 <= (size // 8) ** 2] = 3900
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = f"bench-{i}"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = np.asarray(img.clip(0, 4095), dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class NaiveDicomDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Reads and decodes the DICOM file on every access: window, scale, resize, RGB, normalise."""

    def __init__(self, paths: list[Path], labels: list[int], size: int, mean: Any, std: Any) -> None:
        self.paths, self.labels, self.size = paths, labels, size
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        import pydicom
        from pydicom.pixels.processing import apply_voi_lut

        ds = pydicom.dcmread(self.paths[i])
        arr = apply_voi_lut(ds.pixel_array, ds).astype(np.float32)
        arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-6)
        x = torch.from_numpy(arr)[None, None]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)[0]
        x = (x.expand(3, -1, -1) - self.mean) / self.std
        return x, torch.tensor([float(self.labels[i])])


# --- the run's steps without a database ------------------------------------------------------------


class BenchHandle(RunHandle):
    """The run's handle with no job row: events go to stderr, no heartbeat (nothing to beat on)."""

    def __init__(self, store: ObjectStore, options: RunOptions) -> None:  # no sessions, no thread
        self.store, self.options, self.job_id = store, options, "bench"
        self.tracker = NullTracker()

    def event(
        self, message: str, level: str = "info", type_: str = "message", data: dict[str, Any] | None = None
    ) -> None:
        print(f"[{level}] {message}", file=sys.stderr)


def bench_context(
    store: ObjectStore,
    options: RunOptions,
    entry: catalog.BackboneEntry,
    cache_keys: dict[str, str],
    args: Any,
) -> RunContext:
    """A job's RunContext as open_context reads it: one label, a split of train, val and test images, the
    hyperparameters resolved as validation resolves them, random base weights."""
    ids = list(cache_keys)
    labels = {i: i % 2 for i in range(len(ids))}
    rows = [ImageRow(image_id, f"s{n}", f"p{n}", {"finding": labels[n]}) for n, image_id in enumerate(ids)]
    parts = ["train"] * args.images + ["val"] * args.batch + ["test"] * args.batch
    assignment = dict(zip(ids, parts, strict=True))
    requested = {"epochs": 1, "batch_size": args.batch, "learning_rate": 1e-4, "warmup_epochs": 0}
    requested |= {"augmentation": args.augmentation, "class_weighting": False}
    hp, method = resolve_hyperparameters(requested, {"type": "lora"}, entry, args.images, [0.5])
    lora = method["lora"]
    return RunContext(
        handle=BenchHandle(store, options),
        job=Job(id="bench", seed=0, weights=RANDOM, checkpoint_metric="val_auroc"),
        entry=entry,
        hp=hp,
        method=Method(method["type"], lora["r"], lora["alpha"], lora["dropout"]),
        labels=["finding"],
        verified=VerifiedSplit(record=None, rows=rows, assignment=assignment),  # type: ignore[arg-type]
        cache_keys=dict(cache_keys),
        registered=None,
        last=None,
    )


# --- the three loops -------------------------------------------------------------------------------


class Hooks:
    """Trainer hooks as the runner's: per-epoch metrics to MLflow (the checkpoint is not stored)."""

    def __init__(self, tracker: MlflowTracker) -> None:
        self.tracker = tracker
        self.results: list[EpochResult] = []

    def should_stop(self) -> bool:
        return False

    def on_step(self, epoch: int, step: int, steps: int) -> None:
        pass

    def on_epoch(self, result: EpochResult, checkpoint: Checkpoint) -> None:
        self.tracker.log_metrics(result.metrics, step=len(self.results) + 1)
        self.results.append(result)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def naive_step(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    opt: torch.optim.Optimizer,
) -> None:
    """One fp32 step of the loop people write first (the batch was decoded by its DataLoader)."""
    model.train()
    x, y = batch[0].to(device), batch[1].to(device)
    loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def flops_per_image(trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward + backward FLOPs of one training step per image (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(x, y)
    return float(counter.get_total_flops()) / len(x)


def bf16_peak_tflops(override: float | None) -> tuple[str, float | None]:
    name = torch.cuda.get_device_name()
    if override:
        return name, override
    for key, peak in BF16_PEAK_TFLOPS.items():
        if key in name:
            return name, peak
    return name, None


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vit_base_patch16_224")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--images", type=int, default=32, help="training images per epoch")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each pass")
    p.add_argument("--dicom-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=2, help="batch prefetch threads (medtune)")
    p.add_argument("--augmentation", default="light")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 peak, if not in the table")
    args = p.parse_args()
    entry = catalog.get(args.model)
    size = entry.input_size
    tmp = Path(tempfile.mkdtemp(prefix="medtune-bench-"))
    store = LocalStore(f"file://{tmp / 'objects'}")
    rng = np.random.default_rng(0)
    n_val = args.batch

    # Stored DICOM, then the pixel cache built by ingestion's own code (decode once, window, resize).
    labels = [i % 2 for i in range(args.images + 2 * n_val)]  # train, then val and test
    paths: list[Path] = []
    jobs: list[PixelJob] = []
    for i, label in enumerate(labels):
        key = f"dicom/{i}.dcm"
        store.put_bytes(key, dicom_bytes(i, args.dicom_size, label, rng))
        paths.append(store.root / key)
        jobs.append(PixelJob(f"img{i}", "bench", "dicom", "queued", key, size))
    start = time.perf_counter()
    cached = build_caches(store, jobs, secret="bench-" + "0" * 32)  # no screen hashes: no OCR
    ingest_s = time.perf_counter() - start

    # medtune: the job run's own steps (load_samples, build_trainer) over a RunContext.
    options = RunOptions(device=args.device, precision=args.precision, loader_threads=args.threads)
    ctx = bench_context(store, options, entry, {r.image_id: r.cache_key or "" for r in cached}, args)
    start = time.perf_counter()
    data = steps.load_samples(ctx)
    cache_load_s = time.perf_counter() - start
    fitting = steps.build_trainer(ctx, data)
    trainer = fitting.trainer
    device = trainer.device
    tracker = MlflowTracker(f"sqlite:///{tmp / 'mlflow.sqlite'}", "bench", "bench")
    hooks = Hooks(tracker)

    # naive: its own copy of the same model, fp32, decoding every epoch.
    torch.manual_seed(0)
    naive_model = build_model(entry, 1, ctx.method, ResolvedWeights(RANDOM, RANDOM, None), size).to(device)
    naive_opt = torch.optim.AdamW([q for q in naive_model.parameters() if q.requires_grad], lr=1e-4)
    naive_loader = torch.utils.data.DataLoader(
        NaiveDicomDataset(paths[: args.images], labels[: args.images], size, entry.mean, entry.std),
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
    )

    n_steps = args.images // args.batch
    x = torch.rand(args.batch, 1, size, size).to(device)
    y = torch.randint(0, 2, (args.batch, 1)).float().to(device)
    for _ in range(2):  # warm-up: allocator, kernels, autocast caches
        trainer.train_step(x, y)
    flops = flops_per_image(trainer, x, y)
    naive_step(naive_model, next(iter(naive_loader)), device, naive_opt)

    # Paired steps: a raw step, a medtune step (next prefetched batch + step), a naive step (decode a
    # batch + fp32 step), back to back, so each ratio compares steps taken under the same machine load.
    paired: list[tuple[float, float, float]] = []
    medtune, epoch_wall = [], []
    for _ in range(args.reps):
        trainer.model.train()
        trainer.scheduler = None
        batches = iter(fitting.train_loader)
        naive_batches = iter(naive_loader)
        for _ in range(n_steps):
            t_raw = timed(lambda: trainer.train_step(x, y), device)
            t_med = timed(lambda it=batches: trainer.train_step(*next(it)), device)  # type: ignore[misc]
            t_naive = timed(
                lambda it=naive_batches: naive_step(naive_model, next(it), device, naive_opt),  # type: ignore[misc]
                device,
            )
            paired.append((t_raw, t_med, t_naive))
        # A whole epoch through Trainer.fit, as the run's fit step does (validation and MLflow included).
        start = time.perf_counter()
        trainer.fit(fitting.train_loader, fitting.val_loader, hooks)
        epoch_wall.append(time.perf_counter() - start)
        medtune.append(hooks.results[-1].images_per_second)
    on_thread_s = tracker.seconds_spent
    start = time.perf_counter()
    tracker.close()
    flush_s = time.perf_counter() - start

    raw_s, med_s, naive_s = (median([p[i] for p in paired]) for i in range(3))
    out: dict[str, Any] = {
        "model": args.model,
        "device": device.type,
        "precision": trainer.precision,
        "naive_precision": "fp32",
        "batch": args.batch,
        "image_size": size,
        "dicom_size": args.dicom_size,
        "train_images_per_epoch": n_steps * args.batch,
        "reps": args.reps,
        "torch_threads": torch.get_num_threads(),
        "prefetch_threads": args.threads,
        "augmentation": args.augmentation,
        "paired_steps": len(paired),
        "images_per_s_from_median_step": {
            "raw": round(args.batch / raw_s, 3),
            "medtune": round(args.batch / med_s, 3),
            "naive_fp32_pydicom": round(args.batch / naive_s, 3),
        },
        "pipeline_over_raw": {
            "median_of_paired_ratios": round(median([p[0] / p[1] for p in paired]), 3),
            "ratio_of_medians": round(raw_s / med_s, 3),
            "target": ">= 0.9",
        },
        "medtune_over_naive": {
            "median_of_paired_ratios": round(median([p[2] / p[1] for p in paired]), 2),
            "ratio_of_medians": round(naive_s / med_s, 2),
            "target": ">= 3",
        },
        "fit_epoch_images_per_s": [round(v, 3) for v in medtune],
        "epoch_wall_s_median": round(median(epoch_wall), 2),
        "mlflow": {
            "on_training_thread_s": round(on_thread_s, 6),
            "share_of_epoch": round(on_thread_s / sum(epoch_wall), 6),
            "background_flush_s": round(flush_s, 3),
            "target_share": "<= 0.01",
        },
        "ingest_pixel_cache_s": round(ingest_s, 2),
        "cache_load_s": round(cache_load_s, 2),
        "train_gflops_per_image": round(flops / 1e9, 2),
        "achieved_tflops": round(flops * median(medtune) / 1e12, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device.type == "cuda":
        name, peak = bf16_peak_tflops(args.peak_tflops)
        out["gpu"] = {
            "name": name,
            "bf16_peak_tflops": peak,
            "mfu": round(flops * median(medtune) / 1e12 / peak, 4) if peak else None,
            "images_per_s_at_peak": round(peak * 1e12 / flops, 1) if peak else None,
            "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
