"""Fuzzing the command lines: argv drawn from both CLIs' own parsers with mutated values, and
hardware TOML, SCALE-Sim ``.cfg`` and topology CSV mutants, each run in process and classified.

**The property.** Every case ends in one of the accepted outcomes:

- ``accepted``: exit status 0, and every count of every table it printed is finite and >= 0;
- ``refused``: exit status 2 and exactly one stderr line, starting ``error:``;
- ``reached work``: ``crisp train/prune/eval`` and ``accel-sim sweep`` passed every check and
  started their work, which the fuzzer replaces by a stub (training and clusters take minutes,
  and what is fuzzed here is the boundary in front of them).

Anything else is a failure: ``traceback`` (any other exception), ``multi-line`` (exit 2 with
another stderr than one ``error:`` line), ``bad count`` (a negative or non-finite number in a
printed table), ``hang`` (over `LIMIT_S`), ``other exit`` (any other status).

`cli_cases`, `hardware_cases` and `topology_cases` draw the cases from one seed; `run_case`
runs one; `run_cases` counts outcomes. ``benchmarks/fuzz.py`` publishes the counts;
``tests/test_fuzz.py`` runs a smaller draw in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import signal
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from accel_sim import cli as accel_cli
from accel_sim.hardware import presets
from crisp import cli as crisp_cli
from crisp.cli import CHECKPOINTS

OUTCOMES = ("accepted", "refused", "reached work", "traceback", "multi-line", "bad count",
            "hang", "other exit")
FAILURES = frozenset(OUTCOMES[3:])
LIMIT_S = 60
"""Seconds one case may take before it counts as a hang."""

#: Values a mutated flag or field takes: out of range, not finite, not a number, huge, empty.
VALUES = ("0", "-1", "1", "2.5", "1e300", "-1e300", "nan", "inf", "-inf", "1e-300", "abc", "",
          "99999999999999999999", "3000000000000000000x1", "0x4", "2:3", "0:4", "8:4", "ws,xx",
          "does/not/exist", "/", "100000", "-0", "0.0001", "64x64", "1,2,,3", "   ")
#: Positional sources: zoo names (known and not), paths of the wrong kind.
SOURCES = ("resnet_small", "nosuchnet", "does/not/exist.csv", "/", "x.safetensors", "")
#: TOML values a hardware field takes.
TOML_VALUES = ("0", "-1", "1e300", "nan", "inf", "-inf", "1e-300", "2.5", '"abc"', "true",
               "[1, 2]", "{a = 1}", "100000", "9223372036854775807", '"2:3"', '"none"', "1")
TOPOLOGY = "Layer, M, N, K,\nfc1, 16, 32, 64,\nfc2, 16, 8, 32,\n"
CONV_TOPOLOGY = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                 "Num Filter, Strides, Sparsity,\nconv1, 8, 8, 3, 3, 4, 8, 1, 2:4,\n"
                 "DP2, 6, 6, 3, 3, 8, 8, 1, ,\n")
CFG = ("[general]\nrun_name = fuzz\n[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\n"
       "IfmapSramSzkB: 64\nFilterSramSzkB: 64\nOfmapSramSzkB: 64\nDataflow : ws\nBandwidth : 10\n")


@dataclass(frozen=True)
class Case:
    """One fuzz case: a command line and what it mutates.

    Attributes:
        fuzzer: ``argv``, ``hardware`` or ``topology``.
        program: ``accel-sim`` or ``crisp``.
        argv: the arguments after the program name.
        mutation: what was changed, for reports and the regression corpus.
    """

    fuzzer: str
    program: str
    argv: tuple[str, ...]
    mutation: str


class _ReachedError(Exception):
    """Raised by the stubs that replace training and cluster work."""


class _HangError(Exception):
    """Raised by the alarm when a case runs past `LIMIT_S`."""


def _stub(*_: object, **__: object) -> None:
    raise _ReachedError


def _flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The optional flags of ``parser`` that take or are a value, but --help, --version and
    --data-root (a cache folder: a new one renders the glyph sets, 120 MB and seconds a case)."""
    return [a for a in parser._actions
            if a.option_strings and a.dest not in ("help", "version", "data_root")]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _bases(folder: Path) -> dict[tuple[str, str], list[str]]:
    """A valid, fast command line of every subcommand (the mutations start from these)."""
    topology = folder / "topology.csv"
    topology.write_text(TOPOLOGY)
    checkpoint = str(CHECKPOINTS / "resnet_small_glyph100.pt")
    return {
        ("accel-sim", "layers"): ["layers", "resnet_small"],
        ("accel-sim", "run"): ["run", str(topology), "--scheme", "hybrid"],
        ("accel-sim", "compare"): ["compare", str(topology), "--schemes", "dense,hybrid"],
        ("accel-sim", "sweep"): ["sweep", "--models", "resnet_small", "--arrays", "8x8",
                                 "--schemes", "dense,hybrid", "--out", str(folder / "sweep"),
                                 "--no-figures"],
        ("crisp", "train"): ["train", "--epochs", "1", "--out", str(folder / "train.pt")],
        ("crisp", "prune"): ["prune", "--classes", "3", "--n-per-class", "8", "--out",
                             str(folder / "prune")],
        ("crisp", "eval"): ["eval", "--checkpoint", checkpoint, "--classes", "3"],
    }


