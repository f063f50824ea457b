"""The data pipeline: pixel-cache arrays decoded once per run, batches assembled by background threads.

The cache (.npy uint16, see platform_core.dicom.cache) is read from the object store once, resized to
the run's image size and kept in memory as uint16; each epoch only gathers, crops, jitters and
converts. Normalisation to the backbone's mean/std and the grey-to-RGB repeat happen on the device.

Background loading uses threads, not DataLoader worker processes: the train task runs in a Celery
prefork child, a daemonic process that may not start children. The data are already decoded in memory,
so a batch is a gather plus a few tensor ops that release the GIL; threads also need no copy of the
pixel array per worker and never fork a process that holds a CUDA context. They work under any pool.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from platform_core.dicom import cache
from platform_core.erasure.marks import DataErased
from platform_core.errors import Invalid

if TYPE_CHECKING:
    from platform_core.storage import ObjectStore

AUGMENTATIONS = ("none", "light", "standard")
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Sample:
    image_id: str
    cache_key: str
    labels: tuple[float, ...]


def resize_uint16(pixels: np.ndarray, size: int) -> np.ndarray:
    """Stretch to size x size, antialiased (radiographs train square, as CheXpert/NIH models do)."""
    x = torch.from_numpy(pixels.astype(np.float32))[None, None]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    out: np.ndarray = x[0, 0].round().clamp(0, 65535).numpy().astype(np.uint16)
    return out


def load_pixels(
    store: ObjectStore,
    samples: Sequence[Sample],
    size: int,
    threads: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, size, size) uint16: each image fetched and decoded once, in threads (I/O drops the GIL)."""
    out = np.empty((len(samples), size, size), dtype=np.uint16)

    def one(i: int) -> None:
        try:
            data = store.get_bytes(samples[i].cache_key)
        except KeyError:
            # No image id in the message: it outlives the erasure in the job's record.
            raise DataErased("an image of the split was erased while the job read the pixel cache") from None
        out[i] = resize_uint16(cache.decode(data), size)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for done, _ in enumerate(pool.map(one, range(len(samples))), start=1):
            if progress is not None and done % 256 == 0:
                progress(done, len(samples))
    return out


@dataclass(frozen=True)
class Augment:
    """Random resized crop, small rotation/shift, brightness and contrast jitter on a 1 x S x S tensor.

    Every random draw comes from the generator passed in, so a batch's augmentation depends only on its
    seed: the same in whichever thread builds it, and the same again after a resume. No flips:
    laterality carries meaning in radiographs (the heart is on the left).
    """

    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    degrees: float
    translate: float
    brightness: float
    contrast: float

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(8, generator=generator, dtype=torch.float64).tolist()
        h, w = int(x.shape[-2]), int(x.shape[-1])
        area = h * w * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[0])
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = math.exp(lo + (hi - lo) * u[1])
        cw = min(w, max(1, round(math.sqrt(area * aspect))))
        ch = min(h, max(1, round(math.sqrt(area / aspect))))
        top, left = int((h - ch) * u[2]), int((w - cw) * u[3])
        x = TF.resized_crop(x, top, left, ch, cw, [self.size, self.size], antialias=True)
        angle = self.degrees * (2 * u[4] - 1)
        shift = [
            round(self.translate * self.size * (2 * u[5] - 1)),
            round(self.translate * self.size * (2 * u[6] - 1)),
        ]
        if angle or shift != [0, 0]:
            x = TF.affine(x, angle=angle, translate=shift, scale=1.0, shear=[0.0, 0.0])
        x = TF.adjust_brightness(x, 1 + self.brightness * (2 * u[7] - 1))
        c = torch.rand(1, generator=generator, dtype=torch.float64).item()
        out: torch.Tensor = TF.adjust_contrast(x, 1 + self.contrast * (2 * c - 1))  # torchvision: untyped
        return out


