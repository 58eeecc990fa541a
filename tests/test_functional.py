"""The functional twin computes A x (W * mask)^T exactly by walking the engine's own fold plan."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from accel_sim.functional import functional
from accel_sim.hardware import build_hardware
from accel_sim.mapping import LOOPS, Mapping
from accel_sim.sparsity import from_mask, synthetic
from accel_sim.workload import GemmLayer

orders = st.permutations(LOOPS).map("".join)
mappings = st.one_of(st.sampled_from(["best", "scalesim"]),
                     st.builds(Mapping, orders, st.one_of(st.none(), st.integers(1, 12)),
                               st.one_of(st.none(), st.integers(1, 3))))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 12), st.integers(1, 40),
       st.integers(1, 20), st.integers(1, 3), st.sampled_from(["unstructured", "nm", "block",
                                                                "hybrid", "dense"]),
       st.sampled_from([2, 4, 8]), st.sampled_from(["ws", "os", "is"]), mappings,
       st.integers(0, 2**32 - 1))
def test_twin_equals_masked_gemm(R, C, P, K, N, G, scheme, b, dataflow, mapping, seed) -> None:
    rng = np.random.default_rng(seed)
    layer = GemmLayer("x", "conv", P=P, K=K, N=N, groups=G)
    sp = synthetic(layer, scheme, 0.25, rng, block=b)
    hw = build_hardware({"array": {"rows": R, "cols": C, "dataflow": dataflow},
                         "memory": {"ifmap_sram_kib": 1, "filter_sram_kib": 1,
                                    "ofmap_sram_kib": 1},
                         "sparse": {"nm": "2:4", "block_skipping": True}})
    a = rng.integers(-8, 8, (G, P, K))
    w = rng.integers(-8, 8, (G * N, K))
    mask = np.ones((G * N, K), bool) if sp.mask is None else sp.mask
    expected = np.stack([a[g] @ (w * mask)[g * N:(g + 1) * N].T for g in range(G)])
    np.testing.assert_array_equal(functional(layer, hw, sp, a, w, mapping), expected)


def test_unbalanced_bitmap_and_float_inputs() -> None:
    rng = np.random.default_rng(0)
    layer = GemmLayer("x", "conv", P=5, K=32, N=6)
    mask = np.zeros((6, 32), bool)
    mask[0, :4] = mask[5, 20:] = True  # one dense-ish filter, the rest empty
    sp = from_mask(layer, mask, "block", None, 4)
    a, w = rng.random((1, 5, 32)), rng.random((6, 32))
    for dataflow in ("ws", "os", "is"):
        hw = build_hardware({"array": {"rows": 4, "cols": 2, "dataflow": dataflow},
                             "sparse": {"block_skipping": True}})
        np.testing.assert_allclose(functional(layer, hw, sp, a, w)[0], a[0] @ (w * mask).T)
