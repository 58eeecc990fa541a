"""Pages generated at build time (mkdocs-gen-files): never edited by hand.

- ``reference/cli.md``: every command's ``--help``, from the argparse parsers themselves;
- ``reference/hardware-keys.md``: every key of a hardware TOML file with its default and meaning,
  from the spec dataclasses and their docstrings, the presets as shipped, and the default energy
  table of each preset (pJ), from `accel_sim.hardware.default_energy`;
- ``reference/results-provenance.md``: every results file's command, commit, date, machine and
  wall time, and what ``make results`` takes;
- ``reference/results-schema.md``: every column of a simulation's per-layer table and of a
  sweep's ``results.parquet``, in the order written, from `accel_sim.report.LayerResult`
  (fields and derived properties) and `accel_sim.sweep.evaluate_batch` (run on one design
  point with the simulation stubbed out, so the page lists exactly the columns it writes), each
  described by the ``Attributes:`` of ``LayerResult``, ``DesignPoint`` or ``MemorySpec`` or by
  the property's docstring. A column without a description fails the build.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import tomllib
from importlib import resources
from pathlib import Path

import mkdocs_gen_files

from accel_sim import cli as accel_cli
from accel_sim import hardware, report, sweep
from accel_sim.workload import GemmLayer
from crisp import cli as crisp_cli
from crisp_sim import demo, publish

ROOT = Path(__file__).resolve().parents[1]
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


def _ranges(command: str, parser: argparse.ArgumentParser) -> list[str]:
    """Table rows ``| command | flag | allowed | unit |`` of the flags checked by a
    `crisp.ranges.Range`."""
    rows = []
    for action in parser._actions:
        checked = getattr(action.type, "range", None)
        if checked is not None:
            flags = ", ".join(f"`{f}`" for f in action.option_strings)
            rows.append(f"| `{command}` | {flags} | {checked.allowed()} | {checked.unit} |")
    return rows


def cli_page() -> str:
    out = ["# Command line", "",
           "Generated from the argparse parsers when the site is built: what `--help` prints.", ""]
    rows: list[str] = []
    for name, build in COMMANDS:
        parser = build()
        out += [f"## `{name}`", "", "```text", _help(parser).rstrip(), "```", ""]
        rows += _ranges(name, parser)
        for sub, subparser in _subparsers(parser).items():
            out += [f"### `{name} {sub}`", "", "```text", _help(subparser).rstrip(), "```", ""]
            rows += _ranges(f"{name} {sub}", subparser)
    out += ["## Allowed values", "",
            "Every number a flag takes is checked when the command line is read, before any "
            "work starts, against the range below (`crisp/ranges.py`, the same objects the "
            "checks use); a value outside it stops the command with one line naming the flag, "
            "the value and the range, and exit status 2. NaN is never allowed, infinity only "
            "where the table says so. Hardware files are checked against the ranges of "
            "[Hardware keys](hardware-keys.md).", "",
            "| command | flag | allowed | unit |", "| --- | --- | --- | --- |", *rows, ""]
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


def _allowed(section: str, key: str) -> str:
    """What a hardware key accepts, from `accel_sim.hardware.SCHEMA` and its other checks."""
    choices = {("array", "dataflow"): ", ".join(f'`"{d}"`' for d in hardware.DATAFLOWS),
               ("sparse", "nm"): '`"N:M"` with M in 2, 4, 8, 16 and 1 <= N < M, or `"none"`'}
    if (section, key) in choices:
        return choices[section, key]
    if section == "sparse":
        return "true or false"
    if key == "word_bits":
        return f"one of {', '.join(map(str, hardware.WORD_BITS))}"
    checked = hardware.SCHEMA[section][key]
    text = f"{checked.allowed()} {checked.unit}".strip()
    if key == "psum_bits":
        return f"{text}, a multiple of 8, at least `word_bits`"
    return text


def keys_page() -> str:
    out = ["# Hardware keys", "",
           "Generated from `accel_sim/hardware.py` when the site is built (the allowed values "
           "from `SCHEMA`, the same objects that check a file). A hardware file is TOML "
           "with a top-level `name` and the sections below; every section may be left out, "
           "every key takes its default when omitted, and an unknown key or a value outside "
           "its allowed range is an error that names it and what is allowed. `[energy]` is "
           "all or nothing: a partial table is an error naming the missing key; without it "
           "the defaults below apply (default energy tables).",
           ""]
    for section, cls in SECTIONS:
        described = _attributes(cls)
        out += [f"## `[{section}]`", "", "| key | default | allowed | meaning |",
                "| --- | --- | --- | --- |"]
        for field in dataclasses.fields(cls):
            default = _default(field)
            if section == "sparse" and field.name == "nm":
                default = '`"none"` (or `"2:4"`, ...)'
            out.append(f"| `{field.name}` | {default} | {_allowed(section, field.name)} | "
                       f"{described.get(field.name, '')} |")
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


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _markdown(text: str) -> str:
    """Docstring text as Markdown: Sphinx roles and double backticks to code spans, one line."""
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", " ".join(text.split()).replace("``", "`"))


def _first_paragraph(obj: object) -> str:
    return _markdown((inspect.getdoc(obj) or "").split("\n\n", 1)[0])


def _stub_result() -> report.LayerResult:
    """A LayerResult with every field zero or empty (its columns, not its values, are used)."""
    values = {f.name: "" if f.type in ("str", str) else 0
              for f in dataclasses.fields(report.LayerResult)}
    values["pes"], values["clock_mhz"] = 1, 1.0
    return report.LayerResult(**values)


def _layer_columns() -> list[tuple[str, str, str]]:
    """(column, type, description) of a per-layer row, in the order ``as_row`` writes them."""
    result = _stub_result()
    described = _attributes(report.LayerResult)
    out = []
    for name in result.as_row():
        attr = inspect.getattr_static(report.LayerResult, name, None)
        if isinstance(attr, property):
            kind = str(inspect.signature(attr.fget).return_annotation)
            text = _first_paragraph(attr)
        else:
            kind = str(report.LayerResult.__annotations__[name])
            text = _markdown(described.get(name, ""))
        out.append((name, kind, text))
    return out


def _sweep_table() -> object:
    """The table `accel_sim.sweep.evaluate_batch` returns for one dense design point, with
    ``simulate`` stubbed out to return one all-zero layer (no simulation, no compiled code)."""
    point = sweep.DesignPoint("schema", "dense", 1.0, 32, 32)
    layer = GemmLayer("x", "linear", P=1, K=1, N=1)
    real = sweep.simulate
    sweep.simulate = lambda *args, **kwargs: report.Report("schema", (_stub_result(),))
    try:
        return sweep.evaluate_batch([point], ((layer,), {}))
    finally:
        sweep.simulate = real


def schema_page() -> str:
    layer_columns = _layer_columns()
    per_layer = {name for name, _, _ in layer_columns}
    missing = [name for name, _, text in layer_columns if not text]
    out = ["# Results schema", "",
           "Generated from `accel_sim/report.py` and `accel_sim/sweep.py` when the site is built. "
           "Cycles are array clock cycles, `*_bytes` bytes, energies pJ, latencies µs; access "
           "counts are words at the operand width unless the description says otherwise.", "",
           "## Per-layer table", "",
           "One row per layer, in execution order: the table `accel-sim run --out x.csv` (or "
           "`.parquet`) writes, built by `Report.to_frame()`, whose docstring says:", "",
           "> " + " ".join(_markdown(part) for part in
                           (inspect.getdoc(report.Report.to_frame) or "").split("\n\n")), "",
           "`accel-sim compare --out` writes these columns for every scheme compared, with its "
           "own total rows and ratio columns (`Comparison` in the [Python API](accel_sim.md)). "
           "The columns after `clock_mhz` are derived from the fields before them "
           "(`LayerResult`'s properties).", "",
           "| column | type | meaning |", "| --- | --- | --- |"]
    for name, kind, text in layer_columns:
        out.append(f"| `{name}` | {kind} | {_cell(text)} |")
    table = _sweep_table()
    point = _attributes(sweep.DesignPoint)
    memory = _attributes(hardware.MemorySpec)
    layer_text = dict((name, text) for name, _, text in layer_columns)
    out += ["", "## Sweep table (`results.parquet`)", "",
            "One row per design point and layer, points in the order of the grid, layers in "
            "execution order (no total rows): what `accel-sim sweep` writes to "
            "`<out>/results.parquet` and each fragment under `<out>/parts/`. It holds every "
            "per-layer column above, in the same order, then the point's own columns; `mapping` "
            "holds the point's field (`best` or `scalesim`) and the layer's schedule moves to "
            "`schedule`. The table lists the columns the sweep adds or redefines, in the order "
            "stored, with their Arrow types.", "",
            "| column | type | meaning |", "| --- | --- | --- |"]
    for name, kind in zip(table.column_names, table.schema.types, strict=True):
        if name == "schedule":
            text = "the per-layer table's `mapping`: " + layer_text["mapping"]
        elif name in point:
            text = point[name]
        elif name in memory:
            text = "the memory the point ran with: " + memory[name]
        elif name in per_layer:
            continue
        else:
            text = ""
        if not text:
            missing.append(name)
        out.append(f"| `{name}` | {kind} | {_cell(_markdown(text))} |")
    if missing:
        raise SystemExit(f"results schema: no description for column(s) {', '.join(missing)}: "
                         "document them in LayerResult's or DesignPoint's Attributes")
    return "\n".join(out) + "\n"


def _make_recipes(makefile: Path) -> dict[str, set[str]]:
    """The scripts (``benchmarks/x.py``, ``crisp_sim.demo``) each Makefile target runs."""
    recipes: dict[str, set[str]] = {}
    target = None
    for line in makefile.read_text().splitlines():
        if re.match(r"^[\w-]+:", line):
            target = line.split(":")[0]
        elif line.startswith("\t") and target:
            recipes.setdefault(target, set()).update(
                re.findall(r"benchmarks/\w+\.py|crisp_sim\.demo", line))
    return recipes


def provenance_page() -> str:
    """Every results file with its provenance line, and what ``make results`` takes."""
    rows, walls = [], {}
    for path in sorted((ROOT / "docs" / "results").glob("*.md")):
        match = publish.PROVENANCE.match(path.read_text())
        if match is None:
            raise SystemExit(f"docs/results/{path.name} has no provenance line")
        command = match["command"]
        script = next(iter(re.findall(r"benchmarks/\w+\.py|crisp_sim\.demo", command)), command)
        walls[path.name] = (script, float(match["wall"]))
        rows.append(f"| [`{path.name}`](../results.md) | `{command}` | {match['commit']} | "
                    f"{match['date']} | {match['machine']} | {float(match['wall']):,.0f} s |")
    recipes = _make_recipes(ROOT / "Makefile")
    quick = recipes.get("results-quick", set())
    every = quick | recipes.get("results", set())

    def total(scripts: set[str]) -> str:
        minutes = round(sum(wall for script, wall in walls.values() if script in scripts) / 60)
        return f"about {minutes} minute{'' if minutes == 1 else 's'}"

    return "\n".join([
        "# Results provenance", "",
        "Generated when the site is built from the first line of every file under "
        "`docs/results/`: the command that wrote it, the commit of the code, the date, the "
        "machine and the wall time of the run. A commit marked `-dirty` ran with uncommitted "
        "changes to the code.", "",
        f"`make results-quick` reruns the files of {', '.join(sorted(quick))}: "
        f"{total(quick)} of wall time as published. `make results` reruns every file: "
        f"{total(every)} as published (the machine above; the peers' virtual environments are "
        "created on the first run, which adds their installation).", "",
        "| file | command | commit | date | machine | wall time |",
        "| --- | --- | --- | --- | --- | --- |", *rows, ""])


_toml_names()
with mkdocs_gen_files.open("reference/results-provenance.md", "w") as page:
    page.write(provenance_page())
with mkdocs_gen_files.open("reference/results-schema.md", "w") as page:
    page.write(schema_page())
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_page())
with mkdocs_gen_files.open("reference/hardware-keys.md", "w") as page:
    page.write(keys_page())
