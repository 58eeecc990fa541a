"""Figures from tidy frames: every figure renders to PNG and PDF, says what it shows, keeps every
swept combination, and the numbers it shows."""

from __future__ import annotations

import hashlib
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from accel_sim import plots, sweep


def _tidy() -> pd.DataFrame:
    rows = []
    for model, scheme, (r, c), block, layer in itertools.product(
        ["netA", "netB"], ["dense", "channel", "hybrid"], [(8, 8), (16, 16), (8, 16)], [16, 32],
        ["l0", "l1"],
    ):
        scale = {"dense": 1.0, "channel": 0.6, "hybrid": 0.25}[scheme]
        cycles = 1000 * scale * 256 / (r * c) + block
        rows.append({
            "model": model, "scheme": scheme, "rows": r, "cols": c, "block": block, "layer": layer,
            "dataflow": "ws", "total_cycles": cycles, "latency_us": cycles / 1000,
            "energy_mac_pj": 10 * scale, "energy_dram_pj": 5.0, "energy_total_pj": 10 * scale + 5,
            "utilization": 0.5, "macs": 100,
        })
    return pd.DataFrame(rows)


def _swept() -> pd.DataFrame:
    """A sweep's shape: dense and channel at the first block size only, hybrid at two; two
    dataflows (os 2x slower) and two arrays; densities 1 (dense) and 0.25."""
    df = _tidy()
    df = df[(df.scheme == "hybrid") | (df.block == 16)]
    df = pd.concat([df.assign(dataflow="ws"),
                    df.assign(dataflow="os", latency_us=2 * df.latency_us)], ignore_index=True)
    df["density"] = np.where(df.scheme == "dense", 1.0, 0.25)
    return df[(df.rows == df.cols) & (df.model == "netA")].reset_index(drop=True)


def _captions(fig) -> list[str]:
    return [ax.get_xlabel() for ax in fig.axes]


def _title(fig) -> str:
    """The figure's title line, unwrapped."""
    return fig.get_suptitle().replace("\n", " ")


def test_network_totals_sum_layers_and_weight_utilization() -> None:
    df = _tidy()
    df.loc[df.layer == "l1", "macs"] = 300
    df.loc[df.layer == "l1", "utilization"] = 1.0
    totals = plots.network_totals(df, ["model", "scheme", "rows", "cols", "block"])
    assert len(totals) == 2 * 3 * 3 * 2
    assert np.allclose(totals.utilization, (0.5 * 100 + 1.0 * 300) / 400)
    one = df[(df.model == "netA") & (df.scheme == "dense") & (df.rows == 8) & (df.cols == 8)
             & (df.block == 16)]
    row = totals[(totals.model == "netA") & (totals.scheme == "dense") & (totals.rows == 8)
                 & (totals.cols == 8) & (totals.block == 16)]
    assert row.total_cycles.item() == one.total_cycles.sum()


def test_normalised_bars_say_which_way_hybrid_compares() -> None:
    df = _tidy()
    df = df[(df.rows == 8) & (df.cols == 8) & (df.block == 16)]
    fig = plots.normalised_bars(df, "latency_us")
    # Hybrid latency per layer 0.25*1000*4+16 = 1016 vs dense 4016: 3.95x; channel 2416: 2.38x.
    assert _captions(fig) == ["netA: hybrid 4.0x faster than dense, 2.4x faster than channel\n"
                              "netB: hybrid 4.0x faster than dense, 2.4x faster than channel"]
    heights = sorted({round(p.get_height(), 3) for p in fig.axes[0].patches})
    assert heights[-1] == 1.0
    energy = plots.normalised_bars(df[df.model == "netA"], "energy_total_pj")
    # hybrid 7.5 pJ against dense 15 and channel 11 per layer; one model: no model prefix.
    assert _captions(energy) == ["hybrid 2.0x less energy than dense, 1.47x less energy than "
                                 "channel"]


@pytest.mark.parametrize(("ratio", "latency", "text"), [
    (1.3, True, "1.30x faster than channel"), (4.04, True, "4.0x faster than channel"),
    (1 / 1.04, True, "1.04x slower than channel"), (1.001, True, "as fast as channel"),
    (3.6, False, "3.6x less energy than channel"), (0.5, False, "2.0x more energy than channel"),
    (1.0, False, "the same energy as channel"),
])
def test_ratio_labels_run_one_way(ratio: float, latency: bool, text: str) -> None:
    assert plots.versus(ratio, "channel", latency) == text


