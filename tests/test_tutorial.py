"""docs/tutorial.md works as written: every ``bash`` and ``python`` block runs, in order, in an
empty folder; every file the page names under ``runs/tutorial/`` exists afterwards; and the
outputs show what the page says they show.

The folder gets a link to the repository's ``checkpoints/``, as the page runs from the root.
The blocks use the tutorial's tiny settings (tens of seconds of CPU each), so the test runs in CI.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from conftest import doc_blocks

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
TOML = re.compile(r"^```toml\n(.*?)^```$", re.M | re.S)
NAMED = re.compile(r"`(runs/tutorial/[^`\s]+)`")
HARDWARE = ROOT / "docs" / "hardware.md"
SCHEMES = ("hybrid", "block", "unstructured")


def named_outputs(text: str) -> list[str]:
    """Every ``runs/tutorial/...`` path the page names in inline code, ``<scheme>`` expanded."""
    paths = []
    for path in dict.fromkeys(NAMED.findall(text)):
        paths += [path.replace("<scheme>", s) for s in SCHEMES] if "<scheme>" in path else [path]
    return paths


def test_the_page_has_commands_and_names_its_outputs() -> None:
    text = TUTORIAL.read_text()
    languages = [language for language, _ in doc_blocks(text)]
    assert languages.count("bash") >= 5 and "python" in languages
    for command in ("crisp prune", "crisp eval", "accel-sim run", "accel-sim compare",
                    "accel-sim sweep"):
        assert any(command in code for _, code in doc_blocks(text)), command
    assert "runs/tutorial/hybrid/pruned.safetensors" in named_outputs(text)


def test_every_block_runs_in_order_and_writes_what_the_page_names(tmp_path: Path,
                                                                 run_doc_blocks) -> None:
    text = TUTORIAL.read_text()
    printed = run_doc_blocks(text, tmp_path)
    missing = [path for path in named_outputs(text) if not (tmp_path / path).exists()]
    assert not missing, f"the tutorial names files its commands did not write: {missing}"

    # What the page says the outputs show.
    assert "same masks as crisp prune: True" in "".join(printed)
    runs = tmp_path / "runs" / "tutorial"
    dense = pd.read_csv(runs / "dense.csv").set_index("layer").compute_cycles
    unstructured = pd.read_csv(runs / "unstructured" / "simulation.csv").set_index("layer")
    assert unstructured.compute_cycles.to_dict() == dense.to_dict()
    for scheme in SCHEMES:
        frame = pd.read_csv(runs / scheme / "simulation.csv").set_index("layer")
        assert frame.loc["stem.0", "scheme"] == "dense"


def test_the_hardware_pages_toml_examples_are_valid(tmp_path: Path) -> None:
    """docs/hardware.md's example hardware file and energy table load as the page says."""
    from accel_sim.hardware import load_energy, load_hardware

    examples = TOML.findall(HARDWARE.read_text())
    assert len(examples) == 2
    (tmp_path / "my-array.toml").write_text(examples[0])
    (tmp_path / "my-energy.toml").write_text(examples[1])
    hw = load_hardware(tmp_path / "my-array.toml")
    assert (hw.name, hw.array.rows, hw.array.cols, hw.sparse.nm) == ("my-64x64", 64, 64, (2, 4))
    assert hw.energy_override is None  # no [energy]: the defaults apply
    assert load_energy(tmp_path / "my-energy.toml").dram_pj_per_byte == 100.0
