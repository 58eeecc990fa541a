"""Synthetic networks follow the pruner's layer plan: one rule (`crisp.layer_plan`) for both."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
import torch

from accel_sim.cli import build_parser, main
from accel_sim.simulate import compare
from accel_sim.sources import load_layers
from accel_sim.sparsity import network_plan, synthetic, synthetic_network
from accel_sim.sweep import DesignPoint
from accel_sim.workload import GemmLayer
from crisp.config import PruneConfig
from crisp.errors import UserError
from crisp.layer_plan import MASK_SCHEMES
from crisp.models import build_model
from crisp.pruner import plan_layers

ZOO = ("resnet_small", "mobilenet_v2", "resnet50")  # mobilenet_v2: depthwise convs


@functools.cache
def _layers(name: str) -> list[GemmLayer]:
    return load_layers(name, weights=False)


def _density(layers: list[GemmLayer], descriptors: dict) -> float:
    kept = sum(descriptors[la.name].nonzeros(la) for la in layers)
    return kept / sum(la.K * la.N * la.groups for la in layers)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("scheme", MASK_SCHEMES)
@pytest.mark.parametrize(("exclude_first", "head_pattern"), [(True, None), (False, "hybrid")])
def test_the_synthetic_plan_is_the_pruners(name, scheme, exclude_first, head_pattern) -> None:
    with torch.device("meta"):
        model = build_model(name)
    ours = network_plan(_layers(name), scheme, exclude_first, head_pattern)
    assert ours == plan_layers(model, scheme, exclude_first, head_pattern)


def test_the_plan_defaults_are_the_prune_configs() -> None:
    defaults = inspect.signature(network_plan).parameters
    config = PruneConfig()
    assert defaults["exclude_first"].default == config.exclude_first
    assert defaults["head_pattern"].default == config.head_pattern


@pytest.mark.parametrize(("name", "scheme"), [
    ("resnet50", "unstructured"), ("resnet50", "block"), ("resnet50", "hybrid"),
    ("mobilenet_v2", "unstructured"), ("mobilenet_v2", "hybrid"), ("resnet_small", "hybrid"),
])
def test_a_synthetic_network_keeps_the_target_density(name: str, scheme: str, capsys) -> None:
    """Within rounding: unstructured masks are random draws; the block schemes keep whole
    blocks per block-row."""
    net, descriptors = synthetic_network(_layers(name), scheme, 0.25, 0, block=16)
    rounding = 0.002 if scheme == "unstructured" else 0.005
    assert _density(net, descriptors) == pytest.approx(0.25, abs=rounding)
    assert capsys.readouterr().err == ""  # within reach: no warning


def test_the_first_conv_and_depthwise_convs_are_dense_and_the_head_nm() -> None:
    layers = _layers("mobilenet_v2")
    _, descriptors = synthetic_network(layers, "hybrid", 0.25, 0, nm=(2, 4), block=16)
    first, head = layers[0], layers[-1]
    assert first.kind == "conv" and descriptors[first.name].scheme == "dense"
    depthwise = [la for la in layers if la.kind == "depthwise"]
    assert depthwise and all(descriptors[la.name].mask is None for la in depthwise)
    nm = descriptors[head.name]
    assert head.kind == "linear" and (nm.scheme, nm.nm, nm.block) == ("nm", (2, 4), None)
    assert nm.satisfies_nm(2, 4) and nm.nonzeros(head) == head.K * head.N // 2
    body = [la for la in layers[1:-1] if la.kind == "conv"]
    assert all(descriptors[la.name].scheme == "hybrid" for la in body)


@pytest.mark.parametrize(("scheme", "head"), [("block", "dense"), ("unstructured", "unstructured"),
                                              ("nm", "nm")])
def test_each_scheme_plans_its_head(scheme: str, head: str) -> None:
    layers = _layers("resnet_small")
    _, descriptors = synthetic_network(layers, scheme, 0.25, 0, block=8)
    assert descriptors[layers[0].name].scheme == "dense"
    assert descriptors[layers[-1].name].scheme == head
    if scheme == "nm":  # the nm scheme's pattern comes from the density, on every N:M layer
        assert {d.nm for d in list(descriptors.values())[1:]} == {(1, 4)}


def test_out_of_reach_keeps_the_least_and_warns(capsys) -> None:
    """MobileNetV2's dense classifier (block scheme) holds more than a quarter of its weights."""
    layers = _layers("mobilenet_v2")
    _, descriptors = synthetic_network(layers, "block", 0.25, 0, block=16)
    kept = _density(layers, descriptors)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"network keeps {kept:.4f}" in err and kept > 0.25
    body = [la for la in layers if descriptors[la.name].scheme == "block"]
    assert all(descriptors[la.name].block_bitmap.sum(axis=1).max() == 1 for la in body)


@pytest.mark.parametrize("scheme", ["dense", "unstructured", "nm", "block", "hybrid"])
def test_the_uniform_plan_draws_every_layer_at_the_density(scheme: str) -> None:
    layers = _layers("resnet_small")
    _, uniform = synthetic_network(layers, scheme, 0.25, 5, (1, 4), 8, plan="uniform")
    rng = np.random.default_rng(5)
    for layer in layers:
        old = synthetic(layer, scheme, 0.25, rng, (1, 4), 8)
        assert uniform[layer.name] == old
        assert np.array_equal(uniform[layer.name].mask, old.mask)  # None equals None


def test_channel_pruning_is_the_same_under_either_plan() -> None:
    layers = _layers("resnet_small")
    assert (synthetic_network(layers, "channel", 0.25, 0)[0]
            == synthetic_network(layers, "channel", 0.25, 0, plan="uniform")[0])


def test_an_unknown_plan_is_a_user_error(capsys) -> None:
    with pytest.raises(UserError, match="layer plan 'even': allowed pruner, uniform"):
        synthetic_network(_layers("resnet_small"), "hybrid", 0.25, 0, plan="even")
    with pytest.raises(UserError, match="layer plan"):
        DesignPoint("resnet_small", "hybrid", 0.25, 8, 8, plan="even")
    assert main(["compare", "resnet_small", "--schemes", "hybrid", "--plan", "even"]) == 2
    assert "layer plan 'even'" in capsys.readouterr().err


def test_every_plan_default_is_the_pruners() -> None:
    for function in (synthetic_network, compare):
        assert inspect.signature(function).parameters["plan"].default == "pruner"
    for command in (["run", "x.csv"], ["compare", "x.csv"], ["sweep"]):
        assert build_parser().parse_args(command).plan == "pruner"


def test_the_plan_is_part_of_a_design_point() -> None:
    pruner = DesignPoint("resnet_small", "hybrid", 0.25, 8, 8, block=8)
    uniform = DesignPoint("resnet_small", "hybrid", 0.25, 8, 8, block=8, plan="uniform")
    assert pruner.plan == "pruner" and pruner.fields()["plan"] == "pruner"
    assert pruner.key != uniform.key and pruner.group != uniform.group


@pytest.mark.parametrize(("plan", "line"), [("pruner", "the pruner's layer plan"),
                                            ("uniform", "every layer at the same density")])
def test_run_and_compare_say_which_plan_ran(plan: str, line: str, capsys) -> None:
    argv = ["resnet_small", "--array", "8x8", "--density", "0.25", "--block", "8", "--plan", plan]
    assert main(["compare", *argv, "--schemes", "hybrid"]) == 0
    assert main(["run", *argv, "--scheme", "hybrid"]) == 0
    header = [s for s in capsys.readouterr().out.splitlines() if "synthetic masks: " in s]
    assert len(header) == 2 and all(line in s for s in header)