def augmentation(preset: str, size: int) -> Augment | None:
    if preset == "none":
        return None
    if preset == "light":
        return Augment(size, (0.85, 1.0), (0.95, 1.05), 5, translate=0.0, brightness=0.1, contrast=0.1)
    if preset == "standard":
        return Augment(size, (0.7, 1.0), (0.9, 1.1), 10, translate=0.05, brightness=0.2, contrast=0.2)
    raise Invalid(
        f"augmentation must be one of {', '.join(AUGMENTATIONS)}", param="hyperparameters.augmentation"
    )


class CacheDataset(Dataset[Batch]):
    """Items are (1 x S x S float32 in [0, 1], labels float32); batch() builds a whole batch at once."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, transform: Augment | None = None) -> None:
        if len(pixels) != len(labels):
            raise ValueError("pixels and labels differ in length")
        self.pixels = pixels
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> Batch:
        x = torch.from_numpy(self.pixels[i].astype(np.float32) / 65535.0)[None]
        if self.transform is not None:
            x = self.transform(x).clamp_(0.0, 1.0)
        return x, self.labels[i]

    def batch(self, indices: Sequence[int], seed: int | None = None) -> Batch:
        """The items at indices, stacked; augmented from one generator seeded with seed."""
        idx = np.asarray(indices, dtype=np.int64)
        x = torch.from_numpy(self.pixels[idx].astype(np.float32) / 65535.0)[:, None]
        if self.transform is not None:
            g = torch.Generator().manual_seed(seed or 0)
            x = torch.stack([self.transform(x[k], g) for k in range(len(idx))]).clamp_(0.0, 1.0)
        return x, self.labels[torch.from_numpy(idx)]


class BatchLoader:
    """Batches of a CacheDataset, built `prefetch` steps ahead by `threads` background threads, in order.

    The shuffle order and each batch's augmentation seed are drawn from `generator` when an epoch
    starts (on the caller's thread), so an epoch is fixed by the generator's seed alone. threads=0
    builds each batch on the caller's thread when it is needed.
    """

    def __init__(
        self,
        dataset: CacheDataset,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        threads: int = 2,
        prefetch: int = 4,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = shuffle and len(dataset) > batch_size
        self.generator: torch.Generator | None = torch.Generator().manual_seed(seed)
        self.threads = threads
        self.prefetch = max(1, prefetch)
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _plan(self) -> list[tuple[list[int], int]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        chunks = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        chunks = chunks[: len(self)]
        seeds = torch.randint(0, 2**62, (len(chunks),), generator=self.generator).tolist()
        return list(zip(chunks, seeds, strict=True))

    def _build(self, indices: list[int], seed: int) -> Batch:
        x, y = self.dataset.batch(indices, seed)
        if self.pin_memory:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def __iter__(self) -> Generator[Batch, None, None]:
        plan = self._plan()
        if self.threads <= 0:
            for indices, seed in plan:
                yield self._build(indices, seed)
            return
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="medtune-batches")
        pending: deque[Future[Batch]] = deque()
        try:
            for indices, seed in plan:
                pending.append(pool.submit(self._build, indices, seed))
                if len(pending) > self.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # also when the consumer stops early (a cancel): drop the batches not yet built
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)


def labels_array(samples: Sequence[Sample]) -> np.ndarray:
    return np.asarray([s.labels for s in samples], dtype=np.float32).reshape(len(samples), -1)


def make_loader(
    dataset: CacheDataset,
    batch_size: int,
    train: bool,
    seed: int,
    threads: int = 2,
    pin_memory: bool = False,
) -> BatchLoader:
    return BatchLoader(dataset, batch_size, shuffle=train, seed=seed, threads=threads, pin_memory=pin_memory)


class Normalize(torch.nn.Module):
    """Grey [0, 1] batch -> 3-channel batch normalised to the backbone's mean/std, on the device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, int(self.mean.shape[1]), -1, -1)
        return (x - self.mean) / self.std


def positive_weights(labels: np.ndarray) -> list[float]:
    """neg/pos per label for BCE, clipped so a label with a handful of positives cannot dominate."""
    pos = labels.sum(axis=0)
    neg = len(labels) - pos
    return [float(min(max(n / p, 1e-3), 100.0)) if p > 0 else 1.0 for p, n in zip(pos, neg, strict=True)]
