"""The model zoo: torchvision classifiers by name, plus CIFAR-style networks for 32x32 inputs.

``build_model("resnet50")`` gives torchvision's ResNet-50 (any torchvision classifier name works);
``build_model("resnet_small")`` and ``build_model("vgg_small")`` are 32x32-input networks that
train in minutes on a CPU; ``resnet18_cifar`` (11.2 M weights) and ``vgg16_cifar`` (14.7 M) are
the CIFAR layouts of ResNet-18 and VGG-16 (with batch norm), sized for a GPU; ``vit_small``
(0.15 M weights) is a small vision transformer for 32x32 inputs (`ViTSmall`). ``checkpoint``
loads a local state dict; ``pretrained`` asks torchvision for its weights, which needs them in
the torch hub cache or a network, and fails with a clear message otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from crisp.errors import UserError

#: Input shape (channels, height, width) of the small networks; torchvision ones take 224x224.
SMALL_INPUT = (3, 32, 32)
IMAGENET_INPUT = (3, 224, 224)


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _BasicBlock(nn.Module):
    """A ResNet basic block (two 3x3 convs) with a 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A CIFAR-style ResNet for 32x32 inputs: a 3x3 stride-1 stem (no max-pool), then one stage
    per width, each of ``blocks`` basic blocks (the first of every stage but the first strides
    by 2), global average pooling and a linear head.

    The defaults are ``resnet_small`` (ResNet-10-like, one block per stage, widths 16..128,
    0.32 M weights); ``resnet18_cifar`` is widths (64, 128, 256, 512) with 2 blocks a stage
    (ResNet-18's CIFAR layout, 11.2 M weights). The blocks are numbered through all stages
    (``stages.0`` .. ``stages.{4 * blocks - 1}``).
    """

    def __init__(
        self, num_classes: int = 100, widths: tuple[int, ...] = (16, 32, 64, 128),
        blocks: int = 1,
    ) -> None:
        super().__init__()
        self.stem = _conv_bn(3, widths[0])
        stages, c_in = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks):
                stages.append(_BasicBlock(c_in, width, 2 if i > 0 and j == 0 else 1))
                c_in = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


#: VGG-16's convolution layout (channels per 3x3 conv, one tuple per max-pooled stage).
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512),
)


class VGGSmall(nn.Module):
    """A VGG-like network for 32x32 inputs: 3x3 conv-BN-ReLU stages, each followed by a 2x2
    max-pool, global average pooling and one linear layer as the classifier.

    ``stages`` gives each stage's conv widths; by default ``vgg_small`` (two convs per width
    16..128). ``vgg16_cifar`` is `VGG16_STAGES` (13 convs, 14.7 M weights; the fifth
    pool leaves 1x1 maps, so the small classifier is one 512 -> classes linear layer).
    """

    def __init__(
        self, num_classes: int = 100, widths: tuple[int, ...] = (16, 32, 64, 128),
        stages: tuple[tuple[int, ...], ...] | None = None,
    ) -> None:
        super().__init__()
        if stages is None:
            stages = tuple((w, w) for w in widths)
        layers: list[nn.Module] = []
        c_in = 3
        for stage in stages:
            for width in stage:
                layers.append(_conv_bn(c_in, width))
                c_in = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class _Attention(nn.Module):
    """Multi-head self-attention from plain Linear layers: ``qkv`` (dim -> 3 * inner) and
    ``proj`` (inner -> dim), the attention itself by ``F.scaled_dot_product_attention``.

    No ``nn.MultiheadAttention`` (its ``in_proj_weight`` is no module, so the pruner's masks
    could not reach it). The head width is read from ``qkv`` at every call, so a model whose
    head dimensions were removed (`crisp.baselines.channel_prune`) runs unchanged; a pruner that
    removes whole heads must update ``heads``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        head_dim = self.qkv.out_features // (3 * self.heads)
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # [b, heads, n, head_dim]
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class _Mlp(nn.Module):
    """The transformer's feed-forward part: ``fc1`` (dim -> hidden), GELU, ``fc2`` (back)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTSmall(nn.Module):
    """A small vision transformer for 32x32 inputs.

    An overlapping Conv2d patch embedding (stride ``patch``, kernel ``2 * patch``, padding
    ``patch / 2``: each of the 64 tokens of width ``dim`` for 4-pixel patches sees the 8 x 8
    pixels around its patch), a learned class token and position embedding (65 positions),
    ``depth`` pre-norm transformer blocks (`_Block`: multi-head attention with ``heads`` heads,
    then an MLP of ``mlp_ratio * dim`` hidden units with GELU), a final LayerNorm and a linear
    head on the class token. The defaults are ``vit_small``: width 64, 4 heads of 16, 4 blocks,
    MLP ratio 2 (128 hidden units); 149,760 Conv2d/Linear weights (157,092 parameters) and
    11.5 M multiply-accumulates an image (9.3 M in the Conv2d/Linear layers, 2.2 M in the
    attention's two matmuls). It is sized to train on two CPU cores in about 20 minutes: a
    transformer learns glyph100 far more slowly than a ResNet (no convolutional prior), so a
    narrow one that takes many steps beats a wide one that takes few. For the same reason (and
    crisp's SGD) the patches overlap and the Linear layers keep PyTorch's default
    initialisation: in short trial runs both shortened the loss's initial plateau at chance,
    which timm's std-0.02 initialisation and 4-pixel patches without overlap prolonged.

    Every GEMM is an ``nn.Conv2d`` or ``nn.Linear`` module (``patch_embed``,
    ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``, ``blocks.{i}.mlp.fc1``,
    ``blocks.{i}.mlp.fc2``, ``head``), so the mask schemes reach all of them; ``head`` is the
    last Linear defined, the pruner's classifier (`crisp.masks.classifier_name`), and
    ``patch_embed`` its first conv. The model exports with ``torch.export.export``.
    """

    def __init__(
        self, num_classes: int = 100, dim: int = 64, depth: int = 4, heads: int = 4,
        mlp_ratio: float = 2.0, patch: int = 4, image_size: int = 32,
    ) -> None:
        super().__init__()
        if image_size % patch or patch % 2:
            raise ValueError(f"patch {patch}: allowed an even divisor of the side {image_size}")
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, 2 * patch, patch, patch // 2)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        self.blocks = nn.Sequential(*(_Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [b, tokens, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


#: The zoo's own networks, all for 32x32x3 inputs (`SMALL_INPUT`).
SMALL_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet_small": ResNetSmall,
    "vgg_small": VGGSmall,
    "vit_small": ViTSmall,
    "resnet18_cifar": functools.partial(ResNetSmall, widths=(64, 128, 256, 512), blocks=2),
    "vgg16_cifar": functools.partial(VGGSmall, stages=VGG16_STAGES),
}

# Keeps the torch.library registration of the compatibility shim alive for the process.
_TORCHVISION_SHIM: list[torch.library.Library] = []


def _register_torchvision_op_schemas() -> None:
    """Declare the two operator schemas torchvision's Python code expects from its C++ library.

    torchvision on PyPI is built against CUDA torch; with the CPU-only torch its compiled ops fail
    to load and ``import torchvision`` raises ``RuntimeError: operator torchvision::nms does not
    exist`` while registering fake kernels for ``nms`` and ``qnms``. Declaring just their schemas
    lets the import (and so every classification model) work; the detection ops stay unusable
    (calling them raises, since no kernel is registered).
    """
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SHIM.append(lib)


@functools.cache
def torchvision_models():
    """Import ``torchvision.models``, applying the op-schema shim only if the plain import fails."""
    try:
        import torchvision.models as tvm
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        _register_torchvision_op_schemas()
        import sys

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        import torchvision.models as tvm
    return tvm


def list_models() -> list[str]:
    """All model names ``build_model`` accepts: the small networks, then torchvision classifiers."""
    tvm = torchvision_models()
    return sorted(SMALL_MODELS) + sorted(tvm.list_models(module=tvm))


def input_shape(name: str) -> tuple[int, int, int]:
    """The default input (channels, height, width) of a zoo model."""
    return SMALL_INPUT if name in SMALL_MODELS else IMAGENET_INPUT


def build_model(
    name: str,
    num_classes: int | None = None,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
) -> nn.Module:
    """Build a zoo model by name.

    Args:
        name: a CIFAR-style network (``resnet_small``, ``vgg_small``, ``resnet18_cifar``,
            ``vgg16_cifar``, ``vit_small``) or any torchvision classifier name.
        num_classes: output classes; default 100 for small networks, 1000 for torchvision ones.
        pretrained: load torchvision's default weights (needs them cached, or a network).
        checkpoint: path of a local state dict (or of a dict holding one under ``state_dict``
            or ``model``).

    Raises:
        UserError: unknown name (lists those that exist), weights not available offline, or a
            checkpoint that does not fit (names the first mismatched key).
    """
    if name in SMALL_MODELS:
        if pretrained:
            raise UserError(f"--pretrained: no published weights for {name}; use --checkpoint PATH")
        model = SMALL_MODELS[name](num_classes=num_classes or 100)
    else:
        tvm = torchvision_models()
        if name not in tvm.list_models(module=tvm):
            raise UserError(f"unknown model {name!r}: choose one of {', '.join(list_models())}")
        model = _build_torchvision(tvm, name, num_classes, pretrained)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model


def build_for_shapes(name: str) -> nn.Module:
    """Zoo model ``name`` for its shapes only: on PyTorch's meta device (no memory, no
    initialisation), or on the CPU where its constructor reads tensor values, which meta
    tensors do not hold (torchvision's RegNets)."""
    try:
        with torch.device("meta"):
            return build_model(name)
    except NotImplementedError:  # "Cannot copy out of meta tensor"
        return build_model(name)


def _build_torchvision(tvm, name: str, num_classes: int | None, pretrained: bool) -> nn.Module:
    if not pretrained:
        return tvm.get_model(name, num_classes=num_classes or 1000)
    weights = tvm.get_model_weights(name).DEFAULT
    try:
        model = tvm.get_model(name, weights=weights)
    except OSError as err:  # URLError is an OSError: no network and nothing cached
        raise UserError(
            f"--pretrained {name}: torchvision's weights {weights} are not in the torch hub cache "
            f"({torch.hub.get_dir()}) and cannot be downloaded ({err.__class__.__name__}); "
            "copy them there or use --checkpoint PATH"
        ) from None
    if num_classes not in (None, 1000):
        raise UserError(f"--pretrained {name} has 1000 classes, not {num_classes}")
    return model


def read_torch_dict(path: str | Path) -> dict:
    """The dict saved in a torch file (loaded with ``weights_only``: no pickled code runs).

    Raises:
        UserError: a missing or unreadable file, or one that holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"checkpoint {path} is not a readable torch file "
                        f"({_first_reason(err)})") from None
    if not isinstance(blob, dict):
        raise UserError(f"checkpoint {path} holds a {type(blob).__name__}, not a state dict")
    return blob


def _first_reason(err: Exception) -> str:
    """One short line from torch's multi-line load error (the unpickler's own reason if given)."""
    text = str(err)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if marker else text).splitlines() if line.strip()]
    first = lines[0].split(". ")[0].rstrip(".") if lines else "no detail"
    return f"{type(err).__name__}: {first}"[:160]


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a local state dict into ``model`` strictly; the first mismatch is a UserError.

    The file may hold the state dict itself or a dict with it under ``state_dict`` or ``model``.
    """
    state = read_torch_dict(path)
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return load_state(model, state, path)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    """Load ``state`` (read from the file ``path``) into ``model`` strictly; the first
    mismatch (a missing, unexpected or differently shaped entry) is a one-line UserError."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise UserError(
                f"checkpoint {path} does not fit {type(model).__name__}: missing {key!r}"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(
                f"checkpoint {path} does not fit {type(model).__name__}: {key!r} has shape "
                f"{tuple(state[key].shape)}, the model expects {tuple(value.shape)}"
            )
    extra = sorted(set(state) - set(own))
    if extra:
        raise UserError(
            f"checkpoint {path} does not fit {type(model).__name__}: unexpected {extra[0]!r}"
        )
    model.load_state_dict(state)
    return model
