"""Fuzzing the compressed format (`benchmarks.fuzz_compressed`): every mutant of a valid file is
refused on one stderr line or reads back unchanged, never a traceback, in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from benchmarks import fuzz_compressed as fz
from crisp.compressed_format import MAX_BLOCK, read_layers
from crisp.errors import UserError

FORGEABLE = {"bitmap-swap", "offset-bit", "value-bit", "state-bit", "layers", "framing"}
"""Kinds whose forged mutants (checksum made to match) may be valid files of another model."""


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fz.small_file(tmp_path_factory.mktemp("fuzz") / "original.safetensors")


def test_mutants_are_refused_on_one_line_or_read_unchanged(original: Path) -> None:
    results = fz.fuzz(original, seed=0, count=600)
    counts = fz.tally(results)
    assert not [r for r in results if r.outcome in fz.FAILURES], counts
    assert counts["refused"] >= 550 and counts["accepted-v1"] > 0
    kinds = {r.kind.split(":")[0] for r in results}
    assert kinds == {*fz.KINDS, "raw"}
    # Every tensor bit flip is refused (the checksum), whatever it changed.
    assert all(r.outcome == "refused" for r in results if r.kind.endswith("-bit"))


def test_forged_mutants_never_crash(original: Path) -> None:
    """With the checksum made to match, the other checks refuse every header edit."""
    results = fz.fuzz(original, seed=1, count=400, resign=True)
    assert not [r for r in results if r.outcome in ("traceback", "refused-badly")]
    changed = {r.kind for r in results if r.outcome == "accepted-changed"}
    assert changed <= FORGEABLE, changed
    assert any(r.outcome == "refused" for r in results if r.kind == "offset-bit")


@pytest.mark.parametrize("b", fz.HUGE)
@pytest.mark.parametrize("agree", [False, True])
def test_huge_block_sizes_are_refused_in_little_memory(
    original: Path, tmp_path: Path, b: int, agree: bool
) -> None:
    parsed = fz._Parsed.of(original.read_bytes())
    layer = next(e for e in parsed.header["layers"] if e["scheme"] == "hybrid")
    layer["b"] = b
    if agree:  # the counts made to agree with b, and the checksum with both
        layer["counts"]["bitmap_bits"] = 1
    path = tmp_path / "huge.safetensors"
    path.write_bytes(parsed.bytes(resign=True))
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=f"b = {b}: allowed an integer in 1..{MAX_BLOCK}"):
            read_layers(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # bytes: the file (about 12 KB) and its parsed header
