"""The ``crisp`` command line: ``crisp train``, ``crisp prune`` and ``crisp eval``.

- ``crisp train``: train a zoo model densely on all classes of a data set; writes a state dict
  (fp16 by default, to keep committed checkpoints small) and a JSON record beside it, which
  lists the state dict's size and hash (`crisp.run_folder`).
- ``crisp prune``: prune a trained model for a user's classes with one scheme; writes a run
  directory with ``model.pt`` (squashed state dict), ``pruned.safetensors`` (the compressed
  format, `crisp.compressed`) and ``record.json`` (the replayable record with per-round
  metrics), each file atomically, then ``manifest.json`` listing their sizes and hashes
  (`crisp.run_folder`: readers refuse a folder holding files of different runs).
- ``crisp eval``: user-class top-1/top-5 of a dense or pruned checkpoint.

All three take ``--device auto|cpu|cuda|mps`` (auto: CUDA when present), ``--amp/--no-amp`` (bf16
autocast, on by default on CUDA) and ``--workers`` (DataLoader processes), see
`crisp.devices`. Under ``torchrun --nproc-per-node N -m crisp.cli train|prune ...`` the ranks
train in DistributedDataParallel and share saliency (`crisp.distributed`); only rank 0 prints
and writes, and the record says the world size.

User mistakes exit with status 2 and a one-line message (see `crisp.errors`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from crisp import compressed, distributed, ranges, run_folder
from crisp import masks as mk
from crisp.console import add_version
from crisp.data import KNOWN_DATASETS, default_image_size, load_dataset, user_subset
from crisp.devices import DEVICES, Runtime, runtime
from crisp.errors import Parser, UserError, command_line
from crisp.io import check_output_file, write_atomic
from crisp.models import SMALL_MODELS, build_model, input_shape, load_state, read_torch_dict
from crisp.pattern_core import DEFAULT_BLOCK
from crisp.pruner import HEADS, SCHEMES, PruneConfig, head_label_map, prune
from crisp.recovery import RecoveryConfig
from crisp.train import TrainConfig, evaluate, train_epochs

#: Committed dense checkpoints, ``<model>_<data>.pt`` with a ``.json`` record beside each.
CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
#: The suffixes ``crisp train --out`` takes (its record is the same path with ``.json``).
TRAIN_SUFFIXES = (".pt", ".pth")


def _runtime(args: argparse.Namespace) -> Runtime:
    """The run's device settings from ``--device``, ``--amp``, ``--workers``."""
    return runtime(args.device, amp=args.amp, workers=args.workers)


def say(*parts: object) -> None:
    """Print on rank 0 only (every line once under ``torchrun``)."""
    if distributed.is_main():
        print(*parts)


def committed_checkpoint(model: str, data: str, data_seed: int) -> Path | None:
    """The committed dense checkpoint of ``model`` trained on embedded data set ``data``, if any.

    Only an embedded data set (a name of `crisp.data.KNOWN_DATASETS`, never a folder) with
    a ``<model>_<data>.pt`` under `CHECKPOINTS` qualifies.

    Raises:
        UserError: the checkpoint's record says it was trained on another ``--data-seed``.
    """
    if data.lower() not in KNOWN_DATASETS:
        return None
    path = CHECKPOINTS / f"{model}_{data.lower()}.pt"
    if not path.is_file():
        return None
    record = path.with_suffix(".json")
    if record.is_file():
        trained_seed = json.loads(record.read_text()).get("data_seed", 0)
        if trained_seed != data_seed:
            raise UserError(f"the committed {path.name} was trained on --data-seed {trained_seed}, "
                            f"not {data_seed}: give --checkpoint PATH")
    return path


def in_memory(dataset: Dataset) -> Dataset:
    """An in-memory data set as normalised float tensors (fast batching); others unchanged."""
    if hasattr(dataset, "normalised"):
        return TensorDataset(dataset.normalised(), dataset.labels)
    return dataset


