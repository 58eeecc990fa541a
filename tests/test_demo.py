"""The main job end to end at a tiny budget: every scheme pruned, compressed, simulated, plotted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crisp_sim import demo


def test_demo_prunes_simulates_and_plots_every_scheme(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    status = demo.main(["--out", str(out), "--classes", "2", "--n-per-class", "8",
                        "--epochs", "0", "--density", "0.25", "--step", "0.5"])
    assert status == 0
    summary = pd.read_csv(out / "summary.csv").set_index("scheme")
    assert list(summary.index) == list(demo.SCHEMES)
    assert summary.loc["dense", "density"] == 1.0
    for scheme in ("hybrid", "block", "unstructured", "channel"):
        assert abs(summary.loc[scheme, "density"] - 0.25) < 0.03
    # Structured sparsity saves cycles on the simulated array; unstructured saves none.
    assert summary.loc["hybrid", "compute_cycles"] < summary.loc["dense", "compute_cycles"]
    assert summary.loc["unstructured", "compute_cycles"] == summary.loc["dense", "compute_cycles"]
    assert summary.loc["dense", "speedup_vs_dense"] == 1.0
    for scheme in demo.SCHEMES:
        assert (out / scheme / "pruned.safetensors").is_file()
        assert (out / scheme / "simulation.csv").is_file()
    assert {p.name for p in (out / "figures").glob("*.png")} == {
        "latency.png", "energy.png", "energy_breakdown.png", "accuracy_vs_latency.png"}