def test_titles_name_the_context_and_labels_the_units() -> None:
    df = _tidy()
    one = df[(df.rows == 8) & (df.cols == 8) & (df.block == 16) & (df.model == "netA")]
    one = one.assign(hw="edge-32x32", density=np.where(one.scheme == "dense", 1.0, 0.25))
    context = "glyph100, 10 user classes"
    bars = plots.normalised_bars(one, "latency_us", context)
    title = _title(bars)
    assert title == ("latency per inference, normalised to dense: netA, edge-32x32, 8x8 array, WS, "
                     "B=16, density 0.25; glyph100, 10 user classes")
    # What the context already says is not said twice.
    again = plots.normalised_bars(one, "latency_us", "netA on glyph100, 8x8 array")
    assert _title(again).endswith(
        "dense: edge-32x32, WS, B=16, density 0.25; netA on glyph100, 8x8 array")
    breakdown = plots.energy_breakdown(one, context)
    assert breakdown.axes[0].get_ylabel() == "energy per inference (µJ)"
    assert context in _title(breakdown)
    lines = plots.latency_vs_array(df[(df.block == 16) & (df.model == "netA")], context)
    assert lines.axes[0].get_ylabel() == "latency per inference (µs)"
    assert "netA" in _title(lines) and "WS" in _title(lines)
    acc = pd.DataFrame({"scheme": ["dense", "hybrid"], "classes": [10, 10], "density": [1, 0.25],
                        "accuracy": [90.0, 89.0], "latency_us": [10.0, 4.0]})
    pareto = plots.accuracy_pareto(acc, "resnet_small on glyph100")
    assert pareto.axes[1].get_xlabel() == "latency per inference (µs)"
    assert _title(pareto).endswith("resnet_small on glyph100")
    for fig in (bars, breakdown, lines, pareto):
        texts = [_title(fig), *(t for ax in fig.axes for t in (ax.get_xlabel(),
                                                                       ax.get_ylabel()))]
        assert not any(unit in t for t in texts for unit in ("(us)", "(uJ)"))


def test_every_figure_saves_png_and_pdf(tmp_path) -> None:
    df = _tidy()
    acc = pd.DataFrame({
        "scheme": ["dense", "hybrid", "hybrid", "channel"], "classes": [10, 10, 10, 10],
        "density": [1.0, 0.25, 0.1, 0.3], "accuracy": [90.0, 89.0, 80.0, 70.0],
        "latency_us": [10.0, 4.0, 2.0, 5.0],
    })
    figures = {
        "bars": plots.normalised_bars(df[df.block == 16], "energy_total_pj"),
        "breakdown": plots.energy_breakdown(df[(df.rows == 8) & (df.block == 16)]),
        "arrays": plots.latency_vs_array(df[df.block == 16]),
        "heat": plots.utilization_heatmap(df[df.block == 16]),
        "codesign": plots.codesign_map(df[df.model == "netA"]),
        "pareto": plots.accuracy_pareto(acc),
        "roofline": plots.roofline(df.assign(effective_macs=df.macs, dram_bytes=50), 64, 16),
    }
    for name, fig in figures.items():
        assert _title(fig), name
        paths = plots.save(fig, tmp_path / name)
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        assert all(p.stat().st_size > 1000 for p in paths)
    only = plots.save(plots.roofline(df.assign(effective_macs=df.macs, dram_bytes=50), 64, 16),
                      tmp_path / "png_only", formats=("png",))
    assert only == [tmp_path / "png_only.png"] and not (tmp_path / "png_only.pdf").exists()


def test_panels_keep_every_array_dataflow_and_block_with_dense_in_each() -> None:
    df = _swept()
    parts = plots.panels(df, ("array", "dataflow", "block", "density"))
    assert [label for label, _ in parts] == [
        f"{a}x{a} array, {f}, B={b}" for a in (8, 16) for f in ("OS", "WS") for b in (16, 32)]
    for label, part in parts:
        assert set(part.scheme) == {"dense", "channel", "hybrid"}, label
        assert part[part.scheme == "hybrid"].block.nunique() == 1
    # Every row is drawn somewhere; only dense and channel (block-independent) appear twice.
    drawn = pd.concat([part for _, part in parts])
    assert len(drawn.drop_duplicates()) == len(df)


def test_sweep_figures_draw_a_panel_per_dataflow_and_array(tmp_path, monkeypatch) -> None:
    df = _swept()
    drawn = {}
    save = plots.save

    def keep(fig, stem, formats=("png", "pdf")):
        drawn[stem.name] = [ax.get_title() for ax in fig.axes if ax.get_title()]
        return save(fig, stem, formats)

    monkeypatch.setattr(plots, "save", keep)
    paths = plots.sweep_figures(df, tmp_path, "test context", formats=("png",))
    assert {p.name for p in paths} == {
        "latency.png", "energy.png", "energy_breakdown.png", "latency_vs_array.png",
        "utilization_dense.png", "utilization_hybrid.png", "codesign_block_array.png"}
    both = [f"{a}x{a} array, {f}, B={b}" for a in (8, 16) for f in ("OS", "WS") for b in (16, 32)]
    assert drawn["latency"] == drawn["energy"] == drawn["energy_breakdown"] == both
    assert drawn["latency_vs_array"] == [f"{f}, B={b}" for f in ("OS", "WS") for b in (16, 32)]
    assert drawn["utilization_dense"] == ["OS", "WS"]
    assert drawn["codesign_block_array"] == ["OS", "WS"]


