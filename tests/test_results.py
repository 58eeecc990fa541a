"""The published results: every file names a command that exists, the simulator's deterministic
tables regenerate digit for digit, and the pages show only numbers that come from those files."""

from __future__ import annotations

import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest

from crisp_sim import publish

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
BENCHMARKS = ROOT / "benchmarks"
FILES = sorted(RESULTS.glob("*.md"))
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import their siblings by name


def _benchmark(name: str):
    return importlib.import_module(name)


def _committed(name: str) -> str:
    path = RESULTS / f"{name}.md"
    assert path.is_file(), f"{path} is missing: run `make results`"
    return path.read_text()


def _parser(command: list[str]):
    """The argparse parser of a provenance line's command, or a message why there is none."""
    if command[:3] == ["python", "-m", "crisp_sim.demo"]:
        from crisp_sim.demo import build_parser

        return build_parser(), command[3:]
    if len(command) < 2 or command[0] != "python":
        return f"`{shlex.join(command)}` is not `python SCRIPT ...`", []
    script = ROOT / command[1]
    if not script.is_file():
        return f"its command's script {command[1]} does not exist", []
    module = _benchmark(script.stem)
    if not hasattr(module, "build_parser"):
        return f"{command[1]} has no build_parser()", []
    return module.build_parser(), command[2:]


def test_results_exist() -> None:
    assert FILES, "docs/results holds no results: run `make results`"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_results_file_names_a_command_that_exists(path: Path) -> None:
    match = publish.PROVENANCE.match(path.read_text())
    assert match, f"{path.name}: no provenance line at the top (see crisp_sim/publish.py)"
    parser, args = _parser(shlex.split(match["command"]))
    assert not isinstance(parser, str), f"{path.name}: {parser}"
    try:
        parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{path.name}: its command `{match['command']}` is no longer accepted")


def test_a_results_file_whose_command_is_gone_fails(tmp_path: Path) -> None:
    gone = "python benchmarks/no_such_benchmark.py --publish"
    assert isinstance(_parser(shlex.split(gone))[0], str)
    renamed_flag = ["python", "benchmarks/sparse_gains.py", "--no-such-flag"]
    parser, args = _parser(renamed_flag)
    with pytest.raises(SystemExit):
        parser.parse_args(args)


def test_provenance_line_round_trips() -> None:
    line = publish.provenance("python benchmarks/sparse_gains.py --publish", 12.34)
    match = publish.PROVENANCE.match(line)
    assert match and match["command"] == "python benchmarks/sparse_gains.py --publish"
    assert match["wall"] == "12.3" and "cores)" in match["machine"]


def test_results_writer_publishes_atomically_and_only_when_asked(tmp_path: Path,
                                                                 capsys) -> None:
    quiet = publish.Results("x", "python benchmarks/x.py", publish=False, folder=tmp_path)
    quiet.add("| a |")
    assert quiet.write() is None and not list(tmp_path.iterdir())
    loud = publish.Results("x", "python benchmarks/x.py --publish", True, folder=tmp_path)
    loud.add("first")
    loud.add("| a |\n| --- |")
    text = loud.write().read_text()
    assert publish.PROVENANCE.match(text)
    assert text.endswith("first\n\n| a |\n| --- |\n")
    assert [p.name for p in tmp_path.iterdir()] == ["x.md"]  # no temporary file left


