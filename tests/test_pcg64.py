"""The float32 scores of synthetic masks: numpy's PCG64 stream, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel_sim import sparsity
from accel_sim.pcg64 import random_f32
from accel_sim.workload import GemmLayer

# draws before the one under test: float32 counts (odd ones leave numpy's upper half buffered)
# and float64 counts (whole words, which do not touch that buffer), in turn
draws = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3)), max_size=3)


def _advance(rng: np.random.Generator, before: list[tuple[int, int]]) -> None:
    for singles, doubles in before:
        rng.random(singles, dtype=np.float32)
        rng.random(doubles)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**63), before=draws, shape=st.tuples(st.integers(0, 9),
                                                                  st.integers(0, 37)))
def test_scores_and_state_equal_numpys(seed: int, before: list, shape: tuple[int, int]) -> None:
    ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    _advance(ours, before)
    _advance(numpys, before)
    got = random_f32(ours, np.empty(shape, np.float32))
    assert np.array_equal(got, numpys.random(shape, dtype=np.float32))
    assert ours.bit_generator.state == numpys.bit_generator.state
    assert np.array_equal(ours.random(5, dtype=np.float32), numpys.random(5, dtype=np.float32))
    assert ours.random() == numpys.random()


def test_a_long_stream_and_other_generators() -> None:
    ours, numpys = np.random.default_rng(7), np.random.default_rng(7)
    assert np.array_equal(random_f32(ours, np.empty(100_001, np.float32)),
                          numpys.random(100_001, dtype=np.float32))
    assert ours.bit_generator.state == numpys.bit_generator.state
    philox = np.random.Generator(np.random.Philox(3))  # not PCG64: numpy draws
    assert np.array_equal(random_f32(philox, np.empty(9, np.float32)),
                          np.random.Generator(np.random.Philox(3)).random(9, dtype=np.float32))


@pytest.mark.parametrize("scheme", ["unstructured", "nm", "hybrid"])
def test_masks_equal_those_from_numpys_scores(scheme: str, monkeypatch) -> None:
    # layer a: two chunks of rows (the second shorter), one score buffer
    layers = [GemmLayer("a", "conv", P=9, K=300, N=900), GemmLayer("b", "linear", P=1, K=77, N=5)]
    ours = sparsity.synthetic_network(layers, scheme, 0.25, 3, (2, 4), 8, plan="uniform")[1]
    monkeypatch.setattr(sparsity, "random_f32",
                        lambda rng, out: rng.random(out=out, dtype=np.float32))
    numpys = sparsity.synthetic_network(layers, scheme, 0.25, 3, (2, 4), 8, plan="uniform")[1]
    for name in ("a", "b"):
        assert np.array_equal(ours[name].mask, numpys[name].mask)
