"""The pruner's per-layer plan rule, torch-free: which pattern each layer of a mask scheme gets.

One rule, two users: `crisp.pruner.plan_layers` applies it to a model's Conv2d/Linear modules,
and the simulator's synthetic masks (`accel_sim.sparsity.network_plan`) to GEMM layers, so a
synthetic network is planned as the pruner plans a real one. The rule needs only each layer's
role: the first conv, a depthwise conv, the classifier, or an ordinary layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from crisp.errors import UserError

MASK_SCHEMES = ("hybrid", "nm", "block", "unstructured")
PATTERNS = ("hybrid", "nm", "block", "unstructured", "dense")
#: What each scheme does to an ordinary layer.
BODY_PATTERN = {"hybrid": "hybrid", "nm": "nm", "block": "block", "unstructured": "unstructured"}
#: The classifier's pattern when none is given: N:M only for the N:M schemes, none for block.
DEFAULT_HEAD = {"hybrid": "nm", "nm": "nm", "block": "dense", "unstructured": "unstructured"}


@dataclass(frozen=True)
class LayerPlan:
    """What the pruner does to one layer: ``pattern`` (one of `PATTERNS`) and why."""

    pattern: str
    reason: str


def layer_plan(
    scheme: str,
    *,
    first_conv: bool,
    depthwise: bool,
    classifier: bool,
    exclude_first: bool = True,
    head_pattern: str | None = None,
) -> LayerPlan:
    """The pattern of one layer under a mask scheme, with the reason.

    The paper's code: the classifier gets ``head_pattern`` (default `DEFAULT_HEAD`); else the
    first conv stays dense when ``exclude_first`` (3 input channels, few weights, most
    sensitive); else a depthwise conv stays dense (K = kh*kw is too short for blocks or N:M);
    every other layer gets the scheme's `BODY_PATTERN`.

    Args:
        scheme: one of `MASK_SCHEMES`.
        first_conv: the layer is the model's first convolution (depthwise or not).
        depthwise: the layer is a depthwise convolution (groups == input channels > 1).
        classifier: the layer is the model's classifier (its last Linear).
        exclude_first: leave the first conv dense.
        head_pattern: the classifier's pattern (one of `PATTERNS`); None = `DEFAULT_HEAD`.

    Raises:
        UserError: a scheme without per-layer masks, or an unknown head pattern.
    """
    if scheme not in MASK_SCHEMES:
        raise UserError(f"scheme {scheme!r} has no per-layer masks: allowed {MASK_SCHEMES}")
    if head_pattern is not None and head_pattern not in PATTERNS:
        raise UserError(f"head pattern {head_pattern!r}: allowed {', '.join(PATTERNS)}")
    if classifier:
        pattern = head_pattern or DEFAULT_HEAD[scheme]
        how = "given" if head_pattern else "default"
        return LayerPlan(pattern, f"classifier: {pattern} ({how} head pattern)")
    if exclude_first and first_conv:
        return LayerPlan("dense", "first conv: excluded (exclude_first)")
    if depthwise:
        return LayerPlan("dense", "depthwise conv: excluded (K = kh*kw too short)")
    return LayerPlan(BODY_PATTERN[scheme], f"{scheme} scheme")
