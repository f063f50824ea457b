"""The data pipeline: pixel-cache PNGs decoded once per run, augmented per preset in DataLoader workers.

The cache (16-bit grayscale PNG, see platform_core.dicom.cache) is read from the object store once,
resized to the run's image size and kept in memory as uint16; each epoch only crops, jitters and
converts. Normalisation to the backbone's mean/std and the grey-to-RGB repeat happen on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from platform_core.dicom import cache
from platform_core.errors import Invalid

if TYPE_CHECKING:
    from platform_core.storage import ObjectStore

AUGMENTATIONS = ("none", "light", "standard")


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
    """(N, size, size) uint16: each image fetched and decoded once, in threads (I/O and zlib drop the GIL)."""
    out = np.empty((len(samples), size, size), dtype=np.uint16)

    def one(i: int) -> None:
        out[i] = resize_uint16(cache.decode(store.get_bytes(samples[i].cache_key)), size)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for done, _ in enumerate(pool.map(one, range(len(samples))), start=1):
            if progress is not None and done % 256 == 0:
                progress(done, len(samples))
    return out


def augmentation(preset: str, size: int) -> v2.Transform | None:
    # No flips: laterality carries meaning in radiographs (the heart is on the left).
    if preset == "none":
        return None
    if preset == "light":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.85, 1.0), ratio=(0.95, 1.05), antialias=True),
            v2.RandomAffine(degrees=5),
            v2.ColorJitter(brightness=0.1, contrast=0.1),
        ])  # fmt: skip
    if preset == "standard":
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05)),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
        ])  # fmt: skip
    raise Invalid(
        f"augmentation must be one of {', '.join(AUGMENTATIONS)}", param="hyperparameters.augmentation"
    )


class CacheDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Items are (1 x S x S float32 in [0, 1], labels float32)."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, transform: v2.Transform | None = None) -> None:
        if len(pixels) != len(labels):
            raise ValueError("pixels and labels differ in length")
        self.pixels = pixels
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.pixels[i].astype(np.float32) / 65535.0)[None]
        if self.transform is not None:
            x = self.transform(x).clamp_(0.0, 1.0)
        return x, self.labels[i]


def labels_array(samples: Sequence[Sample]) -> np.ndarray:
    return np.asarray([s.labels for s in samples], dtype=np.float32).reshape(len(samples), -1)


def make_loader(
    dataset: CacheDataset,
    batch_size: int,
    train: bool,
    seed: int,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and len(dataset) > batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        generator=generator,
    )


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