def parse_classes(text: str) -> int | list[int]:
    """``"10"`` -> 10 classes drawn from the seed; ``"3,17,42"`` -> those class ids."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--classes {text!r}: allowed a count (10) or ids (3,17,42)") from None
    if not values:
        raise UserError(f"--classes {text!r} is empty: allowed a count (10) or ids (3,17,42)")
    return values[0] if "," not in text else values


def parse_nm(text: str) -> tuple[int, int]:
    """``"2:4"`` -> (2, 4)."""
    n, sep, m = text.partition(":")
    if not sep or not n.strip().isdigit() or not m.strip().isdigit():
        raise UserError(f"--nm {text!r}: allowed N:M with integers, e.g. 2:4")
    return int(n), int(m)


def _load_splits(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    """The train and test splits of ``--data`` at ``--image-size`` (default: the model's input
    side for image folders and IDX sets; see `crisp.data.default_image_size`)."""
    size = _image_side(args)
    return tuple(load_dataset(args.data, split, seed=args.data_seed, root=args.data_root,
                              image_size=size) for split in ("train", "test"))


def _image_side(args: argparse.Namespace) -> int | None:
    """``--image-size``, else the model's input side for image folders and IDX sets, else None
    (the glyph sets and CIFAR-100 keep their 32 pixels); see
    `crisp.data.default_image_size`."""
    if args.image_size is not None:
        return args.image_size
    return default_image_size(args.data, input_shape(args.model)[1])


def _input_shape(args: argparse.Namespace) -> tuple[int, int, int]:
    """The model's input (channels, height, width) at the side the data is read at."""
    channels, height, width = input_shape(args.model)
    side = _image_side(args)
    if side is not None:
        height = width = side
    return channels, height, width


def _user_data(
    args: argparse.Namespace, classes: int | list[int]
) -> tuple[Dataset, Dataset, list[int]]:
    """User-class train and test sets (as tensors) and the class ids, drawn from ``args.seed``."""
    train, test = _load_splits(args)
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"data set {args.data} has no images in its train or test split")
    user_train, ids = user_subset(train, classes, args.n_per_class, args.seed)
    user_test, _ = user_subset(test, ids, None, args.seed)
    return in_memory(user_train), in_memory(user_test), ids


def _cmd_train(args: argparse.Namespace) -> int:
    out = check_output_file(args.out, TRAIN_SUFFIXES)  # before the work, not after it
    check_output_file(out.with_suffix(".json"))
    run_folder.check_file(args.init)
    rt = _runtime(args)
    with distributed.session(rt):
        return _train(args, rt)


