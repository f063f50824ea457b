"""What a backbone catalog entry says: a timm architecture, its preprocessing, LoRA targets, classifier
and where its weights are published. No torch: the API lists base models without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from platform_core.training import formats as F

RADIOGRAPHY = "radiography foundation models"
GENERAL = "general vision"
TESTS = "tests"
GROUPS = (RADIOGRAPHY, GENERAL, TESTS)  # the order the console lists them in


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
