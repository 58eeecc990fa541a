"""Energy as a pure function of action counts and an energy table (no re-run for a new table).

``energy = sum(count x energy per action) + leakage power x time``, reported per component.
Counts that are subsets of others (``psum_read`` within ofmap reads, ``metadata_byte`` within
DRAM reads) are not priced twice.
"""

from __future__ import annotations

import functools

from accel_sim.engine import Counts
from accel_sim.hardware import EnergyTable

PRICES: dict[tuple[str, str], tuple[str, str]] = {
    ("mac", "active"): ("mac", "mac_pj"),
    ("mac", "gated"): ("mac", "gated_mac_pj"),
    ("mux", "select"): ("mux", "mux_pj"),
    ("pe_reg", "access"): ("reg", "reg_pj"),
    ("ifmap_sram", "read"): ("ifmap_sram", "ifmap_sram_read_pj"),
    ("ifmap_sram", "write"): ("ifmap_sram", "ifmap_sram_write_pj"),
    ("filter_sram", "read"): ("filter_sram", "filter_sram_read_pj"),
    ("filter_sram", "write"): ("filter_sram", "filter_sram_write_pj"),
    ("ofmap_sram", "read"): ("ofmap_sram", "ofmap_sram_read_pj"),
    ("ofmap_sram", "write"): ("ofmap_sram", "ofmap_sram_write_pj"),
    ("metadata_sram", "byte"): ("metadata", "metadata_pj_per_byte"),
    ("dram", "read_byte"): ("dram", "dram_pj_per_byte"),
    ("dram", "write_byte"): ("dram", "dram_pj_per_byte"),
}
"""``(component, action)`` -> (reported component, EnergyTable field)."""

COMPONENTS = ("mac", "mux", "reg", "ifmap_sram", "filter_sram", "ofmap_sram", "metadata", "dram",
              "leakage")


@functools.lru_cache(maxsize=256)
def _prices(table: EnergyTable) -> tuple[tuple[tuple[str, str], str, float], ...]:
    """(action, reported component, pJ per action) of every priced action."""
    return tuple((action, component, getattr(table, price))
                 for action, (component, price) in PRICES.items())


def energy(counts: Counts, table: EnergyTable, cycles: int, clock_mhz: float) -> dict[str, float]:
    """Energy per component in pJ.

    Args:
        counts: ``{(component, action): count}`` from the engine.
        table: energy per action (pJ) and leakage power (mW).
        cycles: cycles the layer occupies the accelerator (leakage time).
        clock_mhz: clock frequency in MHz.

    Returns:
        ``{component: pJ}`` for every name in `COMPONENTS`.
    """
    out = dict.fromkeys(COMPONENTS, 0.0)
    for action, component, price in _prices(table):
        if action in counts:
            out[component] += counts[action] * price
    # mW x cycles / MHz = 1e-3 W x 1e-6 s = 1e-9 J = 1e3 pJ
    out["leakage"] = table.leakage_mw * cycles / clock_mhz * 1e3
    return out
