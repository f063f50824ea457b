"""The backbone catalog: timm architectures with their preprocessing, LoRA targets and classifier.

Entries are dataclasses registered by name, like timm's own registry; a duplicate name is refused.
Each records where its weights are published and in which format (`formats`): foundation models
published as transformers, open_clip or TorchXRayVision checkpoints are converted to the entry's timm
architecture, so training and serving see only timm modules. This module imports no torch, so the API
can list base models without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from platform_core.errors import Invalid
from platform_core.training import formats as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
# RAD-DINO's preprocessor_config.json
RAD_DINO_MEAN = (0.5307, 0.5307, 0.5307)
RAD_DINO_STD = (0.2583, 0.2583, 0.2583)
# TorchXRayVision's (2 * x - 1) * 1024 on x in [0, 1] is (x - 0.5) / (1 / 2048)
XRV_MEAN = (0.5, 0.5, 0.5)
XRV_STD = (1 / 2048, 1 / 2048, 1 / 2048)
# EVA-X's classification transforms (classification/utils/datasets.py)
EVA_X_MEAN = (0.49185243, 0.49185243, 0.49185243)
EVA_X_STD = (0.28509309, 0.28509309, 0.28509309)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

RADIOGRAPHY = "radiography foundation models"
GENERAL = "general vision"
TESTS = "tests"
GROUPS = (RADIOGRAPHY, GENERAL, TESTS)  # the order the console lists them in

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
    weights_format: str = F.TIMM  # how the weights are published (platform_core.training.formats)
    weights_url: str | None = None  # a release file outside the hub (TorchXRayVision)
    weights_file: str | None = None  # one file in the hub repo holding a timm-layout checkpoint (EVA-X)
    license: str = ""
    pretraining: str = ""  # the data the published weights were pretrained on
    input_convention: str = ""  # what the publisher feeds the model, when it is not plain RGB
    group: str = GENERAL

    def __post_init__(self) -> None:
        F.check(self.weights_format)

    @property
    def weights_files(self) -> tuple[str, ...]:
        """The files a deployment without the hub must bring (first choice of each)."""
        if self.weights_file:
            return (self.weights_file,)
        release = (self.weights_url.rsplit("/", 1)[-1],) if self.weights_url else ()
        return tuple(group[0] for group in F.FILES[self.weights_format]) + release

    @property
    def loads_published(self) -> bool:
        """Pretrained weights are fetched file by file and converted here, not by timm's own loader."""
        return self.weights_format != F.TIMM or self.weights_file is not None

    @property
    def weights_source(self) -> str:
        if self.weights_url:
            return self.weights_url
        repo = (self.hf_hub_id or self.arch).removeprefix("hf-hub:")
        return f"https://huggingface.co/{repo}"

    @property
    def is_test_model(self) -> bool:
        return self.name.startswith("test_")


_REGISTRY: dict[str, BackboneEntry] = {}
# a timm architecture (with an optional pretrained tag) or a Hugging Face hub id
_TIMM_NAME = re.compile(r"[a-z0-9_]+(\.[A-Za-z0-9_]+)?|hf-hub:[\w.-]+/[\w.-]+")


