"""The public Python API: the packages' exports, one default block size, per-layer frames that add
up, ``--version`` and progress bars that stay off where they would only clutter a log."""

from __future__ import annotations

import inspect
import io
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import accel_sim
import crisp
from accel_sim.hardware import build_hardware
from accel_sim.simulate import simulate
from accel_sim.workload import GemmLayer
from crisp.console import progress_bar
from crisp.pattern_core import DEFAULT_BLOCK

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("package", "required"), [
    (accel_sim, {"simulate", "compare", "Report", "LayerResult", "HardwareSpec", "load_hardware",
                 "build_hardware", "load_layers", "load_workload", "synthetic_network",
                 "GemmLayer", "run_sweep", "grid"}),
    (crisp, {"prune", "PruneConfig", "PruneResult", "build_model", "load_dataset", "user_subset",
             "nm_mask", "block_mask", "hybrid_mask"}),
])
def test_star_import_gives_every_exported_name(package, required: set[str]) -> None:
    assert required <= set(package.__all__)
    assert len(set(package.__all__)) == len(package.__all__)
    namespace: dict[str, object] = {}
    exec(f"from {package.__name__} import *", namespace)  # the statement under test
    assert set(package.__all__) <= set(namespace)
    for name in package.__all__:
        value = namespace[name]
        assert value is getattr(package, name) and callable(value), name
        assert value.__module__.startswith(package.__name__ + "."), name
        assert name in dir(package)
    assert package.__doc__.count("\n    ") >= 5  # the usage example
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        package.nonexistent  # noqa: B018


def test_simulate_stays_the_function_beside_its_module() -> None:
    import accel_sim.simulate as module  # noqa: F401 - the submodule's import must not win

    assert accel_sim.simulate is simulate
    assert sys.modules["accel_sim.simulate"].simulate is simulate


def test_every_block_default_is_the_shared_one() -> None:
    from accel_sim import sparsity, sweep
    from accel_sim.simulate import compare
    from crisp.config import PruneConfig

    assert DEFAULT_BLOCK == 16
    for function in (sparsity.synthetic, sparsity.synthetic_network, compare):
        assert inspect.signature(function).parameters["block"].default == DEFAULT_BLOCK
    assert inspect.signature(sweep.grid).parameters["blocks"].default == (DEFAULT_BLOCK,)
    assert sweep.DesignPoint("m", "hybrid", 0.5, 8, 8).block == DEFAULT_BLOCK
    assert PruneConfig().block == DEFAULT_BLOCK


def test_per_layer_frame_adds_up_to_the_totals() -> None:
    layers = [GemmLayer(f"l{i}", "conv", P=20 + i, K=30, N=10 + i) for i in range(3)]
    report = simulate(layers, build_hardware({}))
    frame = report.to_frame()
    assert list(frame.layer) == ["l0", "l1", "l2"] and "is_total" not in frame
    assert frame.latency_us.sum() == pytest.approx(report.totals.latency_us)
    assert frame.total_cycles.sum() == report.totals.total_cycles
    assert report.frame.equals(frame)
    with_total = report.to_frame(totals=True)
    assert with_total.layer.tolist() == ["l0", "l1", "l2", "total"]
    assert with_total.is_total.tolist() == [False, False, False, True]
    assert with_total[~with_total.is_total].drop(columns="is_total").equals(frame)


def test_demo_version(capsys) -> None:
    from crisp_sim import demo

    with pytest.raises(SystemExit) as stop:
        demo.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.split()[-1] == metadata.version("crisp-sim")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_show_only_on_a_terminal_when_asked(capsys, monkeypatch) -> None:
    """capsys's stderr is no terminal, like a log redirected to a file. (CI sets TQDM_DISABLE,
    which would hide the terminal's bar too: this test is about the terminal.)"""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_bar(range(2), True).disable
    assert not progress_bar(range(2), True, file=_Terminal()).disable
    assert progress_bar(range(2), False, file=_Terminal()).disable
    assert capsys.readouterr().err == ""


def test_simulate_asks_for_its_bar_through_the_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    from crisp import console

    made = []

    class Spy(console.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(console, "tqdm", Spy)
    simulate([GemmLayer("l0", "conv", P=4, K=4, N=4)], build_hardware({}), progress=True)
    [bar] = made
    assert bar.disable  # stderr (captured by pytest) is no terminal


@pytest.mark.parametrize(("value", "progress", "disabled"), [
    (None, True, False), ("1", True, True), (None, False, True), ("1", False, True),
])
def test_tqdm_disable_turns_bars_off(value: str | None, progress: bool, disabled: bool) -> None:
    """``TQDM_DISABLE`` decides for a bar asked for on a terminal (tqdm reads it at import)."""
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    if value is not None:
        env["TQDM_DISABLE"] = value
    script = ("import io\nfrom crisp.console import progress_bar\n"
              "class Terminal(io.StringIO):\n    def isatty(self): return True\n"
              f"print(bool(progress_bar(range(2), {progress}, file=Terminal()).disable))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=120, check=True)
    assert done.stdout.strip() == str(disabled)