def _train(args: argparse.Namespace, rt: Runtime) -> int:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train, test = _load_splits(args)
    if args.train_per_class is not None:  # a seeded subset of every class
        train, _ = user_subset(train, list(range(train.num_classes)), args.train_per_class,
                               args.seed)
    model = build_model(args.model, num_classes=train.num_classes, checkpoint=args.init)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         warmup=args.warmup, augment=not args.no_augment)
    distributed.agree({"model": args.model, "data": args.data, "data_seed": args.data_seed,
                       "seed": args.seed, "train_images": len(train), "test_images": len(test)})
    rt.place(model)
    loss = train_epochs(model, in_memory(train), config, generator, desc=f"train {args.model}",
                        runtime=rt)
    metrics = evaluate(model, in_memory(test), runtime=rt)
    say(f"{args.model} on {args.data}: train loss {loss:.3f}, test top-1 {metrics['top1']:.2f}% "
        f"top-5 {metrics['top5']:.2f}%")
    if not distributed.is_main():
        return 0
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = {k: v.half() if args.fp16 and v.is_floating_point() else v for k, v in state.items()}
    out = Path(args.out)
    write_atomic(out, lambda tmp: torch.save(state, tmp))
    record = {"command": "train", "model": args.model, "data": args.data, "seed": args.seed,
              "data_seed": args.data_seed, "init": args.init,
              "train_per_class": args.train_per_class,
              "image_size": _input_shape(args)[1], "train": config.as_dict(), "fp16": args.fp16,
              "train_loss": loss, "test": metrics}
    record.update(world_size=distributed.world_size(), runtime=rt.as_dict(),
                  files=run_folder.describe(out.parent, [out.name]))  # see crisp.run_folder
    write_atomic(out.with_suffix(".json"),
                 lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    print(f"wrote {out}")
    return 0


def _prune_config(args: argparse.Namespace) -> PruneConfig:
    n, m = parse_nm(args.nm)
    train = TrainConfig(lr=args.lr, batch_size=args.batch_size)
    return PruneConfig(scheme=args.scheme, density=args.density, n=n, m=m, block=args.block,
                       step=args.step, epochs=args.epochs, head=args.head,
                       exclude_first=not args.include_first, train=train,
                       recovery=recovery_config(args))


def recovery_config(args: argparse.Namespace) -> RecoveryConfig:
    """The recovery the `add_recovery` flags ask for (checked: a bad value is a UserError)."""
    return RecoveryConfig(distill=args.distill, temperature=args.temperature,
                          distill_weight=args.distill_weight, recalibrate=args.recalibrate,
                          balanced=args.balanced, val_share=args.val_share)


def add_recovery(p: argparse.ArgumentParser) -> None:
    """The recovery flags of a pruning run (`crisp.recovery.RecoveryConfig`), defaults from it."""
    d = RecoveryConfig()
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=d.distill,
                   help="distil from the dense model while fine-tuning (default on)")
    p.add_argument("--temperature", type=ranges.TEMPERATURE.flag("--temperature"),
                   default=d.temperature,
                   help=f"distillation temperature, > 0 (default {d.temperature:g})")
    p.add_argument("--distill-weight", type=ranges.FRACTION.flag("--distill-weight"),
                   default=d.distill_weight,
                   help="share of the distillation term in the loss, in [0, 1] (default "
                   f"{d.distill_weight:g})")
    p.add_argument("--recalibrate", action=argparse.BooleanOptionalAction, default=d.recalibrate,
                   help="re-estimate BatchNorm statistics after every mask change and after "
                   "fine-tuning (default on)")
    p.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=d.balanced,
                   help="class-balanced fine-tuning batches (default on)")
    p.add_argument("--val-share", type=ranges.VAL_SHARE.flag("--val-share"), default=d.val_share,
                   help="share of each class's training images held out for validation, in "
                   f"(0, 0.5] (default {d.val_share:g})")


def _dense_source(args: argparse.Namespace) -> str | None:
    """The dense checkpoint to prune: ``--checkpoint``, else the committed one for embedded data.

    Returns None for ``--pretrained``.
    """
    if args.checkpoint is not None and args.pretrained:
        raise UserError("give the dense model as --checkpoint PATH or --pretrained (one of them)")
    if args.checkpoint is not None or args.pretrained:
        return args.checkpoint
    committed = committed_checkpoint(args.model, args.data, args.data_seed)
    if committed is None:
        how = ("--checkpoint PATH (it has no published weights)" if args.model in SMALL_MODELS
               else "--checkpoint PATH or --pretrained (one of them)")
        raise UserError(f"no committed checkpoint of {args.model} on {args.data}: give the dense "
                        f"model as {how}")
    say(f"no --checkpoint: starting from the committed {committed}")
    return str(committed)


def _dense_model(name: str, pretrained: bool, checkpoint: str | None) -> nn.Module:
    """The zoo model with as many outputs as the checkpoint's classifier (``crisp train`` sizes
    the head to its data set: 10 classes for a 10-class folder), loaded from it."""
    if checkpoint is None:
        return build_model(name, pretrained=pretrained)
    run_folder.check_file(checkpoint)
    state = read_torch_dict(checkpoint)
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    head = f"{mk.classifier_name(build_model(name))}.weight"
    outputs = state[head].shape[0] if isinstance(state.get(head), torch.Tensor) else None
    return build_model(name, num_classes=outputs, checkpoint=checkpoint)


def _cmd_prune(args: argparse.Namespace) -> int:
    config = _prune_config(args)  # validate flags before loading anything
    run_folder.check_writable(args.out)
    rt = _runtime(args)
    with distributed.session(rt):
        return _prune(args, config, rt)