def test_panels_show_each_dataflows_own_numbers() -> None:
    df = _swept()
    df = df[(df.rows == 8) & (df.block == 16)]
    fig = plots.latency_vs_array(df)  # one point per scheme and panel: no sum over dataflows
    latency = {ax.get_title(): {line.get_label(): line.get_ydata()[0] for line in ax.lines
                                if not line.get_label().startswith("_")} for ax in fig.axes}
    dense = df[(df.scheme == "dense") & (df.dataflow == "ws")].latency_us.sum()
    assert latency["WS"]["dense"] == pytest.approx(dense)
    assert latency["OS"]["dense"] == pytest.approx(2 * dense)


def test_rows_a_figure_would_add_up_are_refused() -> None:
    df = _tidy()
    df = df[(df.rows == 8) & (df.cols == 8) & (df.block == 16)]
    twice = pd.concat([df.assign(seed=0), df.assign(seed=1)])
    with pytest.raises(ValueError, match="no panel separates"):
        plots.normalised_bars(twice)


def test_pareto_front_drops_dominated_points() -> None:
    df = pd.DataFrame({"latency_us": [1, 2, 3, 4], "accuracy": [50, 40, 70, 60]})
    front = plots.pareto_front(df, "latency_us", "accuracy")
    assert front.latency_us.tolist() == [1, 3]


def test_roofline_points_sit_under_both_roofs() -> None:
    df = pd.DataFrame({"scheme": ["dense", "hybrid", "hybrid"], "layer": ["a", "a", "total"],
                       "effective_macs": [1000, 500, 500], "dram_bytes": [100, 10, 10],
                       "total_cycles": [200, 50, 50]})
    fig = plots.roofline(df, 64, 16, "netA, 8x8 array")
    points = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    np.testing.assert_allclose(sorted(map(tuple, points)), [(10, 5), (50, 10)])  # total dropped
    roof = fig.axes[0].lines[0].get_ydata()
    assert roof.max() == 64
    assert _title(fig).endswith("netA, 8x8 array")


def test_paper_figures_write_one_figure_per_distinct_density(tmp_path, monkeypatch) -> None:
    """5 and 10 user classes share density 0.40: one figure for both, named by both."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import paper_figures  # as the benchmark runs: beside the others it imports

    from crisp_sim.publish import Results

    def in_process(points, out, scheduler=None):
        groups: dict[tuple, list] = {}
        for point in points:
            groups.setdefault(point.group, []).append(point)
        return pa.concat_tables(sweep.evaluate_group(g) for g in groups.values()).to_pandas()

    titles = {}
    save = plots.save

    def keep(fig, stem, formats=("png", "pdf")):
        titles[stem.name] = _title(fig)
        return save(fig, stem, formats)

    assert paper_figures.class_groups() == {0.3: (1,), 0.4: (5, 10)}
    monkeypatch.setattr(paper_figures, "MODELS", ("resnet_small",))
    monkeypatch.setattr(paper_figures, "run_sweep", in_process)
    monkeypatch.setattr(plots, "save", keep)
    results = Results("paper_figures", "python benchmarks/paper_figures.py", publish=False,
                      local=tmp_path / "figures")
    paper_figures.scheme_figures(tmp_path / "runs", results, None)
    assert "| 5, 10 | 0.40 | resnet_small |" in results.parts[-1]
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert [p.stem for p in pngs] == ["energy_1cls", "energy_5_10cls", "energy_breakdown",
                                      "latency_1cls", "latency_5_10cls"]
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in pngs}) == len(pngs)
    assert "5 and 10 user classes (density 0.40)" in titles["latency_5_10cls"]
    assert "1 user class (density 0.30)" in titles["energy_1cls"]
    assert "B=32" in titles["latency_1cls"]  # the published block size, given explicitly


def test_demo_figures_name_model_data_set_and_user_classes(tmp_path, monkeypatch) -> None:
    from crisp_sim import demo

    df = _tidy()
    layers = df[(df.rows == 8) & (df.cols == 8) & (df.block == 16) & (df.model == "netA")]
    layers = layers.assign(model=demo.MODEL, pes=64)
    summary = pd.DataFrame({"scheme": ["dense", "channel", "hybrid"], "classes": 10,
                            "density": [1.0, 0.3, 0.25], "top1": [99.0, 90.0, 95.0],
                            "latency_us": [4.0, 2.4, 1.0]})
    titles = {}
    save = plots.save

    def keep(fig, stem, formats=("png", "pdf")):
        titles[stem.name] = _title(fig)
        return save(fig, stem, formats)

    monkeypatch.setattr(plots, "save", keep)
    demo.write_figures(layers, summary, tmp_path)
    assert set(titles) == {"latency", "energy", "energy_breakdown", "accuracy_vs_latency"}
    for name, title in titles.items():
        assert title.endswith("resnet_small on glyph100, 10 user classes, 64-PE array"), name
    demo.write_figures(layers, summary, tmp_path, "the table's title line")
    assert all(title.endswith("the table's title line") for title in titles.values())
