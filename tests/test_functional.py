"""The functional twin computes A x (W * mask)^T exactly through the sparse fold plan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel_sim.functional import functional_ws
from accel_sim.hardware import build_hardware
from accel_sim.sparsity import from_mask, synthetic
from accel_sim.workload import GemmLayer
from crisp.errors import UserError


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 12), st.integers(1, 40),
       st.integers(1, 20), st.integers(1, 3), st.sampled_from(["unstructured", "nm", "block",
                                                                "hybrid", "dense"]),
       st.sampled_from([2, 4, 8]), st.integers(0, 2**32 - 1))
def test_twin_equals_masked_gemm(R, C, P, K, N, G, scheme, b, seed) -> None:
    rng = np.random.default_rng(seed)
    layer = GemmLayer("x", "conv", P=P, K=K, N=N, groups=G)
    sp = synthetic(layer, scheme, 0.25, rng, block=b)
    hw = build_hardware({"array": {"rows": R, "cols": C},
                         "sparse": {"nm": "2:4", "block_skipping": True}})
    a = rng.integers(-8, 8, (G, P, K))
    w = rng.integers(-8, 8, (G * N, K))
    mask = np.ones((G * N, K), bool) if sp.mask is None else sp.mask
    expected = np.stack([a[g] @ (w * mask)[g * N:(g + 1) * N].T for g in range(G)])
    np.testing.assert_array_equal(functional_ws(layer, hw, sp, a, w), expected)


def test_unbalanced_bitmap_and_float_inputs() -> None:
    rng = np.random.default_rng(0)
    layer = GemmLayer("x", "conv", P=5, K=32, N=6)
    mask = np.zeros((6, 32), bool)
    mask[0, :4] = mask[5, 20:] = True  # one dense-ish filter, the rest empty
    sp = from_mask(layer, mask, "block", None, 4)
    hw = build_hardware({"array": {"rows": 4, "cols": 2}, "sparse": {"block_skipping": True}})
    a, w = rng.random((1, 5, 32)), rng.random((6, 32))
    np.testing.assert_allclose(functional_ws(layer, hw, sp, a, w)[0], a[0] @ (w * mask).T)


def test_twin_is_ws_only() -> None:
    layer = GemmLayer("x", "conv", P=2, K=2, N=2)
    hw = build_hardware({"array": {"dataflow": "os"}})
    with pytest.raises(UserError, match="ws"):
        functional_ws(layer, hw, synthetic(layer, "dense", 1.0, np.random.default_rng(0)),
                      np.ones((1, 2, 2)), np.ones((2, 2)))
