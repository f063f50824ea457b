"""The backbones medtune ships: timm architectures, and foundation models converted to them.

Each entry names its timm architecture, input size and normalisation, LoRA targets and classifier,
and where and in which format its weights are published (platform_core.training.formats); the
catalog (platform_core.training.catalog) registers them all by name. No torch here either.
"""

from __future__ import annotations

from platform_core.training import formats as F
from platform_core.training.backbone_entry import RADIOGRAPHY, TESTS, BackboneEntry

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

# Conv layers inside residual stages only, so the stem and downsampling shortcuts stay frozen.
RESNET_CONVS = r".*layer\d\.\d+\.conv[123]"
# The convolutions inside dense layers (CheXNet's and TorchXRayVision's DenseNet-121).
DENSENET_CONVS = r".*denselayer\d+\.conv[12]"
VIT_TARGETS = ("attn.qkv", "attn.proj")
# EVA-02 splits attention into q, k and v projections (EVA-X-B is an EVA-02 B).
EVA02_TARGETS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj")
# EVA-X's own eva_x_{tiny,small,base}_patch16 are timm's Eva with EVA-02's arguments at patch 16 (rotary
# reference grid 14 x 14); the MIM checkpoints are in EVA's layout, which timm's Eva filter converts.
EVA_X_DATA = "about 520k unlabelled chest X-rays merged from public sets (MIM, MGCA-ViT-B/16 tokenizer)"


def _eva_x(size: str, letter: str, arch: str, targets: tuple[str, ...]) -> BackboneEntry:
    return BackboneEntry(
        name=f"eva_x_{size}_patch16",
        arch=arch,
        input_size=224,
        mean=EVA_X_MEAN,
        std=EVA_X_STD,
        lora_targets=targets,
        classifier="head",
        family="vit",
        hf_hub_id="MapleF/eva_x",
        description=f"EVA-X-{letter}: EVA-02 ViT-{letter}/16 pretrained with MIM on chest X-rays (HUST-VL)",
        create_kwargs={"patch_size": 16, "ref_feat_shape": (14, 14)},
        weights_file=f"eva_x_{size}_patch16_merged520k_mim.pt",
        license="MIT",
        pretraining=EVA_X_DATA,
        input_convention="grey repeated to RGB at 224 px, mean 0.4919, std 0.2851",
        group=RADIOGRAPHY,
    )


