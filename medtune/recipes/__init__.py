"""The seeds' workflows as recipes, each one command (`medtune recipes run NAME [--smoke]`) over the
public API alone: `medtune.Client` against a running platform (MEDTUNE_URL / `medtune login`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medtune.client import Client
from medtune.recipes import cxr14_dual_head, mura_elbow, vindr_data_volume
from medtune.recipes._common import Options, Outcome, Say, Table


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    run: Callable[[Client, Options, Say], Outcome]


RECIPES = {
    r.name: r
    for r in (
        Recipe(
            mura_elbow.NAME,
            "MURA elbow, EVA-02 base + LoRA, 3 epochs: accuracy, sensitivity and "
            "specificity at the operating point",
            mura_elbow.run,
        ),
        Recipe(
            vindr_data_volume.NAME,
            "VinDr-CXR, 17 findings at 100 to 4,000 training images: the white "
            "paper's table (AUROC, AUPRC, sensitivity, specificity, F1)",
            vindr_data_volume.run,
        ),
        Recipe(
            cxr14_dual_head.NAME,
            "NIH ChestX-ray14, 14 findings plus normal/abnormal on DenseNet-121",
            cxr14_dual_head.run,
        ),
    )
}

__all__ = ["RECIPES", "Options", "Outcome", "Recipe", "Table"]
