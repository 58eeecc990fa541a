"""Fuzzing both command lines (``benchmarks/fuzz_cli.py``): every case is accepted with sane
counts, refused on one line with exit 2, or reaches the (stubbed) work; never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fuzz_cli
from fuzz_cli import Case

#: A draw per fuzzer, small enough for CI (the benchmark draws more).
DRAWS = {"argv": (fuzz_cli.cli_cases, 80), "hardware": (fuzz_cli.hardware_cases, 60),
         "topology": (fuzz_cli.topology_cases, 60)}


@pytest.mark.parametrize("fuzzer", sorted(DRAWS))
def test_fuzzed_inputs_are_accepted_or_refused_on_one_line(fuzzer: str, tmp_path: Path) -> None:
    make, count = DRAWS[fuzzer]
    counts, failures = fuzz_cli.run_cases(make(seed=0, count=count, folder=tmp_path), tmp_path)
    assert not failures, "\n".join(f"{o}: {c.argv} ({c.mutation}): {e}" for c, o, e in failures)
    assert counts["refused"] > count // 4  # the draw does reach the checks
    assert counts["accepted"] + counts["reached work"] > 0  # and some inputs pass them


def _write(folder: Path, name: str, content: str | bytes) -> str:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


#: Inputs that once printed a wrong number or a traceback, or hung: (argv, files to write).
CORPUS = {
    "bandwidth below its floor": (["run", "{topology}", "--bandwidth", "1e-300"], {}),
    "huge array side": (["run", "{topology}", "--array", "3000000000000000000x1"], {}),
    "negative block": (["run", "{topology}", "--scheme", "block", "--block", "-4"], {}),
    "zero block": (["compare", "{topology}", "--block", "0"], {}),
    "negative seed": (["run", "{topology}", "--seed", "-1"], {}),
    "zero resolution": (["layers", "resnet_small", "--resolution", "0"], {}),
    "resolution too small for the network": (["layers", "vgg16_bn", "--resolution", "8"], {}),
    "sweep workers -1 (hung)": (["sweep", "--workers", "-1", "--out", "{folder}/s"], {}),
    "unknown flag (12 lines of usage)": (["run", "{topology}", "--no-such-flag"], {}),
    "random-bytes toml": (["run", "{topology}", "--hw", "{folder}/r.toml"],
                          {"r.toml": b"\xaa\x00\xff" * 40}),
    "random-bytes cfg": (["run", "{topology}", "--hw", "{folder}/r.cfg"],
                         {"r.cfg": b"\xbc\x01" * 40}),
    "random-bytes topology": (["run", "{folder}/r.csv"], {"r.csv": b"\x86\xfc" * 40}),
    "rows 1e300": (["run", "{topology}", "--hw", "{folder}/h.toml"],
                   {"h.toml": "[array]\nrows = 1e300\n"}),
    "SRAM inf": (["run", "{topology}", "--hw", "{folder}/h.toml"],
                 {"h.toml": "[memory]\nfilter_sram_kib = inf\n"}),
    "cfg SRAM inf": (["run", "{topology}", "--hw", "{folder}/h.cfg"],
                     {"h.cfg": fuzz_cli.CFG.replace("IfmapSramSzkB: 64", "IfmapSramSzkB: inf")}),
    "cfg height 1e300": (["run", "{topology}", "--hw", "{folder}/h.cfg"],
                         {"h.cfg": fuzz_cli.CFG.replace("ArrayHeight: 8", "ArrayHeight: 1e300")}),
    "clock inf": (["run", "{topology}", "--hw", "{folder}/h.toml"],
                  {"h.toml": "[array]\nclock_mhz = inf\n"}),
    "multi-line cfg parser error": (["run", "{topology}", "--hw", "{folder}/h.cfg"],
                                    {"h.cfg": "no section\n[x\n"}),
    "NUL in topology": (["run", "{folder}/n.csv"], {"n.csv": "Layer, M, N, K,\na, 1\x00, 2, 3,\n"}),
    "lr nan": (["prune", "--classes", "3", "--lr", "nan", "--out", "{folder}/p"], {}),
    "block 100000": (["prune", "--classes", "3", "--block", "100000", "--out", "{folder}/p"], {}),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_regression_corpus_is_refused_on_one_line(name: str, tmp_path: Path) -> None:
    argv, files = CORPUS[name]
    for file, content in files.items():
        _write(tmp_path, file, content)
    topology = _write(tmp_path, "topology.csv", fuzz_cli.TOPOLOGY)
    argv = [a.format(folder=tmp_path, topology=topology) for a in argv]
    program = "crisp" if argv[0] in ("train", "prune", "eval") else "accel-sim"
    outcome, err = fuzz_cli.run_case(Case("corpus", program, tuple(argv), name), tmp_path)
    assert outcome == "refused", err
