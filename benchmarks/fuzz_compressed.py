"""Fuzzing the compressed format: seeded mutants of a small valid file, and what the reader and
``accel-sim run`` make of each.

`small_file` writes a small network with one layer of every scheme (dense, hybrid, unstructured
on a depthwise conv, block, N:M). `mutants` derives corrupted copies of its bytes, of the kinds
in `KINDS`: bit flips in offsets, bitmaps (changing the kept count or keeping it), values and
other tensors; header JSON edits (every field set to 0, -1, huge, a float, a string, null, or
removed; layers duplicated, dropped, renamed, reordered; geometry edits; version, format, dtype
and checksum edits); safetensors framing edits, truncated files and random bytes. `classify`
reads a mutant with the simulator's reader (`crisp.compressed_format.read_layers`) and runs
``accel-sim run FILE --hw edge-32x32`` in process; its outcome is one of `OUTCOMES`:

- ``refused``: exit status 2 and exactly one stderr line, ``error: ...``, and the reader refuses
  it too;
- ``accepted-same``: exit 0, the layers (names, schemes, N:M, B, geometry, weights bit for bit),
  the other tensors and the printed simulation equal the original's;
- ``accepted-v1``: the same, read as a version-1 file (one ``note:`` line on stderr);
- ``accepted-changed`` (a failure): exit 0 but the model or the simulation differ;
- ``refused-badly`` (a failure): a refusal that is not one ``error:`` line, another exit status,
  or the reader and the command line disagree;
- ``traceback`` (a failure): any other exception.

``tests/test_compressed_fuzz.py`` asserts no failure; ``python benchmarks/fuzz_compressed.py
[--seed S] [--count N]`` prints the count of each outcome per mutant kind.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import random
import struct
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from accel_sim.cli import main as accel_sim
from crisp import compressed
from crisp.compressed_format import checksum_of, read_layers
from crisp.errors import UserError
from crisp.patterns import block_mask, hybrid_mask, nm_mask

OUTCOMES = ("refused", "accepted-same", "accepted-v1", "accepted-changed", "refused-badly",
            "traceback")
FAILURES = ("accepted-changed", "refused-badly", "traceback")
HUGE = (40000, 10**6, 10**30)
"""Huge numbers a header field is set to (a ``b`` of 40000 once cost 1.74 GB to read)."""
REPLACEMENTS = (0, -1, 1, 2, *HUGE, 1.5, 16.0, "7", None, True, [], {})
"""What a header field is set to by a ``field`` mutant (or it is removed)."""
HARDWARE = "edge-32x32"


# ---------------------------------------------------------------------------------------------
# The valid file
# ---------------------------------------------------------------------------------------------


def small_file(path: Path) -> Path:
    """Write a small valid compressed file (about 12 KB, fp16) and return its path.

    Layers: ``0`` dense conv (stride 2), ``3`` hybrid 2:4 in 16 x 16 blocks, ``5`` unstructured
    depthwise conv, ``7`` block 1x1 conv, ``10`` 2:4 linear head; input 3 x 16 x 16.
    """
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():  # the same file every time, the caller's RNG untouched
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU(),
            nn.Conv2d(32, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    masks = {}
    for name, make in (("3", lambda s: hybrid_mask(s, 16, 3, 2, 4)),
                       ("5", lambda s: s > 0.5), ("7", lambda s: block_mask(s, 16, 1)),
                       ("10", lambda s: nm_mask(s, 2, 4))):
        weight = model.get_submodule(name).weight
        with torch.no_grad():
            weight.copy_(torch.randn(weight.shape, generator=gen))
        matrix = weight.detach().reshape(weight.shape[0], -1)
        masks[f"{name}.weight"] = make(torch.rand(matrix.shape, generator=gen))
    compressed.save(model, path, masks, {"3": "hybrid", "5": "unstructured", "7": "block",
                                         "10": "nm"}, 2, 4, 16, (3, 16, 16), meta={"model": "toy"})
    return path


# ---------------------------------------------------------------------------------------------
# Mutants
# ---------------------------------------------------------------------------------------------


@dataclass
class _Parsed:
    """A file taken apart: the safetensors table, the crisp header, the tensor bytes."""

    table: dict[str, dict]
    header: dict
    body: bytearray

    @classmethod
    def of(cls, data: bytes) -> _Parsed:
        (size,) = struct.unpack("<Q", data[:8])
        table = json.loads(data[8:8 + size])
        return cls(table, json.loads(table["__metadata__"]["crisp"]), bytearray(data[8 + size:]))

    def bytes(self, resign: bool = False) -> bytes:
        """The file again; ``resign``: with the header's checksum made to match."""
        if resign:
            self.header["checksum"] = checksum_of(self.bytes())
        table = {**self.table, "__metadata__": {"crisp": json.dumps(self.header)}}
        text = json.dumps(table).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + bytes(self.body)

    def tensors(self, suffix: str) -> list[str]:
        return sorted(k for k in self.table if k != "__metadata__" and k.endswith(suffix))

    def flip(self, rng: random.Random, key: str, bit: int | None = None) -> None:
        """Flip one bit (random unless given) of tensor ``key``."""
        begin, end = self.table[key]["data_offsets"]
        bit = rng.randrange(8 * (end - begin)) if bit is None else bit
        self.body[begin + bit // 8] ^= 0x80 >> (bit % 8)

    def bit(self, key: str, bit: int) -> int:
        begin = self.table[key]["data_offsets"][0]
        return (self.body[begin + bit // 8] >> (7 - bit % 8)) & 1


def _leaves(value: object, path: tuple = ()) -> list[tuple]:
    """Paths of every field of a JSON value (object keys and list indices), depth first."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [p for key, item in items for p in [(*path, key), *_leaves(item, (*path, key))]]


def _set(root: object, path: tuple, value: object) -> None:
    """Set the field at ``path``; ``...`` removes it (from an object) instead."""
    *parent, last = path
    for key in parent:
        root = root[key]
    if value is ... and isinstance(root, dict):
        del root[last]
    else:
        root[last] = None if value is ... else value


def _bitmap_flip(f: _Parsed, rng: random.Random) -> None:
    f.flip(rng, rng.choice(f.tensors(".bitmap")))


def _bitmap_swap(f: _Parsed, rng: random.Random) -> None:
    """Move one kept bit to a dropped position: the kept count stays."""
    key = rng.choice(f.tensors(".bitmap"))
    name = key.removesuffix(".bitmap")
    layer = next(e for e in f.header["layers"] if e["name"] == name)
    bits = layer["counts"]["bitmap_bits"]
    ones = [i for i in range(bits) if f.bit(key, i)]
    zeros = [i for i in range(bits) if not f.bit(key, i)]
    for i in (rng.choice(ones), rng.choice(zeros)):
        f.flip(rng, key, i)


def _field(f: _Parsed, rng: random.Random) -> None:
    path = rng.choice(_leaves(f.header))
    _set(f.header, path, rng.choice([*REPLACEMENTS, ...]))


def _huge_b(f: _Parsed, rng: random.Random) -> None:
    layer = rng.choice(f.header["layers"])
    layer["b"] = rng.choice(HUGE)
    if rng.random() < 0.5 and "bitmap_bits" in layer["counts"]:  # counts made to agree
        layer["counts"]["bitmap_bits"] = 1


def _geometry(f: _Parsed, rng: random.Random) -> None:
    """A plausible edit: one geometry number halved, doubled or moved by one."""
    layer = rng.choice(f.header["layers"])
    paths = [p for p in _leaves(layer["geometry"]) if isinstance(_get(layer["geometry"], p), int)]
    path = rng.choice(paths)
    old = _get(layer["geometry"], path)
    _set(layer["geometry"], path, rng.choice([old // 2, old * 2, old + 1, max(old - 1, 0), 8]))


def _get(root: object, path: tuple) -> object:
    for key in path:
        root = root[key]
    return root


def _layers(f: _Parsed, rng: random.Random) -> None:
    """Duplicate, drop (the entry, or the entry and its tensors), rename or reorder layers."""
    layers = f.header["layers"]
    i = rng.randrange(len(layers))
    name = layers[i]["name"]
    edit = rng.choice(["duplicate", "drop", "drop-all", "rename", "rename-all", "swap"])
    if edit == "duplicate":
        layers.insert(i, dict(layers[i]))
    elif edit.startswith("drop"):
        del layers[i]
    elif edit.startswith("rename"):
        layers[i]["name"] = f"{name}x"
    else:
        j = (i + 1 + rng.randrange(len(layers) - 1)) % len(layers)
        layers[i], layers[j] = layers[j], layers[i]
    if edit.endswith("-all"):
        for key in [k for k in f.table if k.startswith(f"{name}.")]:
            entry = f.table.pop(key)
            if edit == "rename-all":
                f.table[f"{name}x.{key.removeprefix(f'{name}.')}"] = entry


def _top(f: _Parsed, rng: random.Random) -> None:
    """Version, format, dtype, K order or checksum edits."""
    edit = rng.choice(["v1", "v1-keep", "v4", "format", "dtype", "k_order", "checksum"])
    if edit == "v1":  # a genuine version-1 header: no checksum, blocks_per_row, dense_gemms
        del f.header["checksum"]
        del f.header["dense_gemms"]
        for layer in f.header["layers"]:
            layer.pop("blocks_per_row", None)
    if edit.startswith("v"):
        f.header["version"] = 4 if edit == "v4" else 1
    elif edit == "format":
        f.header["format"] = "crisp-compressed2"
    elif edit == "dtype":
        f.header["dtype"] = rng.choice(["bfloat16", "float32", "int8"])
    elif edit == "k_order":
        f.header["k_order"] = "(kh, kw, C_in/groups)"
    else:
        digest = f.header["checksum"]
        i = rng.randrange(len("sha256:"), len(digest))
        f.header["checksum"] = digest[:i] + ("0" if digest[i] != "0" else "1") + digest[i + 1:]


def _framing(f: _Parsed, rng: random.Random) -> None:
    """A tensor's dtype, shape or offsets edited in the safetensors table."""
    key = rng.choice([k for k in f.table if k != "__metadata__"])
    entry = f.table[key]
    edit = rng.choice(["dtype", "shape", "offsets"])
    if edit == "dtype":
        entry["dtype"] = {"F16": "I16", "U8": "I8", "F32": "I32"}.get(entry["dtype"], "U8")
    elif edit == "shape" and entry["shape"]:
        entry["shape"] = [*entry["shape"][:-1], entry["shape"][-1] * 2]
    else:
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = [begin, end + 2]


KINDS: dict[str, Callable[[_Parsed, random.Random], None]] = {
    "offset-bit": lambda f, rng: f.flip(rng, rng.choice(f.tensors(".offsets"))),
    "bitmap-bit": _bitmap_flip,
    "bitmap-swap": _bitmap_swap,
    "value-bit": lambda f, rng: f.flip(rng, rng.choice(f.tensors(".values")
                                                       + f.tensors(".weight"))),
    "state-bit": lambda f, rng: f.flip(rng, rng.choice(
        [k for k in f.table if k.startswith("state.")])),
    "field": _field,
    "huge-b": _huge_b,
    "geometry": _geometry,
    "layers": _layers,
    "top": _top,
    "framing": _framing,
}
"""Mutations of a parsed file (tensor bits or header/table edits), by kind."""
WEIGHTS = {"field": 6, "offset-bit": 2, "bitmap-bit": 2, "bitmap-swap": 2, "value-bit": 2,
           "geometry": 2, "layers": 2}
"""How often each kind is drawn relative to the others (default 1)."""


def _raw(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A byte-level mutant: truncated, a byte of the framing changed, or random bytes."""
    edit = rng.choice(["truncate", "framing-byte", "length", "random"])
    if edit == "truncate":
        return edit, data[:rng.randrange(len(data))]
    if edit == "framing-byte":
        (size,) = struct.unpack("<Q", data[:8])
        i = rng.randrange(8, 8 + size)
        return edit, data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if edit == "length":
        (size,) = struct.unpack("<Q", data[:8])
        return edit, struct.pack("<Q", size + rng.choice([-8, -1, 1, 8, 2**40])) + data[8:]
    return edit, rng.randbytes(rng.choice([0, 7, 8, 64, 4096]))


def mutants(data: bytes, seed: int, count: int, resign: bool = False) -> list[tuple[str, bytes]]:
    """``count`` mutants of a valid compressed file's bytes, each ``(kind, bytes)``.

    Kinds are drawn by `WEIGHTS` from `KINDS` plus ``raw`` (truncated, framing bytes, random
    bytes); every choice comes from ``random.Random(seed)``, so a seed gives the same mutants.
    ``data`` must be a version-3 file (the checksum is what catches value flips).

    ``resign``: no ``raw`` mutants, and each mutant's checksum is made to match (a forged file):
    what the checks other than the checksum catch. Such a mutant may be a valid file of another
    model (a value flip, a bitmap bit moved inside its block-row), so ``accepted-changed`` is
    expected of some.
    """
    rng = random.Random(seed)
    kinds = [*KINDS] if resign else [*KINDS, "raw"]
    weights = [WEIGHTS.get(k, 1) for k in kinds]
    out = []
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        if kind == "raw":
            edit, mutant = _raw(data, rng)
            out.append((f"raw:{edit}", mutant))
            continue
        parsed = _Parsed.of(data)
        KINDS[kind](parsed, rng)
        out.append((kind, parsed.bytes(resign)))
    return out


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What a file reads back as: the layers, the other tensors' digest and the simulation."""

    layers: tuple
    state: str
    stdout: str


def _state_digest(path: Path) -> str:
    """SHA-256 of the ``state.*`` tensors' table entries and bytes (the reader skips them)."""
    parsed = _Parsed.of(path.read_bytes())
    digest = hashlib.sha256()
    for key in parsed.tensors(""):
        if key.startswith("state."):
            begin, end = parsed.table[key]["data_offsets"]
            digest.update(json.dumps([key, parsed.table[key]]).encode())
            digest.update(parsed.body[begin:end])
    return digest.hexdigest()


def _fingerprint(path: Path) -> tuple:
    return tuple((la.name, la.scheme, la.n, la.m, la.b, sorted(la.geometry.items()), la.shape,
                  la.weight.dtype.str, la.weight.tobytes()) for la in read_layers(path))


def _cli(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = accel_sim(["run", str(path), "--hw", HARDWARE])
    return status, out.getvalue().replace(str(path), "FILE"), err.getvalue()


def read(path: Path) -> Reading:
    """The original's `Reading` (it must read and simulate cleanly)."""
    status, stdout, stderr = _cli(path)
    if status or stderr:
        raise RuntimeError(f"{path} does not simulate cleanly: {stderr}")
    return Reading(_fingerprint(path), _state_digest(path), stdout)


def classify(path: Path, original: Reading) -> tuple[str, str]:
    """(outcome, stderr) of one mutant file: the reader, then ``accel-sim run`` in process."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            layers = _fingerprint(path)
    except UserError:
        layers = None
    except Exception as exc:  # any other exception is the finding
        return "traceback", f"read_layers: {type(exc).__name__}: {exc}"
    try:
        status, stdout, stderr = _cli(path)
    except Exception as exc:
        return "traceback", f"accel-sim run: {type(exc).__name__}: {exc}"
    lines = stderr.splitlines()
    if status == 2 and layers is None and len(lines) == 1 and lines[0].startswith("error: "):
        return "refused", stderr
    notes = [line for line in err.getvalue().splitlines() + lines if line.startswith("note: ")]
    if status != 0 or layers is None or len(lines) > len(notes) or len(notes) > 1:
        return "refused-badly", stderr
    same = Reading(layers, _state_digest(path), stdout) == original
    if not same:
        return "accepted-changed", stderr
    return ("accepted-v1" if notes else "accepted-same"), stderr


@dataclass(frozen=True)
class Result:
    """One mutant's kind, outcome and stderr."""

    kind: str
    outcome: str
    stderr: str


def fuzz(original: Path, seed: int, count: int, resign: bool = False) -> list[Result]:
    """Classify ``count`` `mutants` (seeded) of a valid file, each written beside it."""
    reading = read(original)
    results = []
    for i, (kind, data) in enumerate(mutants(original.read_bytes(), seed, count, resign)):
        path = original.with_name(f"mutant{i}.safetensors")  # one name each: noted once per file
        path.write_bytes(data)
        results.append(Result(kind, *classify(path, reading)))
        path.unlink()
    return results


def tally(results: list[Result]) -> dict[str, int]:
    """Mutants per outcome class (every class of `OUTCOMES`, zeros included)."""
    counts = Counter(r.outcome for r in results)
    return {outcome: counts[outcome] for outcome in OUTCOMES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=400, help="mutants (default 400)")
    parser.add_argument("--resign", action="store_true",
                        help="forged mutants: each checksum made to match (see mutants)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        original = small_file(Path(folder) / "original.safetensors")
        results = fuzz(original, args.seed, args.count, args.resign)
    kinds = sorted({r.kind for r in results})
    print("kind".ljust(20) + "".join(o.rjust(18) for o in OUTCOMES))
    for kind in kinds:
        counts = tally([r for r in results if r.kind == kind])
        print(kind.ljust(20) + "".join(str(counts[o]).rjust(18) for o in OUTCOMES))
    total = tally(results)
    print("total".ljust(20) + "".join(str(total[o]).rjust(18) for o in OUTCOMES))
    for r in results:
        if r.outcome in FAILURES:
            print(f"{r.outcome} ({r.kind}): {r.stderr.strip()[:300]}", file=sys.stderr)
    return 1 if any(total[o] for o in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