def _prune(args: argparse.Namespace, config: PruneConfig, rt: Runtime) -> int:
    checkpoint = _dense_source(args)
    model = _dense_model(args.model, args.pretrained, checkpoint)
    train, test, ids = _user_data(args, parse_classes(args.classes))
    distributed.agree({"model": args.model, "data": args.data, "data_seed": args.data_seed,
                       "classes": ids, "seed": args.seed, "n_per_class": args.n_per_class})
    # the dense model's Conv2d/Linear weights (channel pruning shrinks the stored layers)
    dense_weights = sum(m.weight.numel() for m in mk.gemm_layers(model).values())
    result = prune(model, train, test, ids, config, seed=args.seed, runtime=rt)
    result.record.update({"model": args.model, "checkpoint": str(checkpoint),
                          "data": args.data, "data_seed": args.data_seed,
                          "n_per_class": args.n_per_class})
    if not distributed.is_main():
        return 0
    out = Path(args.out)
    run_folder.begin(out)  # the files are one run's only once run_folder.seal lists them
    state = {"state_dict": result.model.state_dict(), "classes": ids, "head": config.head,
             "scheme": config.scheme, "model": args.model, "data": args.data,
             "data_seed": args.data_seed}
    write_atomic(out / "model.pt", lambda tmp: torch.save(state, tmp))
    sizes = compressed.save(result.model, out / "pruned.safetensors", result.masks, result.patterns,
                            config.n, config.m, config.block, _input_shape(args),
                            dtype=args.store_dtype,
                            meta={"model": args.model, "classes": ids, "scheme": config.scheme,
                                  "head": config.head})
    sizes["dense_model_bytes"] = dense_weights * compressed.DTYPES[args.store_dtype].itemsize
    result.record["compressed"] = sizes
    write_atomic(out / "record.json",
                 lambda tmp: tmp.write_text(json.dumps(result.record, indent=2) + "\n"))
    run_folder.seal(out, {"command": "prune", "model": args.model, "seed": args.seed})
    final = result.final
    print(f"{config.scheme}: density {final['density']:.4f}, user-class top-1 "
          f"{final['top1']:.2f}% top-5 {final['top5']:.2f}% (validation {final['val_top1']:.2f}%; "
          f"before pruning {result.record['before']['top1']:.2f}%); compressed "
          f"{sizes['total_bytes']} bytes vs dense {sizes['dense_model_bytes']}")
    if result.record["warnings"]:
        print(f"{len(result.record['warnings'])} round(s) did not recover (the warnings above, "
              "kept in record.json): more images, epochs or a higher density may help")
    print(f"wrote {out}/model.pt, pruned.safetensors, record.json, manifest.json")
    return 0


def load_pruned(name: str | None, path: str | Path) -> tuple[nn.Module, dict[str, object]]:
    """Rebuild a model from ``crisp prune``'s ``model.pt`` or ``crisp train``'s state dict.

    Shrunk heads and channel-pruned layers are resized to the stored shapes first.

    Args:
        name: the zoo model; None: the one the file records (``crisp prune``'s ``model.pt``
            holds it, ``crisp train``'s ``.json`` record beside its state dict names it), else
            ``resnet_small``.

    Returns:
        (model, metadata: ``classes``/``head``/``scheme``/``model``/``data``/``data_seed``, those
        the file or its record has).

    Raises:
        UserError: an unreadable file, one of an inconsistent run folder
            (`crisp.run_folder.check_file`), a ``name`` other than the recorded model, or a
            state dict that does not fit the model.
    """
    run_folder.check_file(path)
    blob = read_torch_dict(path)
    state = blob.get("state_dict", blob)
    meta = ({k: v for k, v in blob.items() if k != "state_dict"} if "state_dict" in blob
            else _train_record(path))
    recorded = meta.get("model")
    if name is not None and recorded is not None and name != recorded:
        raise UserError(f"--model {name}: {path} holds a {recorded}; give --model {recorded} "
                        "or leave --model out")
    model = build_model(name or recorded or "resnet_small")
    resize_to_state(model, state)
    load_state(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
               path)
    return model, meta


def _train_record(path: str | Path) -> dict[str, object]:
    """The model and data ``crisp train``'s ``.json`` record beside ``path`` names (none
    where there is no such record)."""
    try:
        record = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {k: record[k] for k in ("model", "data", "data_seed") if k in record}