def test_readme_includes_are_the_results_files(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = list(publish.INCLUDE.finditer(readme))
    assert blocks, "README.md includes no results file (the headline table)"
    for block in blocks:
        assert block["body"] == (ROOT / block["path"]).read_text(), (
            f"README.md's copy of {block['path']} is stale: run the benchmark with --publish")
    copy = tmp_path / "README.md"
    copy.write_text(readme.replace(blocks[0]["body"], "stale\n"))
    assert publish.refresh_readme(copy) and copy.read_text() == readme


# The simulator's deterministic tables, regenerated: a change that moves a published number
# cannot land without its results file.

def test_sparse_gains_table_regenerates() -> None:
    sparse_gains = _benchmark("sparse_gains")
    committed = _committed("sparse_gains")
    for model in sparse_gains.MODELS.split(","):
        table = sparse_gains.table(model)
        assert table in committed, f"sparse_gains.md: {model}'s table differs from the code's"


def test_mapping_gains_tables_regenerate() -> None:
    mapping_gains = _benchmark("mapping_gains")
    command = publish.PROVENANCE.match(_committed("mapping_gains"))["command"]
    args = mapping_gains.build_parser().parse_args(shlex.split(command)[2:])
    totals, _ = mapping_gains.run(args.model, args.density)
    assert mapping_gains.tables(totals) in _committed("mapping_gains")


def test_scalesim_golden_cycles_regenerate() -> None:
    scalesim = _benchmark("scalesim_crosscheck")
    from accel_sim.hardware import parse_array
    from accel_sim.sources import load_layers

    text = _committed("scalesim_crosscheck")
    rows = re.findall(r"^\| (\d+x\d+) \| (ws|os|is) \| (\S+) \| \d+ \| \d+ \| \d+ \| ([\d,]+) \| "
                      r"([\d,]+) \| (\S+) \|$", text, re.M)
    assert rows, "scalesim_crosscheck.md holds no per-layer table"
    layers = {la.name: la for la in load_layers("resnet50")}
    kib = {(a, d): int(k) for a, d, k in
           re.findall(r"^\| (\d+x\d+) \| (ws|os|is) \| (\d+) \|", text, re.M)}
    for array, dataflow, name, theirs, ours, equal in rows:
        r, c = parse_array(array)
        cycles = scalesim.our_cycles([layers[name]], r, c, kib[array, dataflow], dataflow)[name]
        assert f"{cycles:,}" == ours, f"{array} {dataflow} {name}: ours {cycles:,}, file {ours}"
        assert theirs == ours and equal == "yes", f"{array} {dataflow} {name}: not SCALE-Sim's"


# What a reader sees.

PAGES = sorted(p for p in DOCS.glob("*.md"))
HISTORY = re.compile(r"(this|previous|last|next) session|session \d+|\bissue \d+|previous run|"
                     r"before this change|\bbefore/after\b", re.I)
# A measured quantity typed into prose: a number followed by a unit of time, energy or traffic,
# or a speed-up. Constants of the code (64 KiB, 16 B/cycle, 2:4, B = 16) are not measurements.
MEASURED = re.compile(r"\d[\d,.]*\s?(µs|us|ms|µJ|uJ|mJ|MB|GB|GMACs|x faster|x slower|"
                      r"x less energy)\b")


def _prose(text: str) -> str:
    """A page without its code blocks and snippet includes."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: at most 200"


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES],
                         ids=["README.md", *[p.name for p in PAGES]])
def test_user_facing_text_has_no_development_history(path: Path) -> None:
    if path.name == "changelog.md":
        return
    hits = [line for line in path.read_text().splitlines() if HISTORY.search(line)]
    assert not hits, f"{path.name} reads as a development log: {hits[0]!r}"


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_pages_type_no_measured_numbers(path: Path) -> None:
    text = _prose(path.read_text())
    hits = [m.group(0) for m in MEASURED.finditer(text)]
    assert not hits, (f"{path.name} types measured numbers into prose ({hits[:3]}): "
                      "include them from docs/results/ instead")


def test_every_published_figure_is_shown_and_every_shown_figure_exists() -> None:
    shown = set()
    for page in [*PAGES, ROOT / "README.md"]:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text()):
            base = ROOT if page.name == "README.md" else DOCS
            path = (base / target).resolve()
            assert path.is_file(), f"{page.name} shows {target}, which does not exist"
            shown.add(path)
    published = {p.resolve() for p in (RESULTS / "figures").glob("*.png")}
    unshown = sorted(p.name for p in published - shown)
    assert not unshown, f"figures published but on no page: {unshown}"


def test_figures_go_to_the_results_folder_or_the_local_one(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    published = publish.Results("x", "cmd", publish=True, folder=tmp_path / "results",
                                local=tmp_path / "local")
    assert published.figure(plt.figure(), "f") == tmp_path / "results" / "figures" / "f.png"
    local = publish.Results("x", "cmd", publish=False, folder=tmp_path / "results",
                            local=tmp_path / "local")
    assert local.figure(plt.figure(), "g") == tmp_path / "local" / "g.png"
    assert (tmp_path / "local" / "g.pdf").is_file()
    nowhere = publish.Results("x", "cmd", publish=False, folder=tmp_path / "results")
    assert nowhere.figure(plt.figure(), "h") is None
    assert sorted(p.name for p in tmp_path.rglob("*.*")) == ["f.png", "g.pdf", "g.png"]
    assert set(plt.get_fignums()) == before  # every figure of this test closed


def test_make_docs_without_the_docs_extra_names_it() -> None:
    """An interpreter that cannot import MkDocs (here: this one without its site-packages)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make")
    stamp = "build/no-such-stamp"  # make must not set anything up: -o marks it as made
    done = subprocess.run(["make", "-s", "docs", f"PY={sys.executable} -S", f"STAMP={stamp}",
                           "-o", stamp], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert "the docs need the 'docs' extra: pip install -e '.[docs]'" in done.stderr
