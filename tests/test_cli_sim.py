"""``accel-sim run`` and ``accel-sim compare`` end to end on a small topology file."""

from __future__ import annotations

from importlib import metadata

import pandas as pd
import pytest

from accel_sim import cli
from accel_sim.cli import build_parser, main
from crisp.pattern_core import DEFAULT_BLOCK


def _topology(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text("Layer, M, N, K,\nfc1, 64, 48, 96,\nfc2, 64, 10, 48,\n")
    return str(path)


def test_run_writes_csv_with_totals(tmp_path, capsys) -> None:
    out = tmp_path / "report.csv"
    assert main(["run", _topology(tmp_path), "--array", "16x16", "--dataflow", "os",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.layer) == ["fc1", "fc2", "total"]
    assert frame.is_total.tolist() == [False, False, True]
    assert {"compute_cycles", "stall_cycles", "energy_total_pj", "latency_us",
            "dram_metadata_bytes"} <= set(frame.columns)
    printed = capsys.readouterr().out.splitlines()
    total = frame.total_cycles.iloc[-1]
    assert printed[-2].split()[0] == "total" and f"{total:,}" in printed[-2]  # then "wrote"


def test_compare_writes_parquet(tmp_path, capsys) -> None:
    out = tmp_path / "cmp.parquet"
    assert main(["compare", _topology(tmp_path), "--schemes", "nm,hybrid", "--density", "0.25",
                 "--block", "8", "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert set(frame.scheme) == {"dense", "nm", "hybrid"}
    assert "speedup_vs_dense" in capsys.readouterr().out


def test_user_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["run", _topology(tmp_path), "--dataflow", "xs"]) == 2
    assert "allowed ws, os, is" in capsys.readouterr().err
    assert main(["run", _topology(tmp_path), "--out", str(tmp_path / "r.txt")]) == 2
    assert main(["compare", _topology(tmp_path), "--schemes", "dense,foo"]) == 2
    capsys.readouterr()
    assert main(["run", _topology(tmp_path), "--weight-buffers", "3"]) == 2
    err = capsys.readouterr().err
    assert "--weight-buffers: '3': allowed an integer in 1..2" in err and err.count("\n") == 1


@pytest.mark.parametrize(("model", "side", "reason"), [
    ("vit_small", 64, "Attempting to broadcast"),  # its position embedding fixes the tokens
    ("vit_b_16", 256, "Wrong image height"),  # torchvision's assert on the image size
])
def test_a_resolution_a_transformer_cannot_take_is_one_line(model: str, side: int, reason: str,
                                                            capfd) -> None:
    assert main(["layers", model, "--resolution", str(side)]) == 2
    err = capfd.readouterr().err  # file-descriptor level: export's own logs would show here
    assert err.count("\n") == 1 and f"cannot run on a 3x{side}x{side} input" in err
    assert reason in err


def test_weight_buffers_flag_and_preset(tmp_path, capsys) -> None:
    """Two weight registers: fewer cycles on the same layers, from the flag or the preset."""
    def total(*flags: str) -> int:
        out = tmp_path / f"r{len(flags)}{flags[-1] if flags else ''}.csv"
        assert main(["run", _topology(tmp_path), *flags, "--out", str(out)]) == 0
        return int(pd.read_csv(out).total_cycles.sum())
    one, two, preset = total(), total("--weight-buffers", "2"), total("--hw", "edge-32x32-db")
    assert two == preset < one


def test_sweep_writes_tidy_results_and_figures(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = ["sweep", "--models", "resnet_small", "--schemes", "hybrid", "--densities", "0.25",
            "--arrays", "8x8,16x16", "--blocks", "8,16", "--workers", "1", "--out", str(out)]
    assert main(argv) == 0
    frame = pd.read_parquet(out / "results.parquet")
    # dense (added) once per array, hybrid per array and block size: 2 + 4 points.
    points = frame[["scheme", "rows", "block"]].drop_duplicates()
    assert len(points) == 6 and set(points.scheme) == {"dense", "hybrid"}
    assert {p.stem for p in (out / "figures").glob("*.png")} == {
        "latency", "energy", "energy_breakdown", "latency_vs_array", "utilization_dense",
        "utilization_hybrid", "codesign_block_array"}
    assert main([*argv[:-2], "--arrays", "8y8", "--out", str(out)]) == 2
    assert "ROWSxCOLS" in capsys.readouterr().err


def _source_help(command: str) -> str:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    (action,) = [a for a in sub._actions if a.dest == "source"]
    return action.help


def test_each_subcommand_help_offers_only_the_sources_it_takes() -> None:
    compare = _source_help("compare")
    assert ".safetensors" not in compare
    assert "zoo model name" in compare and "topology .csv" in compare
    for command in ("run", "layers"):
        assert "pruned .safetensors" in _source_help(command)


def test_block_defaults_to_16_everywhere() -> None:
    assert DEFAULT_BLOCK == 16
    parser = build_parser()
    assert parser.parse_args(["run", "net.csv"]).block == DEFAULT_BLOCK
    assert parser.parse_args(["compare", "net.csv"]).block == DEFAULT_BLOCK
    assert parser.parse_args(["sweep"]).blocks == str(DEFAULT_BLOCK)


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"accel-sim {metadata.version('crisp-sim')}\n"


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command started its work before checking --out")


def test_out_is_checked_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    for name in ("load_layers", "load_workload", "simulate", "compare", "grid", "run_sweep"):
        monkeypatch.setattr(cli, name, _no_work)
    (tmp_path / "file").write_text("a file")
    (tmp_path / "d.csv").mkdir()
    topology = _topology(tmp_path)
    for argv, message in [
        (["run", topology, "--out", str(tmp_path / "file" / "r.csv")],
         f"lies under {tmp_path / 'file'}, which is a file"),
        (["compare", topology, "--out", str(tmp_path / "d.csv")],
         f"output {tmp_path / 'd.csv'} is a directory"),
        (["layers", topology, "--out", str(tmp_path / "t.txt")],
         "unknown extension '.txt': allowed .csv, .parquet"),
        (["sweep", "--out", str(tmp_path / "file")],
         f"output folder {tmp_path / 'file'} is a file"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err


def test_layers_writes_csv_or_parquet(tmp_path) -> None:
    for name, read in (("l.csv", pd.read_csv), ("l.parquet", pd.read_parquet)):
        assert main(["layers", _topology(tmp_path), "--out", str(tmp_path / name)]) == 0
        assert list(read(tmp_path / name).layer) == ["fc1", "fc2"]