BUILT_IN: tuple[BackboneEntry, ...] = (
    BackboneEntry(
        name="vit_base_patch16_224",
        arch="vit_base_patch16_224",
        input_size=224,
        mean=HALF,
        std=HALF,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        description="ViT-B/16, ImageNet-21k pretrained (AugReg)",
    ),
    BackboneEntry(
        name="vit_small_patch16_224",
        arch="vit_small_patch16_224",
        input_size=224,
        mean=HALF,
        std=HALF,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
        description="ViT-S/16, ImageNet-21k pretrained (AugReg)",
    ),
    BackboneEntry(
        name="eva02_base_patch14_224",
        arch="eva02_base_patch14_224",
        input_size=224,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        lora_targets=EVA02_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="timm/eva02_base_patch14_224.mim_in22k",
        description="EVA-02 B/14 (MIM on ImageNet-22k); the family of the EVA-X chest X-ray foundation model",
    ),
    BackboneEntry(
        name="vit_small_patch14_dinov2",
        arch="vit_small_patch14_dinov2",
        # DINOv2 is trained at 518 px; timm resamples its position embeddings to the smaller size.
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="timm/vit_small_patch14_dinov2.lvd142m",
        description="DINOv2 ViT-S/14 (self-supervised, LVD-142M)",
        create_kwargs={"img_size": 224},
    ),
    BackboneEntry(
        name="densenet121",
        arch="densenet121",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        lora_targets=DENSENET_CONVS,
        classifier="classifier",
        family="cnn",
        hf_hub_id="timm/densenet121.ra_in1k",
        description="DenseNet-121 (the CheXNet architecture)",
    ),
    BackboneEntry(
        name="resnet50",
        arch="resnet50",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        lora_targets=RESNET_CONVS,
        classifier="fc",
        family="cnn",
        hf_hub_id="timm/resnet50.a1_in1k",
        description="ResNet-50 (ResNet strikes back A1)",
    ),
    BackboneEntry(
        name="convnext_tiny",
        arch="convnext_tiny",
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        lora_targets=("mlp.fc1", "mlp.fc2"),
        classifier="head.fc",
        family="cnn",
        hf_hub_id="timm/convnext_tiny.in12k_ft_in1k",
        description="ConvNeXt-T, ImageNet-12k pretrained",
    ),
    BackboneEntry(
        # the tutorial's model: timm's name with its pretrained tag
        name="eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
        arch="eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
        input_size=448,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        lora_targets=EVA02_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="timm/eva02_base_patch14_448.mim_in22k_ft_in22k_in1k",
        description=(
            "EVA-02 B/14 at 448 px (MIM on ImageNet-22k, fine-tuned on 22k then 1k); the MURA tutorial's "
            "model"
        ),
        license="MIT",
        pretraining="ImageNet-22k (MIM with an EVA-CLIP teacher), fine-tuned on ImageNet-22k and -1k",
    ),
    # --- tiny timm models, for the tests
    BackboneEntry(
        name="test_vit",
        arch="test_vit",
        input_size=160,
        mean=HALF,
        std=HALF,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="timm/test_vit.r160_in1k",
        description="a tiny ViT for tests",
        group=TESTS,
    ),
    BackboneEntry(
        name="test_resnet",
        arch="test_resnet",
        input_size=160,
        mean=HALF,
        std=HALF,
        lora_targets=RESNET_CONVS,
        classifier="fc",
        family="cnn",
        hf_hub_id="timm/test_resnet.r160_in1k",
        description="a tiny ResNet for tests",
        group=TESTS,
    ),
    # --- radiography foundation models, converted from the formats they are published in
    BackboneEntry(
        name="rad_dino",
        arch="vit_base_patch14_dinov2",
        input_size=518,
        mean=RAD_DINO_MEAN,
        std=RAD_DINO_STD,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="microsoft/rad-dino",
        description="RAD-DINO: ViT-B/14 pretrained with DINOv2 on chest X-rays (Microsoft)",
        weights_format=F.TRANSFORMERS,
        license="MSRLA (Microsoft Research License Agreement; research use only)",
        pretraining=(
            "882k chest X-rays: MIMIC-CXR, CheXpert, NIH ChestX-ray14, PadChest, BRAX (self-supervised)"
        ),
        input_convention="grey repeated to RGB at 518 px, mean 0.5307, std 0.2583",
        group=RADIOGRAPHY,
    ),
    BackboneEntry(
        name="biomedclip_vit_base_patch16_224",
        arch="vit_base_patch16_224",
        input_size=224,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        description=(
            "BiomedCLIP's image tower: ViT-B/16, contrastive on biomedical figure-caption pairs (Microsoft)"
        ),
        weights_format=F.OPEN_CLIP,
        license="MIT",
        pretraining=(
            "PMC-15M: 15M figure-caption pairs from PubMed Central (radiographs among many modalities)"
        ),
        input_convention="grey repeated to RGB at 224 px, OpenAI CLIP mean/std",
        group=RADIOGRAPHY,
    ),
    BackboneEntry(
        name="xrv_densenet121_res224_all",
        arch="densenet121",
        input_size=224,
        mean=XRV_MEAN,
        std=XRV_STD,
        lora_targets=DENSENET_CONVS,
        classifier="classifier",
        family="cnn",
        hf_hub_id=None,
        description=(
            "TorchXRayVision DenseNet-121 (densenet121-res224-all), supervised on 18 chest X-ray pathologies"
        ),
        weights_format=F.XRV,
        weights_url=(
            "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
            "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
        ),
        license="Apache-2.0",
        pretraining=(
            "NIH ChestX-ray14, PadChest, CheXpert, MIMIC-CXR, RSNA Pneumonia, Google, OpenI (supervised)"
        ),
        input_convention=(
            "single channel in [-1024, 1024] at 224 px; fed as three equal grey channels with mean 0.5 and "
            "std 1/2048 (the same numbers) into a first convolution whose weights are split over them"
        ),
        group=RADIOGRAPHY,
    ),
    _eva_x("tiny", "Ti", "eva02_tiny_patch14_224", VIT_TARGETS),
    _eva_x("small", "S", "eva02_small_patch14_224", VIT_TARGETS),
    _eva_x("base", "B", "eva02_base_patch14_224", EVA02_TARGETS),
    BackboneEntry(
        name="medsiglip_448",
        arch="vit_so400m_patch14_siglip_224",
        input_size=448,
        mean=HALF,
        std=HALF,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="google/medsiglip-448",
        description="MedSigLIP's image tower: SigLIP So400m/14 at 448 px adapted to medical images (Google)",
        create_kwargs={"act_layer": "gelu_tanh"},
        weights_format=F.TRANSFORMERS,
        license="Health AI Developer Foundations terms of use (gated on the hub)",
        pretraining=(
            "SigLIP (WebLI) tuned on de-identified chest X-ray, CT, MRI, dermatology, ophthalmology and "
            "pathology images with text"
        ),
        input_convention="grey repeated to RGB at 448 px, mean 0.5, std 0.5",
        group=RADIOGRAPHY,
    ),
    # --- small models in each published format, for the tests (random weights built by the reference library)
    BackboneEntry(
        name="test_rad_dino",
        arch="vit_small_patch14_dinov2",
        input_size=56,
        mean=RAD_DINO_MEAN,
        std=RAD_DINO_STD,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="medtune-tests/tiny-rad-dino",
        description="a tiny Dinov2 published as a transformers checkpoint, for tests",
        create_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2},
        weights_format=F.TRANSFORMERS,
        group=TESTS,
    ),
    BackboneEntry(
        name="test_biomedclip",
        arch="test_vit",
        input_size=64,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        lora_targets=VIT_TARGETS,
        classifier="head",
        family="vit",
        hf_hub_id="medtune-tests/tiny-biomedclip",
        description="a tiny open_clip model with a timm trunk (as BiomedCLIP), for tests",
        weights_format=F.OPEN_CLIP,
        group=TESTS,
    ),
    BackboneEntry(
        name="test_xrv_densenet",
        arch="densenet121",
        input_size=64,
        mean=XRV_MEAN,
        std=XRV_STD,
        lora_targets=DENSENET_CONVS,
        classifier="classifier",
        family="cnn",
        hf_hub_id=None,
        description="a tiny TorchXRayVision DenseNet release, for tests",
        create_kwargs={"growth_rate": 8, "block_config": (2, 2, 2, 2)},
        weights_format=F.XRV,
        weights_url="https://medtune-tests.invalid/releases/tiny-xrv-densenet.pt",
        group=TESTS,
    ),
)