def resize_to_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Replace Conv2d/BatchNorm2d/Linear/LayerNorm modules whose stored weights have another
    shape, and resize a module's own parameters (a ViT's class token and position embedding)
    to the stored shapes.

    This rebuilds channel-pruned models (a ViT's narrower residual width and heads too: its
    attention reads the head width from its q/k/v projection) and shrunk heads from a plain
    state dict.
    """
    for name, module in list(model.named_modules()):
        key = f"{name}.weight"
        if key not in state or tuple(state[key].shape) == tuple(module.weight.shape):
            continue
        shape = state[key].shape
        if isinstance(module, nn.Conv2d):
            new = nn.Conv2d(shape[1] * module.groups, shape[0], module.kernel_size, module.stride,
                            module.padding, groups=module.groups, bias=module.bias is not None)
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(shape[0])
        elif isinstance(module, nn.Linear):
            new = nn.Linear(shape[1], shape[0], bias=module.bias is not None)
        elif isinstance(module, nn.LayerNorm):
            new = nn.LayerNorm(tuple(shape), eps=module.eps, bias=module.bias is not None)
        else:
            raise UserError(f"checkpoint layer {name!r} has shape {tuple(shape)}, the model "
                            f"{tuple(module.weight.shape)}, and a {type(module).__name__} "
                            "cannot be resized")
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    for name, param in list(model.named_parameters()):
        if name in state and tuple(state[name].shape) != tuple(param.shape):
            parent, _, attr = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, attr, nn.Parameter(torch.empty(state[name].shape)))


def _cmd_eval(args: argparse.Namespace) -> int:
    rt = _runtime(args)
    with distributed.session(rt):
        return _eval(args, rt)


def _eval(args: argparse.Namespace, rt: Runtime) -> int:
    model, meta = load_pruned(args.model, args.checkpoint)
    args.model = args.model or str(meta.get("model", "resnet_small"))
    args.data = args.data or str(meta.get("data", "glyph100"))
    if args.data_seed is None:
        args.data_seed = int(meta.get("data_seed", 0))
    if args.classes is not None:
        classes = parse_classes(args.classes)
    elif meta.get("classes"):
        classes = list(meta["classes"])
    else:
        raise UserError("--classes is required for a checkpoint without a class list")
    _, test, ids = _user_data(args, classes)
    label_map = None
    head_out = model.get_submodule(mk.classifier_name(model)).out_features
    if meta.get("head") == "shrink" or head_out == len(ids) < 100:
        if head_out != len(ids):
            raise UserError(f"the checkpoint's head has {head_out} outputs, not {len(ids)} classes")
        label_map = head_label_map(ids, max(ids) + 1)
    distributed.agree({"data": args.data, "data_seed": args.data_seed, "classes": ids})
    metrics = evaluate(rt.place(model), test, label_map, runtime=rt)
    say(f"classes {ids}: user-class top-1 {metrics['top1']:.2f}% top-5 {metrics['top5']:.2f}% "
        f"(loss {metrics['loss']:.3f}); density {mk.density(model):.4f}")
    return 0


def _add_data(p: argparse.ArgumentParser, recorded: bool = False) -> None:
    """The model and data flags; ``recorded``: --model, --data and --data-seed default to those
    the checkpoint records (`load_pruned`), then to resnet_small, glyph100 and 0."""
    first = "the checkpoint's, else " if recorded else ""
    p.add_argument("--model", default=None if recorded else "resnet_small",
                   help=f"zoo model name (default {first}resnet_small)")
    p.add_argument("--data", default=None if recorded else "glyph100",
                   help=f"glyph100 (default {first}glyph100), glyph100-hard, fashion-mnist, "
                        "idx:FOLDER (MNIST layout), a CIFAR-100 folder or an ImageNet-style "
                        "folder")
    p.add_argument("--data-root", default=None, help="glyph cache / base of a relative path")
    p.add_argument("--data-seed", type=ranges.SEED.flag("--data-seed"),
                   default=None if recorded else 0,
                   help=f"glyph rendering seed (default {first}0)")
    p.add_argument("--image-size", type=ranges.RESOLUTION.flag("--image-size"), default=None,
                   help="image side in pixels; default the model's input (32 for the CIFAR-style "
                        "nets, 224 for torchvision's) for image folders and IDX sets, 32 for "
                        "the glyph sets and CIFAR-100")
    p.add_argument("--seed", type=ranges.SEED.flag("--seed"), default=0,
                   help="seeds every random choice (default 0)")
    _add_runtime(p)


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help=f"{'|'.join(DEVICES)} or cuda:N (default auto: CUDA when present)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on with CUDA, off elsewhere)")
    p.add_argument("--workers", type=ranges.LOADER_WORKERS.flag("--workers"), default=0,
                   help="DataLoader worker processes (default 0: load in the main process)")


def _add_user(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--classes", required=required, default=None,
                   help="a count drawn from --seed (10) or class ids (3,17,42)")
    p.add_argument("--n-per-class", type=ranges.PER_CLASS.flag("--n-per-class"), default=256,
                   help="user training images per class (default 256, as the paper)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="crisp", description=__doc__.splitlines()[0])
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model densely on all classes")
    _add_data(p)
    p.add_argument("--epochs", type=ranges.EPOCHS.flag("--epochs"), default=10)
    p.add_argument("--lr", type=ranges.LR.flag("--lr"), default=0.05,
                   help="peak learning rate (default 0.05)")
    p.add_argument("--batch-size", type=ranges.BATCH_SIZE.flag("--batch-size"), default=128)
    p.add_argument("--warmup", type=ranges.WARMUP.flag("--warmup"), default=0.05,
                   help="warm-up fraction of the steps")
    p.add_argument("--no-augment", action="store_true", help="no random 4-pixel shifts")
    p.add_argument("--init", default=None,
                   help="start from this state dict (e.g. a model trained on glyph100)")
    p.add_argument("--train-per-class", type=ranges.PER_CLASS.flag("--train-per-class"),
                   default=None,
                   help="train on this many images per class (drawn from --seed; default all)")
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True,
                   help="store float tensors as fp16 (default on; halves the file)")
    p.add_argument("--out", required=True,
                   help="state dict path (.pt or .pth); a .json record beside it")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("prune", help="prune a trained model for a user's classes")
    _add_data(p)
    _add_user(p, required=True)
    p.add_argument("--checkpoint", default=None,
                   help="the dense model's state dict (default: the committed checkpoint of "
                        "--model on embedded --data, when there is one)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from torchvision's weights instead (needs them cached offline)")
    p.add_argument("--scheme", default="hybrid", choices=SCHEMES)
    p.add_argument("--nm", default="2:4", help="N:M pattern (default 2:4)")
    p.add_argument("--block", type=ranges.BLOCK.flag("--block"), default=DEFAULT_BLOCK,
                   help=f"block size B (default {DEFAULT_BLOCK})")
    p.add_argument("--density", type=ranges.DENSITY.flag("--density"), default=None,
                   help="final global density in (0, 1]; default the paper's for the class count")
    p.add_argument("--step", type=ranges.STEP.flag("--step"), default=0.1,
                   help="fraction of the start density removed per round (default 0.1)")
    p.add_argument("--epochs", type=ranges.EPOCHS.flag("--epochs"), default=1,
                   help="fine-tuning epochs per round (default 1)")
    p.add_argument("--lr", type=ranges.LR.flag("--lr"), default=0.01,
                   help="fine-tuning peak lr (default 0.01)")
    p.add_argument("--batch-size", type=ranges.BATCH_SIZE.flag("--batch-size"), default=64,
                   help="fine-tuning batch (default 64; smaller where an epoch would take fewer "
                   "than 8 steps)")
    add_recovery(p)
    p.add_argument("--head", default="full", choices=HEADS,
                   help="full: keep all classes (default, as the paper); shrink: user's only")
    p.add_argument("--include-first", action="store_true", help="prune the first conv too")
    p.add_argument("--store-dtype", default="float16", choices=sorted(compressed.DTYPES),
                   help="dtype of the weights in pruned.safetensors (default float16)")
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("eval", help="user-class accuracy of a dense or pruned checkpoint")
    _add_data(p, recorded=True)
    _add_user(p, required=False)
    p.add_argument("--checkpoint", required=True, help="crisp train or crisp prune model file")
    p.set_defaults(func=_cmd_eval)
    return parser


main = command_line(build_parser)
"""Entry point of the console script: ``main(argv) -> exit status``."""


if __name__ == "__main__":
    raise SystemExit(main())
