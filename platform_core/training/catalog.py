"""The backbone catalog: timm architectures with their preprocessing, LoRA targets and classifier.

Entries are dataclasses registered by name, like timm's own registry; a duplicate name is refused.
This module imports no torch, so the API can list base models without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from platform_core.errors import Invalid

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Conv layers inside residual stages only, so the stem and downsampling shortcuts stay frozen.
RESNET_CONVS = r".*layer\d\.\d+\.conv[123]"


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    arch: str  # the timm architecture passed to timm.create_model
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # A tuple of module-name suffixes or one regular expression matched against the full name (peft).
    lora_targets: tuple[str, ...] | str
    classifier: str
    family: str  # "vit" or "cnn"
    hf_hub_id: str | None = None  # where timm's pretrained weights live on the Hugging Face hub
    description: str = ""
    create_kwargs: dict[str, object] = field(default_factory=dict)

    @property
    def is_test_model(self) -> bool:
        return self.name.startswith("test_")


_REGISTRY: dict[str, BackboneEntry] = {}


def register(entry: BackboneEntry) -> BackboneEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"backbone '{entry.name}' is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> BackboneEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise Invalid(
            f"unknown base model '{name}'; known: {', '.join(sorted(_REGISTRY))}", param="base_model"
        ) from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def entries() -> list[BackboneEntry]:
    return [_REGISTRY[n] for n in names()]


VIT_TARGETS = ("attn.qkv", "attn.proj")

register(BackboneEntry(
    "vit_base_patch16_224", "vit_base_patch16_224", 224, HALF, HALF, VIT_TARGETS, "head", "vit",
    "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "ViT-B/16, ImageNet-21k pretrained (AugReg)",
))  # fmt: skip
register(BackboneEntry(
    "vit_small_patch16_224", "vit_small_patch16_224", 224, HALF, HALF, VIT_TARGETS, "head", "vit",
    "timm/vit_small_patch16_224.augreg_in21k_ft_in1k", "ViT-S/16, ImageNet-21k pretrained (AugReg)",
))  # fmt: skip
register(BackboneEntry(
    "eva02_base_patch14_224", "eva02_base_patch14_224", 224, CLIP_MEAN, CLIP_STD,
    ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj"), "head", "vit",
    "timm/eva02_base_patch14_224.mim_in22k",
    "EVA-02 B/14 (MIM on ImageNet-22k); the family of the EVA-X chest X-ray foundation model",
))  # fmt: skip
register(BackboneEntry(
    # DINOv2 is trained at 518 px; timm resamples its position embeddings to the smaller size.
    "vit_small_patch14_dinov2", "vit_small_patch14_dinov2", 224, IMAGENET_MEAN, IMAGENET_STD, VIT_TARGETS,
    "head", "vit", "timm/vit_small_patch14_dinov2.lvd142m", "DINOv2 ViT-S/14 (self-supervised, LVD-142M)",
    {"img_size": 224},
))  # fmt: skip
register(BackboneEntry(
    "densenet121", "densenet121", 224, IMAGENET_MEAN, IMAGENET_STD, (r".*denselayer\d+\.conv[12]"),
    "classifier", "cnn", "timm/densenet121.ra_in1k", "DenseNet-121 (the CheXNet architecture)",
))  # fmt: skip
register(BackboneEntry(
    "resnet50", "resnet50", 224, IMAGENET_MEAN, IMAGENET_STD, RESNET_CONVS, "fc", "cnn",
    "timm/resnet50.a1_in1k", "ResNet-50 (ResNet strikes back A1)",
))  # fmt: skip
register(BackboneEntry(
    "convnext_tiny", "convnext_tiny", 224, IMAGENET_MEAN, IMAGENET_STD, ("mlp.fc1", "mlp.fc2"), "head.fc",
    "cnn", "timm/convnext_tiny.in12k_ft_in1k", "ConvNeXt-T, ImageNet-12k pretrained",
))  # fmt: skip
register(BackboneEntry(
    "test_vit", "test_vit", 160, HALF, HALF, VIT_TARGETS, "head", "vit", "timm/test_vit.r160_in1k",
    "a tiny ViT for tests",
))  # fmt: skip
register(BackboneEntry(
    "test_resnet", "test_resnet", 160, HALF, HALF, RESNET_CONVS, "fc", "cnn", "timm/test_resnet.r160_in1k",
    "a tiny ResNet for tests",
))  # fmt: skip