def _with(argv: list[str], flag: str, value: str | None) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replacing a given one); None: a bare flag."""
    out = list(argv)
    if flag in out:
        i = out.index(flag)
        del out[i:i + 2 if i + 1 < len(out) and not out[i + 1].startswith("--") else i + 1]
    return out + ([flag] if value is None else [flag, value])


def cli_cases(seed: int, count: int, folder: Path) -> list[Case]:
    """``count`` command lines of both CLIs, drawn from ``seed``: one to three flags of a
    subcommand (from its parser) set to values of `VALUES` or to their default (a choice flag:
    a valid or a bogus choice; a switch: present), sometimes a mutated source, an unknown flag
    or no arguments."""
    rng = random.Random(seed)
    bases = _bases(folder)
    parsers = {"accel-sim": accel_cli.build_parser(), "crisp": crisp_cli.build_parser()}
    files = {"random.csv": rng.randbytes(200), "random.toml": rng.randbytes(200),
             "random.cfg": rng.randbytes(200)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    values = VALUES + tuple(str(folder / n) for n in files)
    cases = []
    for _ in range(count):
        program, sub = rng.choice(sorted(bases))
        argv = list(bases[(program, sub)])
        flags = _flags(_subparsers(parsers[program])[sub])
        changed = []
        for action in rng.sample(flags, k=min(len(flags), rng.randint(1, 3))):
            flag = rng.choice(action.option_strings)
            if action.nargs == 0:
                value = None
            elif action.choices is not None and rng.random() < 0.5:
                value = rng.choice([*map(str, action.choices), "bogus"])
            elif action.default not in (None, False) and rng.random() < 0.3:
                value = str(action.default)  # a valid value, so that some cases pass the checks
            else:
                value = rng.choice(values)
            argv = _with(argv, flag, value)
            changed.append(flag if value is None else f"{flag} {value!r}")
        roll = rng.random()
        if program == "accel-sim" and sub != "sweep" and roll < 0.15:
            argv[1] = rng.choice([*SOURCES, *values])
            changed.append(f"source {argv[1]!r}")
        elif roll < 0.2:
            argv.append("--no-such-flag")
            changed.append("unknown flag")
        elif roll < 0.22:
            argv = argv[:1]
            changed.append("arguments left out")
        cases.append(Case("argv", program, tuple(argv), ", ".join(changed)))
    return cases


def _toml_fields() -> list[tuple[str, str]]:
    """(section, key) of every field of the shipped presets (an energy table's too)."""
    preset = tomllib.loads((Path(accel_cli.__file__).parent / "presets" / "edge-32x32.toml")
                           .read_text())
    keys = [(s, k) for s, body in preset.items() if isinstance(body, dict) for k in body]
    return [*keys, ("energy", "mac_pj"), ("energy", "leakage_mw")]


def _energy_table(value: str, key: str) -> str:
    from accel_sim.hardware import EnergyTable, default_energy, load_hardware

    spec = load_hardware("edge-32x32")
    table = default_energy(spec.array, spec.memory)
    lines = [f"{f}= {value if f == key else getattr(table, f)!r}"
             for f in EnergyTable.__dataclass_fields__]
    return "[energy]\n" + "\n".join(lines) + "\n"


def hardware_cases(seed: int, count: int, folder: Path) -> list[Case]:
    """``count`` hardware files, drawn from ``seed``, each run by ``accel-sim run`` on a small
    topology: one field of a preset set to a value of `TOML_VALUES`, a SCALE-Sim ``.cfg`` with a
    mutated value, a truncated file, random bytes, an unknown key or a section of the wrong
    type."""
    rng = random.Random(seed)
    topology = folder / "topology.csv"
    topology.write_text(TOPOLOGY)
    preset = (Path(accel_cli.__file__).parent / "presets" / f"{presets()[0]}.toml").read_text()
    fields = _toml_fields()
    cases = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.55:
            section, key = rng.choice(fields)
            value = rng.choice(TOML_VALUES)
            if section == "energy":
                text, what = preset + _energy_table(value, key), f"[energy] {key} = {value}"
            else:
                text = _set_toml(preset, section, key, value)
                what = f"[{section}] {key} = {value}"
            name = f"hw{i}.toml"
        elif roll < 0.75:
            key = rng.choice(["ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB",
                              "OfmapSramSzkB", "Dataflow", "Bandwidth"])
            value = rng.choice(VALUES)
            text = "\n".join(f"{key} : {value}" if line.startswith(key) else line
                             for line in CFG.splitlines()) + "\n"
            name, what = f"hw{i}.cfg", f".cfg {key} = {value!r}"
        elif roll < 0.85:
            cut = rng.randrange(len(preset))
            text, name, what = preset[:cut], f"hw{i}.toml", f"truncated at {cut}"
        elif roll < 0.92:
            name = f"hw{i}.{rng.choice(['toml', 'cfg'])}"
            (folder / name).write_bytes(rng.randbytes(rng.randint(0, 300)))
            cases.append(Case("hardware", "accel-sim", ("run", str(topology), "--hw",
                                                        str(folder / name)), "random bytes"))
            continue
        else:
            text = rng.choice([preset + "\n[array2]\nrows = 4\n", "array = 4\n",
                               preset.replace("[memory]", "[memory]\ncolour = 1"), "",
                               "[sparse]\nnm = 7\n", "[sparse]\nblock_skipping = 1\n"])
            name, what = f"hw{i}.toml", "structure"
        (folder / name).write_text(text)
        scheme = rng.choice(["dense", "hybrid", "unstructured"])
        cases.append(Case("hardware", "accel-sim",
                          ("run", str(topology), "--hw", str(folder / name), "--scheme", scheme),
                          what))
    return cases


def _set_toml(text: str, section: str, key: str, value: str) -> str:
    """``text`` with ``key`` of ``[section]`` set to the TOML literal ``value``."""
    out, current, done = [], "", False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            if current == section and not done:
                out.append(f"{key} = {value}")
                done = True
            current = stripped.strip("[]")
        if current == section and stripped.split("=")[0].strip() == key:
            line, done = f"{key} = {value}", True
        out.append(line)
    if not done:
        out += ([] if current == section else [f"[{section}]"]) + [f"{key} = {value}"]
    return "\n".join(out) + "\n"


def topology_cases(seed: int, count: int, folder: Path) -> list[Case]:
    """``count`` topology CSV files, drawn from ``seed``, each run by ``accel-sim run``: one
    cell of a GEMM or a conv topology set to a value of `VALUES`, a truncated file, random bytes,
    a NUL byte, a missing header or extra columns."""
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        base = rng.choice([TOPOLOGY, CONV_TOPOLOGY])
        rows = [line.split(",") for line in base.splitlines()]
        roll = rng.random()
        path = folder / f"topology{i}.csv"
        if roll < 0.7:
            r, c = rng.randrange(len(rows)), rng.randrange(len(rows[0]) - 1)
            value = rng.choice(VALUES)
            rows[r][c] = f" {value}"
            text = "\n".join(",".join(row) for row in rows) + "\n"
            what = f"cell {r},{c} = {value!r}"
        elif roll < 0.8:
            cut = rng.randrange(len(base))
            text, what = base[:cut], f"truncated at {cut}"
        elif roll < 0.9:
            path.write_bytes(rng.randbytes(rng.randint(0, 300)))
            cases.append(Case("topology", "accel-sim", ("run", str(path)), "random bytes"))
            continue
        else:
            text, what = rng.choice([(base.replace("16", "1\x0016", 1), "NUL byte"),
                                     ("\n".join(base.splitlines()[1:]) + "\n", "no header"),
                                     (base.replace(",\n", ", 7, 8, 9,\n"), "extra columns")])
        path.write_text(text)
        scheme = rng.choice(["dense", "hybrid", "block"])
        cases.append(Case("topology", "accel-sim", ("run", str(path), "--scheme", scheme), what))
    return cases


def _bad_numbers(frame: pd.DataFrame) -> bool:
    """True if a numeric cell of ``frame`` is negative or not finite."""
    values = frame.select_dtypes("number").to_numpy(dtype=float)
    return bool(not np.isfinite(values).all() or (values < 0).any())


@contextlib.contextmanager
def _sandbox(tables: list[pd.DataFrame]) -> Iterator[None]:
    """Stub the slow work (training, evaluation, clusters) and record every printed table."""
    summary, layers_frame = accel_cli.summary, accel_cli.layers_frame

    def record(frame: pd.DataFrame, *args: object) -> str:
        tables.append(frame)
        return summary(frame, *args)

    def record_layers(layers: object) -> pd.DataFrame:
        frame = layers_frame(layers)
        tables.append(frame)
        return frame

    saved = {(crisp_cli, n): getattr(crisp_cli, n) for n in ("prune", "train_epochs", "evaluate")}
    saved |= {(accel_cli, "run_sweep"): accel_cli.run_sweep, (accel_cli, "summary"): summary,
              (accel_cli, "layers_frame"): layers_frame}
    replacements: dict[str, Callable] = {"summary": record, "layers_frame": record_layers}
    try:
        for (module, name) in saved:
            setattr(module, name, replacements.get(name, _stub))
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def _alarm(_: int, __: object) -> None:
    raise _HangError


def run_case(case: Case, folder: Path, limit_s: int = LIMIT_S) -> tuple[str, str]:
    """Run ``case`` in process, in ``folder`` (relative output paths land there; stdout and
    stderr captured): its outcome (`OUTCOMES`) and stderr."""
    main = accel_cli.main if case.program == "accel-sim" else crisp_cli.main
    out, err = io.StringIO(), io.StringIO()
    tables: list[pd.DataFrame] = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit_s)
    try:
        with (_sandbox(tables), contextlib.chdir(folder), contextlib.redirect_stdout(out),
              contextlib.redirect_stderr(err)):
            status = main(list(case.argv))
    except _ReachedError:
        return "reached work", err.getvalue()
    except _HangError:
        return "hang", err.getvalue()
    except SystemExit as exc:  # --help / --version
        status = exc.code
    except BaseException as exc:  # any other exception is the failure being counted
        return "traceback", f"{err.getvalue()}{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if status == 0:
        return ("bad count" if any(_bad_numbers(t) for t in tables) else "accepted"), err.getvalue()
    lines = err.getvalue().splitlines()
    if status == 2:
        one = len(lines) == 1 and lines[0].startswith("error: ")
        return ("refused" if one else "multi-line"), err.getvalue()
    return "other exit", err.getvalue()


def run_cases(cases: Sequence[Case], folder: Path,
              limit_s: int = LIMIT_S) -> tuple[Counter, list[tuple]]:
    """Outcome counts of ``cases`` (run in ``folder``) and the failing ones as (case, outcome,
    stderr)."""
    counts: Counter = Counter()
    failures = []
    for case in cases:
        outcome, err = run_case(case, folder, limit_s)
        counts[outcome] += 1
        if outcome in FAILURES:
            failures.append((case, outcome, err))
    return counts, failures
