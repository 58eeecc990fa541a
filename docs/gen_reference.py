"""Pages generated at build time (mkdocs-gen-files): never edited by hand.

- ``reference/cli.md``: every command's ``--help``, from the argparse parsers themselves;
- ``reference/hardware-keys.md``: every key of a hardware TOML file with its default and meaning,
  from the spec dataclasses and their docstrings, the presets as shipped, and the default energy
  table of each preset (pJ), from :func:`accel_sim.hardware.default_energy`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import tomllib
from importlib import resources

import mkdocs_gen_files

from accel_sim import cli as accel_cli
from accel_sim import hardware
from crisp import cli as crisp_cli
from crisp_sim import demo

COMMANDS = (
    ("accel-sim", accel_cli.build_parser),
    ("crisp", crisp_cli.build_parser),
    ("python -m crisp_sim.demo", demo.build_parser),
)
SECTIONS = (
    ("array", hardware.ArraySpec),
    ("memory", hardware.MemorySpec),
    ("sparse", hardware.SparseSupport),
    ("energy", hardware.EnergyTable),
)


def _help(parser: argparse.ArgumentParser) -> str:
    """A parser's help at a fixed width, so the page does not depend on the terminal."""
    formatter = parser.formatter_class
    parser.formatter_class = lambda prog: formatter(prog, width=100)
    try:
        return parser.format_help()
    finally:
        parser.formatter_class = formatter


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_page() -> str:
    out = ["# Command line", "",
           "Generated from the argparse parsers when the site is built: what `--help` prints.", ""]
    for name, build in COMMANDS:
        parser = build()
        out += [f"## `{name}`", "", "```text", _help(parser).rstrip(), "```", ""]
        for sub, subparser in _subparsers(parser).items():
            out += [f"### `{name} {sub}`", "", "```text", _help(subparser).rstrip(), "```", ""]
    return "\n".join(out)


def _attributes(cls: type) -> dict[str, str]:
    """``name -> description`` from a Google-style ``Attributes:`` section."""
    doc = inspect.getdoc(cls) or ""
    body = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    described: dict[str, str] = {}
    for names, text in re.findall(r"^    ([\w, ]+): (.*(?:\n        .*)*)", body, re.M):
        for name in names.split(","):
            described[name.strip()] = " ".join(text.split())
    return {k: v.replace("``", "`") for k, v in described.items()}


def _default(field: dataclasses.Field) -> str:
    if field.default is dataclasses.MISSING:
        return "(required in a table)"
    if field.default is None:
        return "none"
    return f"`{field.default!r}`".replace("'", '"')


def keys_page() -> str:
    out = ["# Hardware keys", "",
           "Generated from `accel_sim/hardware.py` when the site is built. A hardware file is TOML "
           "with a top-level `name` and the sections below; every section but `[array]` may be "
           "left out, every key takes its default when omitted, and an unknown key is an error "
           "that lists the allowed ones. `[energy]` is all or nothing: a partial table is an error "
           "naming the missing key; without it the defaults of the next section apply.", ""]
    for section, cls in SECTIONS:
        described = _attributes(cls)
        out += [f"## `[{section}]`", "", "| key | default | meaning |", "| --- | --- | --- |"]
        for field in dataclasses.fields(cls):
            default = _default(field)
            if section == "sparse" and field.name == "nm":
                default = '`"none"` (or `"2:4"`, ...)'
            out.append(f"| `{field.name}` | {default} | {described.get(field.name, '')} |")
        out.append("")
    out += ["## Presets", "",
            "Shipped in `accel_sim/presets/`; pass the name to `--hw`.", "",
            "| preset | array | dataflow | SRAM KiB (ifmap / filter / ofmap) | DRAM B/cycle "
            "| N:M | block skipping | zero gating | bitmap weights |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    presets = sorted(p.name[:-5] for p in resources.files("accel_sim.presets").iterdir()
                     if p.name.endswith(".toml"))
    specs = [hardware.load_hardware(p) for p in presets]
    for hw in specs:
        a, m, s = hw.array, hw.memory, hw.sparse
        nm = f"{s.nm[0]}:{s.nm[1]}" if s.nm else "none"
        out.append(f"| `{hw.name}` | {a.rows}x{a.cols} | {a.dataflow} | {m.ifmap_sram_kib:g} / "
                   f"{m.filter_sram_kib:g} / {m.ofmap_sram_kib:g} | {m.dram_bytes_per_cycle:g} | "
                   f"{nm} | {s.block_skipping} | {s.zero_gating} | {s.bitmap_weights} |")
    out += ["", "## Default energy tables", "",
            "What `[energy]` is when a file leaves it out: `default_energy(array, memory)` for "
            "each preset (pJ per action; SRAM per word, DRAM and metadata per byte; leakage in "
            "mW). The sources of each figure are on the [hardware page](../hardware.md).", "",
            "| key | " + " | ".join(f"`{hw.name}`" for hw in specs) + " |",
            "| --- |" + " --- |" * len(specs)]
    for field in dataclasses.fields(hardware.EnergyTable):
        cells = [f"{getattr(hw.energy, field.name):.4g}" for hw in specs]
        out.append(f"| `{field.name}` | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _toml_names() -> None:
    """Fail the build if a preset holds a key the page does not describe."""
    known = {s: {f.name for f in dataclasses.fields(c)} for s, c in SECTIONS}
    for p in resources.files("accel_sim.presets").iterdir():
        if p.name.endswith(".toml"):
            data = tomllib.loads(p.read_text())
            for section, keys in data.items():
                if isinstance(keys, dict) and not set(keys) <= known.get(section, set()):
                    raise SystemExit(f"{p.name}: [{section}] has keys the page does not know")


_toml_names()
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())
with mkdocs_gen_files.open("reference/hardware-keys.md", "w") as page:
    page.write(keys_page())