def register(entry: BackboneEntry) -> BackboneEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"backbone '{entry.name}' is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> BackboneEntry:
    """A catalog entry by name; any other timm name or `hf-hub:` id gets an entry inferred from its
    modules (that imports timm, so only names outside the catalog need torch here)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if not _TIMM_NAME.fullmatch(name):
        known = ", ".join(sorted(_REGISTRY))
        raise Invalid(f"unknown base model '{name}'; known: {known}", param="base_model")
    from platform_core.training import inferred

    try:
        return inferred.entry_for(name)
    except inferred.NotATimmModel as exc:
        raise Invalid(f"{exc.message}; the catalog has: {', '.join(sorted(_REGISTRY))}",
                      param="base_model") from None  # fmt: skip


def names() -> list[str]:
    return sorted(_REGISTRY)


def entries() -> list[BackboneEntry]:
    """Every entry, radiography foundation models first, then general vision, then the test models."""
    return sorted(_REGISTRY.values(), key=lambda e: (GROUPS.index(e.group), e.name))


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
    # the tutorial's model: timm's name with its pretrained tag
    "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", 448,
    CLIP_MEAN, CLIP_STD, ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj"), "head", "vit",
    "timm/eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
    "EVA-02 B/14 at 448 px (MIM on ImageNet-22k, fine-tuned on 22k then 1k); the MURA tutorial's model",
    license="MIT",
    pretraining="ImageNet-22k (MIM with an EVA-CLIP teacher), fine-tuned on ImageNet-22k and -1k",
))  # fmt: skip

register(BackboneEntry(
    "test_vit", "test_vit", 160, HALF, HALF, VIT_TARGETS, "head", "vit", "timm/test_vit.r160_in1k",
    "a tiny ViT for tests", group=TESTS,
))  # fmt: skip
register(BackboneEntry(
    "test_resnet", "test_resnet", 160, HALF, HALF, RESNET_CONVS, "fc", "cnn", "timm/test_resnet.r160_in1k",
    "a tiny ResNet for tests", group=TESTS,
))  # fmt: skip

# --- radiography foundation models, converted from the formats they are published in ----------------

register(BackboneEntry(
    "rad_dino", "vit_base_patch14_dinov2", 518, RAD_DINO_MEAN, RAD_DINO_STD, VIT_TARGETS, "head", "vit",
    "microsoft/rad-dino", "RAD-DINO: ViT-B/14 pretrained with DINOv2 on chest X-rays (Microsoft)",
    weights_format=F.TRANSFORMERS, license="MSRLA (Microsoft Research License Agreement; research use only)",
    pretraining="882k chest X-rays: MIMIC-CXR, CheXpert, NIH ChestX-ray14, PadChest, BRAX (self-supervised)",
    input_convention="grey repeated to RGB at 518 px, mean 0.5307, std 0.2583", group=RADIOGRAPHY,
))  # fmt: skip
register(BackboneEntry(
    "biomedclip_vit_base_patch16_224", "vit_base_patch16_224", 224, CLIP_MEAN, CLIP_STD, VIT_TARGETS, "head",
    "vit", "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
    "BiomedCLIP's image tower: ViT-B/16, contrastive on biomedical figure-caption pairs (Microsoft)",
    weights_format=F.OPEN_CLIP, license="MIT",
    pretraining="PMC-15M: 15M figure-caption pairs from PubMed Central (radiographs among many modalities)",
    input_convention="grey repeated to RGB at 224 px, OpenAI CLIP mean/std", group=RADIOGRAPHY,
))  # fmt: skip
register(BackboneEntry(
    "xrv_densenet121_res224_all", "densenet121", 224, XRV_MEAN, XRV_STD, r".*denselayer\d+\.conv[12]",
    "classifier", "cnn", None,
    "TorchXRayVision DenseNet-121 (densenet121-res224-all), supervised on 18 chest X-ray pathologies",
    weights_format=F.XRV,
    weights_url="https://github.com/mlmed/torchxrayvision/releases/download/v1/"
    "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    license="Apache-2.0",
    pretraining="NIH ChestX-ray14, PadChest, CheXpert, MIMIC-CXR, RSNA Pneumonia, Google, OpenI (supervised)",
    input_convention="single channel in [-1024, 1024] at 224 px; fed as three equal grey channels with mean "
    "0.5 and std 1/2048 (the same numbers) into a first convolution whose weights are split over them",
    group=RADIOGRAPHY,
))  # fmt: skip
# EVA-X's own eva_x_{tiny,small,base}_patch16 are timm's Eva with EVA-02's arguments at patch 16 (rotary
# reference grid 14 x 14); the MIM checkpoints are in EVA's layout, which timm's Eva filter converts.
EVA_X_QKV = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj")
EVA_X_DATA = "about 520k unlabelled chest X-rays merged from public sets (MIM, MGCA-ViT-B/16 tokenizer)"
for size, letter, arch, targets in (
    ("tiny", "Ti", "eva02_tiny_patch14_224", VIT_TARGETS),
    ("small", "S", "eva02_small_patch14_224", VIT_TARGETS),
    ("base", "B", "eva02_base_patch14_224", EVA_X_QKV),
):
    register(BackboneEntry(
        f"eva_x_{size}_patch16", arch, 224, EVA_X_MEAN, EVA_X_STD, targets, "head", "vit", "MapleF/eva_x",
        f"EVA-X-{letter}: EVA-02 ViT-{letter}/16 pretrained with MIM on chest X-rays (HUST-VL)",
        {"patch_size": 16, "ref_feat_shape": (14, 14)},
        weights_file=f"eva_x_{size}_patch16_merged520k_mim.pt", license="MIT", pretraining=EVA_X_DATA,
        input_convention="grey repeated to RGB at 224 px, mean 0.4919, std 0.2851", group=RADIOGRAPHY,
    ))  # fmt: skip
register(BackboneEntry(
    "medsiglip_448", "vit_so400m_patch14_siglip_224", 448, HALF, HALF, VIT_TARGETS, "head", "vit",
    "google/medsiglip-448",
    "MedSigLIP's image tower: SigLIP So400m/14 at 448 px adapted to medical images (Google)",
    {"act_layer": "gelu_tanh"}, weights_format=F.TRANSFORMERS,
    license="Health AI Developer Foundations terms of use (gated on the hub)",
    pretraining="SigLIP (WebLI) tuned on de-identified chest X-ray, CT, MRI, dermatology, ophthalmology and "
    "pathology images with text",
    input_convention="grey repeated to RGB at 448 px, mean 0.5, std 0.5", group=RADIOGRAPHY,
))  # fmt: skip

# --- small models in each published format, for the tests (random weights built by the reference library)

register(BackboneEntry(
    "test_rad_dino", "vit_small_patch14_dinov2", 56, RAD_DINO_MEAN, RAD_DINO_STD, VIT_TARGETS, "head", "vit",
    "medtune-tests/tiny-rad-dino", "a tiny Dinov2 published as a transformers checkpoint, for tests",
    {"embed_dim": 32, "depth": 2, "num_heads": 2}, weights_format=F.TRANSFORMERS, group=TESTS,
))  # fmt: skip
register(BackboneEntry(
    "test_biomedclip", "test_vit", 64, CLIP_MEAN, CLIP_STD, VIT_TARGETS, "head", "vit",
    "medtune-tests/tiny-biomedclip", "a tiny open_clip model with a timm trunk (as BiomedCLIP), for tests",
    weights_format=F.OPEN_CLIP, group=TESTS,
))  # fmt: skip
register(BackboneEntry(
    "test_xrv_densenet", "densenet121", 64, XRV_MEAN, XRV_STD, r".*denselayer\d+\.conv[12]", "classifier",
    "cnn", None, "a tiny TorchXRayVision DenseNet release, for tests",
    {"growth_rate": 8, "block_config": (2, 2, 2, 2)}, weights_format=F.XRV,
    weights_url="https://medtune-tests.invalid/releases/tiny-xrv-densenet.pt", group=TESTS,
))  # fmt: skip
