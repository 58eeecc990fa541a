"""Cross-check DRAM traffic, latency and energy against ZigZag's best mapping (``zigzag-dse``).

Creates ``.cache/zigzag-venv`` (zigzag-dse 3.9.1) if missing, describes the array (default
edge-32x32) in ZigZag's format (a 32x32 int8 weight-stationary array, K x C unrolled, three 64 KiB
double-buffered SRAMs, one 16 B/cycle DRAM port), lets ZigZag's LOMA search the loop orders and
tiles of every layer for the lowest latency, and prints its DRAM bytes (per operand), cycles and
chosen loops beside this simulator's (each of its mappings when ``simulate`` has them), with both
tools' wall times. ZigZag's rows are cached in ``.cache/zigzag/<setup>.csv`` (setup: ZigZag
version, generated architecture with its energy costs, LOMA settings and objective, the driver),
one per layer shape, so a rerun only re-runs our side; identical shapes (ResNet's repeated blocks)
run once. docs/validation.md explains the modelling differences. ``--publish`` writes
``docs/results/zigzag_crosscheck.md``: the counts of layers where ours moves the same, fewer and
more DRAM bytes, the cycle ratios, and the Markdown table of the ``--markdown`` (default 5) shapes
that differ most each way.

Energy: ZigZag's memory, register and MAC costs come from the hardware's ``EnergyTable``
(`zigzag_costs`: a word costs our pJ per word whatever the port width), and each tool's mapping
for the lowest energy and for the lowest latency is compared per layer and for the network: MAC
energy, each SRAM's reads and writes (words) and energy, DRAM bytes per operand and energy, the
registers, and the dynamic total (ours less leakage, which ZigZag does not model). ``--publish``
also writes ``docs/results/zigzag_energy.md``; ``--energy-out`` writes the per-layer table.

    python benchmarks/zigzag_crosscheck.py                      # all 54 ResNet-50 GEMMs
    python benchmarks/zigzag_crosscheck.py --layers conv1,fc    # a subset
    python benchmarks/zigzag_crosscheck.py --markdown 6 --out table.csv
    python benchmarks/zigzag_crosscheck.py --rerun-zigzag --lpf-limit 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from peer_venv import CACHE, ensure_venv

from accel_sim.hardware import HardwareSpec, load_hardware, with_overrides
from accel_sim.simulate import simulate
from accel_sim.sources import load_layers
from accel_sim.workload import GemmLayer
from crisp.errors import UserError
from crisp.io import write_atomic
from crisp_sim.publish import Results, markdown_table, script_command

ZIGZAG_VERSION = "3.9.1"
REQUIREMENTS = [f"zigzag-dse=={ZIGZAG_VERSION}", "six"]  # 3.9.1 imports six undeclared
RESULTS = CACHE / "zigzag"
OPERANDS = ("I", "W", "O")  # ifmap, filter, ofmap in ZigZag's layer-operand names

# Runs inside the ZigZag virtualenv: argv = job file (JSON), result file (CSV, a row appended per
# layer as soon as it is done, so an interrupted run keeps what it finished).
DRIVER = r'''
import csv, json, logging, os, sys, tempfile, time
from zigzag.api import get_hardware_performance_zigzag
from zigzag.hardware.architecture.memory_port import DataDirection as D
from zigzag.mapping.data_movement import DataMoveAttr as A

logging.disable(logging.CRITICAL)
job = json.load(open(sys.argv[1]))


def traffic(cme):
    """Bits moved at each operand's top memory level (DRAM), per direction."""
    out = {}
    for op in cme.layer.layer_operands:
        top = cme.mapping.mem_level[op] - 1
        move = cme.mapping.unit_mem_data_movement[op][top]
        count = move.get_attribute(A.DATA_ELEM_MOVE_COUNT)
        bits = move.get_attribute(A.DATA_PRECISION)
        units = cme.mapping.spatial_mapping.unit_count[op][top + 1]
        for d in D:
            out[f"{op.name}_{d.name}"] = count.get(d) * bits.get(d) * units
    return out


def levels(cme):
    """Per operand, memory level and direction: bits moved, ZigZag's accesses and energy (pJ)."""
    out = {"zz_mac_pj": cme.mac_energy, "zz_mem_pj": cme.mem_energy}
    for op in cme.layer.layer_operands:
        mem_op = cme.memory_operand_links.layer_to_mem_op(op)
        for lv in range(cme.mapping.mem_level[op]):
            name = cme.accelerator.get_memory_level(mem_op, lv).name
            move = cme.mapping.unit_mem_data_movement[op][lv]
            count = move.get_attribute(A.DATA_ELEM_MOVE_COUNT)
            bits = move.get_attribute(A.DATA_PRECISION)
            units = cme.mapping.spatial_mapping.unit_count[op][lv + 1]
            access = cme.memory_word_access[op][lv]
            energy = cme.mem_energy_breakdown_further[op][lv]
            for d in D:
                key = f"lv:{op.name}:{name}:{d.name}"
                out[key + ":bits"] = count.get(d) * bits.get(d) * units
                out[key + ":access"] = access.get(d)
                out[key + ":pj"] = energy.get(d)
    return out


for item in job["layers"]:
    with tempfile.TemporaryDirectory() as dump:
        start = time.perf_counter()
        _, _, cmes = get_hardware_performance_zigzag(
            workload=item["workload"], accelerator=job["accelerator"], mapping=item["mapping"],
            opt=job["opt"], dump_folder=dump, lpf_limit=job["lpf_limit"],
            loma_show_progress_bar=False)
        wall = time.perf_counter() - start
    cme = cmes[0][1][0][0]
    row = {"key": item["key"], "layer": item["name"], "zz_wall_s": wall,
           "zz_latency": cme.latency_total2, "zz_ideal_temporal": cme.ideal_temporal_cycle,
           "zz_ideal": cme.ideal_cycle, "zz_stall_slack": cme.stall_slack_comb,
           "zz_onload": cme.data_onloading_cycle, "zz_offload": cme.data_offloading_cycle,
           "zz_drain": cme.systolic_drain_cycle, "zz_energy_pj": cme.energy_total,
           "zz_spatial": str(cme.layer.spatial_mapping),
           "zz_temporal": json.dumps(
               {op.name: [[[str(d), int(s)] for d, s in level] for level in levels]
                for op, levels in cme.temporal_mapping.mapping_dic_stationary.items()}),
           "zz_double_buffer": json.dumps(
               {op.name: flags for op, flags in cme.double_buffer_true.items()})}
    row.update(traffic(cme))
    row.update(levels(cme))
    new = not os.path.exists(sys.argv[2])
    with open(sys.argv[2], "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(f"{item['name']}: {wall:.1f} s, {cme.latency_total2:.0f} cycles", flush=True)
'''


def per_access(pj_per_word: float, port_bits: float, word_bits: int) -> float:
    """ZigZag's cost of one access (pJ) for a port ``port_bits`` wide, from our pJ per
    ``word_bits``-bit word.

    ZigZag counts the accesses of a level as the bits it moves over the port's ``bandwidth_max``
    (rounded up to ``bandwidth_min`` per transfer period) and prices each at ``r_cost`` /
    ``w_cost``: an access moves ``port_bits / word_bits`` words, so a word costs
    ``pj_per_word`` there as here (and a 32-bit partial sum four words' worth, as here).
    """
    return pj_per_word * port_bits / word_bits


def port_bits(hw: HardwareSpec, psum_bits: int = 32) -> dict[str, tuple[int, int]]:
    """Read and write port widths (bits) of each memory of the ZigZag description."""
    rows, cols, word = hw.array.rows, hw.array.cols, hw.array.word_bits
    dram = int(hw.memory.dram_bytes_per_cycle * 8)
    return {"rf_w": (word, word), "filter_sram": (rows * word, rows * word),
            "ifmap_sram": (rows * word, rows * word),
            "ofmap_sram": (cols * psum_bits, cols * psum_bits), "dram": (dram, dram)}


def zigzag_costs(hw: HardwareSpec, psum_bits: int = 32) -> dict[str, tuple[float, float]]:
    """``{memory: (r_cost, w_cost)}`` in pJ per access, and ``mac``: ``(unit_energy, 0)``, from
    ``hw.energy``: the SRAMs' pJ per word, DRAM's per byte, the weight register's ``reg_pj`` and
    ``mac_pj``, each converted with `per_access` to ZigZag's port widths (`port_bits`)."""
    e, word = hw.energy, hw.array.word_bits
    per_word = {"rf_w": (e.reg_pj, e.reg_pj),
                "filter_sram": (e.filter_sram_read_pj, e.filter_sram_write_pj),
                "ifmap_sram": (e.ifmap_sram_read_pj, e.ifmap_sram_write_pj),
                "ofmap_sram": (e.ofmap_sram_read_pj, e.ofmap_sram_write_pj),
                "dram": (e.dram_pj_per_byte * word / 8, e.dram_pj_per_byte * word / 8)}
    costs = {name: (per_access(rd_pj, rd, word), per_access(wr_pj, wr, word))
             for name, ((rd_pj, wr_pj), (rd, wr))
             in zip(per_word, zip(per_word.values(), port_bits(hw, psum_bits).values(),
                                  strict=True), strict=True)}
    costs["mac"] = (e.mac_pj, 0.0)
    return costs


def accelerator(hw: HardwareSpec, psum_bits: int = 32) -> dict:
    """ZigZag's description of ``hw`` (a WS array; memory sizes and bandwidths in bits).

    Levels per operand: W in a one-word register per PE, then the filter SRAM; I straight from
    the ifmap SRAM to the array edge (shifted along the rows, one word per row per cycle); O
    straight into the ofmap SRAM (partial sums reduced down the columns). The SRAMs are
    ``force_double_buffering`` (a tile that is not the whole tensor must fit half) and share one
    DRAM port of ``dram_bytes_per_cycle``. Access and MAC costs come from ``hw.energy``
    (`zigzag_costs`); ZigZag has no leakage and no input or partial-sum registers.
    """
    rows, cols = hw.array.rows, hw.array.cols
    word = hw.array.word_bits
    widths = port_bits(hw, psum_bits)
    costs = zigzag_costs(hw, psum_bits)

    def port(name: str, kind: str, bits: int, allocation: list[str]) -> dict:
        return {"name": name, "type": kind, "bandwidth_min": 8, "bandwidth_max": bits,
                "allocation": allocation}

    def sram(name: str, kib: float, operand: str,
             directions: tuple[list[str], list[str]]) -> dict:
        rd, wr = widths[name]
        return {"size": int(kib * 1024 * 8), "r_cost": costs[name][0], "w_cost": costs[name][1],
                "area": 0, "latency": 1, "operands": [operand], "force_double_buffering": True,
                "ports": [port("r_port_1", "read", rd, [f"{operand}, {d}" for d in directions[0]]),
                          port("w_port_1", "write", wr,
                               [f"{operand}, {d}" for d in directions[1]])],
                "served_dimensions": ["D1", "D2"]}

    mem = hw.memory
    return {
        "name": f"crisp-{hw.name}",
        "memories": {
            "rf_w": {"size": word, "r_cost": costs["rf_w"][0], "w_cost": costs["rf_w"][1],
                     "area": 0, "latency": 1, "operands": ["I2"],
                     "ports": [port("r_port_1", "read", word, ["I2, tl"]),
                               port("w_port_1", "write", word, ["I2, fh"])],
                     "served_dimensions": []},
            # the array reads a row of `rows` weights per cycle while loading the stationary tile
            "filter_sram": sram("filter_sram", mem.filter_sram_kib, "I2", (["tl"], ["fh"])),
            "ifmap_sram": sram("ifmap_sram", mem.ifmap_sram_kib, "I1", (["tl"], ["fh"])),
            # `cols` partial sums per cycle in and out (accumulated across row folds)
            "ofmap_sram": sram("ofmap_sram", mem.ofmap_sram_kib, "O",
                               (["tl", "th"], ["fl", "fh"])),
            "dram": {"size": 10**12, "r_cost": costs["dram"][0], "w_cost": costs["dram"][1],
                     "area": 0, "latency": 1, "operands": ["I1", "I2", "O"],
                     "ports": [port("rw_port_1", "read_write", widths["dram"][0],
                                    ["I1, tl", "I2, tl", "O, fl", "O, tl"])],
                     "served_dimensions": ["D1", "D2"]},
        },
        "operational_array": {"unit_energy": costs["mac"][0], "unit_area": 1,
                              "dimensions": ["D1", "D2"], "sizes": [cols, rows],
                              "systolic_dimensions": ["D1", "D2"]},
    }


def mapping(layer: GemmLayer, hw: HardwareSpec) -> list[dict]:
    """The fixed spatial unrolling of ``layer``: output channels K across the columns (D1), input
    channels C down the rows (D2); LOMA searches the temporal loops.

    Where C is smaller than the rows (ResNet's first conv, C=3), the rows also unroll divisors of
    FX, then FY (ZigZag's "mixed" unrolling), the closest it gets to our im2col rows that unroll
    (c, fy, fx) together.
    """
    rows = hw.array.rows
    c_in = layer.K // (layer.kernel[0] * layer.kernel[1])
    d2 = [f"C, {min(c_in, rows)}"]
    used = min(c_in, rows)
    for dim, size in (("FX", layer.kernel[1]), ("FY", layer.kernel[0])):
        factor = max(d for d in range(1, size + 1) if size % d == 0 and used * d <= rows)
        if factor > 1:
            d2.append(f"{dim}, {factor}")
            used *= factor
    return [{"name": "default",
             "spatial_mapping": {"D1": [f"K, {hw.array.cols}"], "D2": d2},
             "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]


def workload(layer: GemmLayer, word_bits: int, psum_bits: int) -> list[dict]:
    """One ZigZag conv layer for ``layer`` (a linear layer is a 1x1 conv on a 1x1 map)."""
    if layer.groups != 1:
        raise UserError(f"layer {layer.name}: groups={layer.groups}; this cross-check maps "
                        "ungrouped layers only")
    kh, kw = layer.kernel
    sh, sw = layer.stride
    ph, pw = layer.padding
    if layer.kind == "linear":
        batch, c_in = layer.in_shape
        h_in = w_in = h_out = w_out = 1
    else:
        batch, c_in, h_in, w_in = layer.in_shape
        h_out, w_out = layer.out_shape[2:]
    return [{
        "id": 0, "name": layer.name, "operator_type": "Conv",
        "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "dimension_relations": [f"ix={sw}*ox+1*fx", f"iy={sh}*oy+1*fy"],
        "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
        "loop_sizes": [batch, layer.N, c_in, h_out, w_out, kh, kw],
        "operand_precision": {"W": word_bits, "I": word_bits, "O": psum_bits,
                              "O_final": word_bits},
        "operand_source": {"I": 0, "W": 0},
        "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [w_in + 2 * pw, h_in + 2 * ph],
        "padding": [[pw, pw], [ph, ph]],
    }]


def digest(obj: object) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def zigzag_setup(hw: HardwareSpec, psum_bits: int, lpf_limit: int,
                 opt: str = "latency") -> dict:
    """What ZigZag's cached rows depend on besides the layer: its version, the architecture
    (with the energy costs), LOMA's settings (``opt``: what it minimises, ``latency`` or
    ``energy``) and the driver (what each row holds)."""
    return {"zigzag": ZIGZAG_VERSION, "arch": accelerator(hw, psum_bits), "lpf": lpf_limit,
            "opt": opt, "driver": digest(DRIVER)}


def run_zigzag(layers: list[GemmLayer], hw: HardwareSpec, psum_bits: int, lpf_limit: int,
               rerun: bool, opt: str = "latency") -> pd.DataFrame:
    """ZigZag's row per layer for its best mapping by ``opt``, from the cache where present,
    running the missing layers."""
    setup = zigzag_setup(hw, psum_bits, lpf_limit, opt)
    arch = setup["arch"]
    cache = RESULTS / f"{digest(setup)}.csv"
    inputs = {la.name: {"workload": workload(la, hw.array.word_bits, psum_bits),
                        "mapping": mapping(la, hw)} for la in layers}
    # keyed by shape, not name: ResNet's repeated blocks run once
    keys = {name: digest([setup, spec["mapping"], {**spec["workload"][0], "name": None}])
            for name, spec in inputs.items()}
    done = {}
    if cache.exists() and not rerun:
        done = {row["key"]: row for row in pd.read_csv(cache).to_dict("records")}
    missing, queued = [], set(done)
    for la in layers:
        if keys[la.name] not in queued:
            missing.append(la)
            queued.add(keys[la.name])
    if missing:
        python = ensure_venv("zigzag-venv", REQUIREMENTS)
        RESULTS.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "arch.yaml").write_text(json.dumps(arch))  # JSON is YAML
            items = []
            for la in missing:
                item = {"key": keys[la.name], "name": la.name}
                for part, spec in inputs[la.name].items():
                    path = work / f"{keys[la.name]}-{part}.yaml"
                    path.write_text(json.dumps(spec))
                    item[part] = str(path)
                items.append(item)
            job = work / "job.json"
            job.write_text(json.dumps({"accelerator": str(work / "arch.yaml"), "opt": opt,
                                       "lpf_limit": lpf_limit, "layers": items}))
            driver = work / "driver.py"
            driver.write_text(DRIVER)
            subprocess.run([str(python), str(driver), str(job), str(cache)], check=True,
                           cwd=work)
        # a rerun appends fresh rows: the last row of a key wins
        done = {row["key"]: row for row in pd.read_csv(cache).to_dict("records")}
    frame = pd.DataFrame([done[keys[la.name]] for la in layers])
    for op in OPERANDS:
        # DRAM reads feed the level below (tl); writes come from it (fl); bits -> bytes
        frame[f"zz_dram_{op}_read_bytes"] = frame[f"{op}_RD_OUT_TO_LOW"] / 8
        frame[f"zz_dram_{op}_write_bytes"] = frame[f"{op}_WR_IN_BY_LOW"] / 8
    frame["zz_dram_read_bytes"] = sum(frame[f"zz_dram_{op}_read_bytes"] for op in OPERANDS)
    frame["zz_dram_write_bytes"] = sum(frame[f"zz_dram_{op}_write_bytes"] for op in OPERANDS)
    frame["zz_dram_bytes"] = frame.zz_dram_read_bytes + frame.zz_dram_write_bytes
    return frame


def run_ours(layers: list[GemmLayer], hw: HardwareSpec) -> tuple[dict[str, pd.DataFrame],
                                                                   dict[str, float]]:
    """Our per-layer frames and warm wall times (s): SCALE-Sim's schedule and the mapper's on
    ``hw`` as given (one stationary register per PE unless it says otherwise), and the mapper's
    with two (``best-db``: double-buffered weights, no per-fold fill, as ZigZag models it)."""
    frames, walls = {}, {}
    variants = {"scalesim": (hw, "scalesim"), "best": (hw, "best"),
                "best-db": (with_overrides(hw, weight_buffers=2), "best")}
    for name, (spec, mapping) in variants.items():
        simulate(layers, spec, mapping=mapping)  # JIT warm-up
        start = time.perf_counter()
        frames[name] = simulate(layers, spec, mapping=mapping).to_frame(totals=False)
        walls[name] = time.perf_counter() - start
    return frames, walls


def dram_loops(temporal: str) -> str:
    """ZigZag's temporal loops above each operand's SRAM (in DRAM), outermost first, e.g.
    ``I: OX7 | W:  | O: OX7 K2 OY7`` (the weights stay: all of them fit); every iteration of
    these loops refills that operand's SRAM tile."""
    levels = json.loads(temporal)
    return " | ".join(
        f"{op}: " + " ".join(f"{d}{s}" for d, s in reversed(levels[op][-1]))
        for op in OPERANDS)


def compare(layers: list[GemmLayer], zz: pd.DataFrame,
            ours: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per layer (and a total): ZigZag's bytes and cycles beside each of ours."""
    table = pd.DataFrame({"layer": [la.name for la in layers], "P": [la.P for la in layers],
                          "K": [la.K for la in layers], "N": [la.N for la in layers]})
    for col in ("zz_dram_I_read_bytes", "zz_dram_W_read_bytes", "zz_dram_O_read_bytes",
                "zz_dram_O_write_bytes", "zz_dram_bytes", "zz_ideal_temporal", "zz_latency",
                "zz_wall_s"):
        table[col] = zz[col].to_numpy()
    table["zz_dram_loops"] = zz.zz_temporal.map(dram_loops).to_numpy()
    for name, frame in ours.items():
        if list(frame.layer) != list(table.layer):
            raise RuntimeError(f"our {name} frame's layers differ from the workload's")
        for col in ("dram_read_bytes", "dram_write_bytes", "dram_bytes", "compute_cycles",
                    "total_cycles", "mapping", "compulsory_dram_bytes"):
            if col in frame:
                table[f"{name}_{col}"] = frame[col].to_numpy()
    # shapes and ZigZag's wall time (repeated shapes ran once) are not summed
    total = table.select_dtypes("number").drop(columns=["P", "K", "N", "zz_wall_s"])
    total = total.sum().to_frame().T
    total.insert(0, "layer", "total")
    table = pd.concat([table, total], ignore_index=True)
    for name in ours:
        table[f"{name}_bytes_ratio"] = table[f"{name}_dram_bytes"] / table.zz_dram_bytes
        table[f"{name}_cycles_ratio"] = table[f"{name}_total_cycles"] / table.zz_latency
    return table


def markdown(table: pd.DataFrame, top: int) -> str:
    """A Markdown table: the ``top`` layer shapes where our last mapping moves most more DRAM
    bytes than ZigZag, the ``top`` where it moves most fewer, and the total (MB = 10^6 bytes,
    cycles in thousands; repeated shapes once, with their count)."""
    ours = [c.removesuffix("_total_cycles") for c in table.columns
            if c.endswith("_total_cycles")]
    last = ours[-1]
    body, total = table.iloc[:-1].copy(), table.iloc[-1:]
    body["shape"] = list(zip(body.P, body.K, body.N, body.zz_dram_loops, strict=True))
    counts = body.groupby("shape", sort=False).layer.transform("size")
    body["layer"] = [f"{name} (x{n})" if n > 1 else name
                     for name, n in zip(body.layer, counts, strict=True)]
    body = body.drop_duplicates("shape")
    gap = body[f"{last}_dram_bytes"] - body.zz_dram_bytes
    more = gap[gap > 0].sort_values(ascending=False).index[:top]
    fewer = gap[gap < 0].sort_values().index[:top]
    shown = pd.concat([body.loc[more], body.loc[fewer], total])
    compulsory = next((f"{n}_compulsory_dram_bytes" for n in ours
                       if f"{n}_compulsory_dram_bytes" in table), None)
    head = (["layer", "ZigZag MB (I / W / O)"] + [f"ours {n} MB" for n in ours]
            + (["compulsory MB"] if compulsory else [])
            + ["ZigZag kcycles"] + [f"ours {n} kcycles" for n in ours]
            + ([f"ours {last} mapping"] if f"{last}_mapping" in table else [])
            + ["ZigZag loops above the SRAMs"])
    rows = []
    for _, row in shown.iterrows():
        ops = " / ".join(f"{row[f'zz_dram_{op}_read_bytes'] / 1e6:.2f}" for op in "IW")
        out = (row.zz_dram_O_read_bytes + row.zz_dram_O_write_bytes) / 1e6
        cells = [row.layer, f"{row.zz_dram_bytes / 1e6:.2f} ({ops} / {out:.2f})"]
        cells += [f"{row[f'{n}_dram_bytes'] / 1e6:.2f}" for n in ours]
        cells += [f"{row[compulsory] / 1e6:.2f}"] if compulsory else []
        cells += [f"{row.zz_latency / 1e3:,.1f}"]
        cells += [f"{row[f'{n}_total_cycles'] / 1e3:,.1f}" for n in ours]
        if f"{last}_mapping" in table:
            cells.append(str(row[f"{last}_mapping"]) if row.layer != "total" else "")
        loops = row.zz_dram_loops if isinstance(row.zz_dram_loops, str) else ""
        cells.append(loops.replace(" | ", "; "))
        rows.append(cells)
    return markdown_table(head, rows)


def bytes_ratio(body: pd.DataFrame, name: str) -> pd.Series:
    """Our (``name``) DRAM bytes over ZigZag's, per layer."""
    return body[f"{name}_dram_bytes"] / body.zz_dram_bytes


def agreement(table: pd.DataFrame, name: str = "best", tolerance: float = 0.01) -> str:
    """How ours (``name``) and ZigZag compare over the layers: DRAM bytes within ``tolerance``,
    fewer and more (and by how many MB), and our cycles over ZigZag's where the bytes agree."""
    body = table.iloc[:-1]
    ratio = bytes_ratio(body, name)
    same = (ratio - 1).abs() <= tolerance
    fewer, more = ratio < 1 - tolerance, ratio > 1 + tolerance
    gap = (body[f"{name}_dram_bytes"] - body.zz_dram_bytes) / 1e6
    cycles = body[f"{name}_total_cycles"][same] / body.zz_latency[same]
    return (f"Over the {len(body)} layers, ours (`{name}`) moves the same DRAM bytes as ZigZag "
            f"(within {tolerance:.0%}) on {int(same.sum())}, fewer on {int(fewer.sum())} "
            f"({-gap[fewer].sum():.1f} MB fewer in all) and more on {int(more.sum())} "
            f"({gap[more].sum():.1f} MB more in all). Where the bytes agree, our total cycles "
            f"are {cycles.min():.2f}-{cycles.max():.2f}x ZigZag's latency (median "
            f"{cycles.median():.2f}x).")


# The energy comparison: components both tools price (ZigZag's register level is the weight's)
ENERGY_PARTS = ("mac", "reg", "ifmap_sram", "filter_sram", "ofmap_sram", "dram")
SRAMS = {"ifmap_sram": "I", "filter_sram": "W", "ofmap_sram": "O"}  # our SRAM -> its operand
READS = ("RD_OUT_TO_LOW", "RD_OUT_TO_HIGH")
WRITES = ("WR_IN_BY_HIGH", "WR_IN_BY_LOW")


def cycles_agreement(table: pd.DataFrame, names: tuple[str, ...] = ("best", "best-db"),
                     tolerance: float = 0.05) -> str:
    """Per setting: on how many layers our total cycles are within ``tolerance`` of ZigZag's
    latency (all layers, and those where both move the same DRAM bytes within 1 %), the
    network's ratio; and for the last setting, our compute cycles against ZigZag's ideal
    cycles (its MACs over the PEs it unrolls on, plus one drain), naming the layers outside."""
    body, total = table.iloc[:-1], table.iloc[-1]
    parts = []
    for name in names:
        ratio = body[f"{name}_total_cycles"] / body.zz_latency
        near = (ratio - 1).abs() <= tolerance
        same = (bytes_ratio(body, name) - 1).abs() <= 0.01
        parts.append(f"`{name}` within {tolerance:.0%} on {int(near.sum())} of {len(body)} "
                     f"layers (ratios {ratio.min():.2f}-{ratio.max():.2f}x, median "
                     f"{ratio.median():.2f}x) and on {int((near & same).sum())} of the "
                     f"{int(same.sum())} that move the same DRAM bytes, the network "
                     f"{total[f'{name}_total_cycles'] / total.zz_latency:.2f}x")
    last = names[-1]
    ideal = body[f"{last}_compute_cycles"] / body.zz_ideal_temporal
    off = body[(ideal - 1).abs() > tolerance]
    outside = ", ".join(f"`{la}` {r:.2f}x" for la, r in zip(off.layer, ideal[off.index],
                                                             strict=True))
    return ("Total cycles against ZigZag's latency: " + "; ".join(parts) + ". Compute cycles "
            f"against ZigZag's ideal cycles (`{last}`): within {tolerance:.0%} on "
            f"{len(body) - len(off)} of {len(body)} layers (median {ideal.median():.3f}x)"
            + (f"; outside: {outside}" if outside else "") + ".")


def more_bytes(table: pd.DataFrame, name: str = "best-db", tolerance: float = 0.01) -> str:
    """The layers on which ``name`` moves more DRAM bytes than ZigZag (beyond ``tolerance``),
    with both tools' bytes per operand."""
    body = table.iloc[:-1]
    over = body[bytes_ratio(body, name) > 1 + tolerance]
    if over.empty:
        return (f"`{name}` moves at most ZigZag's DRAM bytes (within {tolerance:.0%}) on every "
                "layer.")
    names = ", ".join(f"`{la}`" for la in over.layer)
    return (f"`{name}` moves more DRAM bytes than ZigZag (beyond {tolerance:.0%}) on "
            f"{len(over)} of {len(body)} layers: {names}.")


def _cell(row: dict, key: str) -> float:
    """A ZigZag row's value, 0 where the column is absent or empty (a direction never used)."""
    value = row.get(key, 0.0)
    return 0.0 if value is None or value != value else float(value)  # NaN != NaN


def zigzag_energy(row: dict, widths: dict[str, tuple[int, int]], word_bits: int) -> dict:
    """ZigZag's energy (pJ) and access counts of one layer in our components.

    ``reg``: its per-PE weight register (``rf_w``); each SRAM: its one operand; ``dram``: all
    three operands. SRAM reads and writes are in operand-width words, from ZigZag's own access
    counts (the count it prices: accesses x port width / word width); DRAM bytes per operand
    from the bits it moves. ``compared_pj``: MAC + SRAM + DRAM energy (no register).
    """
    out = {"mac_pj": _cell(row, "zz_mac_pj")}
    for memory, part in (("rf_w", "reg"), *((m, m) for m in SRAMS)):
        op = SRAMS.get(memory, "W")
        base = f"lv:{op}:{memory}"
        out[f"{part}_pj"] = sum(_cell(row, f"{base}:{d}:pj") for d in READS + WRITES)
        rd, wr = widths[memory]
        out[f"{part}_reads"] = sum(_cell(row, f"{base}:{d}:access") for d in READS) * rd / word_bits
        out[f"{part}_writes"] = (sum(_cell(row, f"{base}:{d}:access") for d in WRITES)
                                 * wr / word_bits)
        # words by the bits it moves: fewer than its accesses for the partial-sum read-backs,
        # which it counts once per accumulation step, the first (which reads nothing) too
        out[f"{part}_read_words_moved"] = sum(_cell(row, f"{base}:{d}:bits")
                                              for d in READS) / word_bits
    out["dram_pj"] = sum(_cell(row, f"lv:{op}:dram:{d}:pj") for op in OPERANDS
                         for d in READS + WRITES)
    for op in OPERANDS:
        out[f"dram_{op}_bytes"] = sum(_cell(row, f"lv:{op}:dram:{d}:bits")
                                      for d in READS + WRITES) / 8
    out["total_pj"] = _cell(row, "zz_energy_pj")
    out["compared_pj"] = out["total_pj"] - out["reg_pj"]
    return out


def our_energy(frame: pd.DataFrame, word_bytes: int) -> pd.DataFrame:
    """Our per-layer energy (pJ) and counts in the same columns as `zigzag_energy`.

    ``total_pj`` is dynamic (the total less leakage, which ZigZag does not model);
    ``compared_pj`` also leaves out the PE registers (ours count input and partial-sum
    registers per MAC, ZigZag's description has the weight register only) and the sparse
    components (multiplexers, metadata: zero on a dense layer). DRAM bytes per operand: I and W
    are the words written into their SRAMs, O the rest (outputs and spilled partial sums).
    """
    out = pd.DataFrame({"layer": frame.layer.to_numpy()})
    for part in ENERGY_PARTS:
        out[f"{part}_pj"] = frame[f"energy_{part}_pj"].to_numpy()
    out["reg_reads"] = frame.pe_reg_accesses.to_numpy()
    out["reg_writes"] = 0
    for memory in SRAMS:
        out[f"{memory}_reads"] = frame[f"{memory}_reads"].to_numpy()
        out[f"{memory}_writes"] = frame[f"{memory}_writes"].to_numpy()
        out[f"{memory}_read_words_moved"] = out[f"{memory}_reads"]  # ours: the same count
    out["dram_I_bytes"] = (frame.ifmap_sram_writes * word_bytes).to_numpy()
    out["dram_W_bytes"] = (frame.filter_sram_writes * word_bytes).to_numpy()
    out["dram_O_bytes"] = (frame.dram_read_bytes + frame.dram_write_bytes).to_numpy() - (
        out.dram_I_bytes + out.dram_W_bytes)
    out["total_pj"] = (frame.energy_total_pj - frame.energy_leakage_pj).to_numpy()
    out["compared_pj"] = sum(out[f"{part}_pj"] for part in ENERGY_PARTS if part != "reg")
    return out


ENERGY_ROWS = [("MAC energy", "mac_pj"), ("ifmap SRAM energy", "ifmap_sram_pj"),
               ("filter SRAM energy", "filter_sram_pj"), ("ofmap SRAM energy", "ofmap_sram_pj"),
               ("DRAM energy", "dram_pj"), ("ifmap SRAM reads", "ifmap_sram_reads"),
               ("ifmap SRAM writes", "ifmap_sram_writes"),
               ("filter SRAM reads", "filter_sram_reads"),
               ("filter SRAM writes", "filter_sram_writes"),
               ("ofmap SRAM reads", "ofmap_sram_reads"),
               ("ofmap SRAM reads, data moved", "ofmap_sram_read_words_moved"),
               ("ofmap SRAM writes", "ofmap_sram_writes"),
               ("DRAM bytes, I", "dram_I_bytes"), ("DRAM bytes, W", "dram_W_bytes"),
               ("DRAM bytes, O", "dram_O_bytes"), ("PE register energy", "reg_pj"),
               ("energy: MAC + SRAM + DRAM", "compared_pj"),
               ("dynamic energy, all", "total_pj")]
"""(label, column) of the energy comparison, in table order."""


def energy_compare(zz: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """One row per layer and a ``total``: ZigZag's (``zz_``) and our (``ours_``) value of every
    `ENERGY_ROWS` column, and ours over ZigZag's (``ratio_``; 1 where both are 0)."""
    if list(zz.layer) != list(ours.layer):
        raise RuntimeError("ZigZag's and our energy rows name different layers")
    columns = [col for _, col in ENERGY_ROWS]
    table = pd.DataFrame({"layer": list(ours.layer)})
    for col in columns:
        table[f"zz_{col}"] = zz[col].to_numpy(dtype=float)
        table[f"ours_{col}"] = ours[col].to_numpy(dtype=float)
    total = table.drop(columns="layer").sum().to_frame().T
    total.insert(0, "layer", "total")
    table = pd.concat([table, total], ignore_index=True)
    for col in columns:
        a, b = table[f"ours_{col}"], table[f"zz_{col}"]
        table[f"ratio_{col}"] = (a / b.where(b != 0)).where(b != 0, (a == 0).astype(float))
    return table


def energy_table(layers: list[GemmLayer], zz: pd.DataFrame, frame: pd.DataFrame,
                 hw: HardwareSpec, psum_bits: int) -> pd.DataFrame:
    """`energy_compare` of ZigZag's rows ``zz`` and our per-layer ``frame``."""
    widths = port_bits(hw, psum_bits)
    theirs = pd.DataFrame([zigzag_energy(row, widths, hw.array.word_bits)
                           for row in zz.to_dict("records")])
    theirs.insert(0, "layer", [la.name for la in layers])
    return energy_compare(theirs, our_energy(frame, hw.array.word_bytes))


def within(table: pd.DataFrame, col: str, tolerance: float) -> int:
    """Layers (not the total) whose ours/ZigZag ratio of ``col`` is within ``tolerance``."""
    return int(((table[f"ratio_{col}"].iloc[:-1] - 1).abs() <= tolerance).sum())


def energy_markdown(table: pd.DataFrame, tolerance: float = 0.10) -> str:
    """Per compared quantity: the layers within ``tolerance``, and the network's ZigZag value,
    ours and their ratio (energy in µJ, SRAM accesses in thousands of words, DRAM in MB)."""
    total = table.iloc[-1]
    layers = len(table) - 1
    rows = []
    for label, col in ENERGY_ROWS:
        scale, unit = ((1e6, "µJ") if col.endswith("_pj")
                       else (1e6, "MB") if col.endswith("_bytes") else (1e3, "k words"))
        rows.append([label, unit, f"{within(table, col, tolerance)} / {layers}",
                     f"{total[f'zz_{col}'] / scale:,.1f}", f"{total[f'ours_{col}'] / scale:,.1f}",
                     f"{total[f'ratio_{col}']:.3f}"])
    head = ["quantity", "unit", f"layers within {tolerance:.0%}", "ZigZag (network)",
            "ours (network)", "ours / ZigZag"]
    return markdown_table(head, rows)


def energy_outliers(table: pd.DataFrame, frame: pd.DataFrame, tolerance: float = 0.10) -> str:
    """A Markdown table of the layer shapes whose MAC + SRAM + DRAM energy differs by more than
    ``tolerance``: the ratio, the components' ratios that explain it and the DRAM bytes
    (repeated shapes once, ``(xN)``); ``frame`` is ours, for the shapes and our mapping."""
    body = table.iloc[:-1].copy()
    body["shape"] = [(p, k, n, round(r, 6)) for p, k, n, r in
                     zip(frame.P, frame.K, frame.N, body.ratio_compared_pj, strict=True)]
    body["mapping"] = frame.mapping.to_numpy()
    body["count"] = body.groupby("shape", sort=False).layer.transform("size")
    off = body[(body.ratio_compared_pj - 1).abs() > tolerance].drop_duplicates("shape")
    head = ["layer", "ours / ZigZag", "DRAM", "ofmap SRAM", "filter SRAM", "ifmap SRAM",
            "ZigZag DRAM MB (I / W / O)", "ours DRAM MB (I / W / O)", "ours mapping"]

    def mb(row: pd.Series, side: str) -> str:
        return " / ".join(f"{row[f'{side}_dram_{op}_bytes'] / 1e6:.2f}" for op in OPERANDS)

    rows = [[row.layer + (f" (x{row['count']})" if row["count"] > 1 else ""),
             f"{row.ratio_compared_pj:.2f}", f"{row.ratio_dram_pj:.2f}",
             f"{row.ratio_ofmap_sram_pj:.2f}", f"{row.ratio_filter_sram_pj:.2f}",
             f"{row.ratio_ifmap_sram_pj:.2f}", mb(row, "zz"), mb(row, "ours"), row.mapping]
            for _, row in off.iterrows()]
    return markdown_table(head, rows) if rows else "No layer differs by more than that."


def energy_agreement(table: pd.DataFrame, tolerance: float = 0.10) -> str:
    """Two sentences: layers whose MAC + SRAM + DRAM energy agrees within ``tolerance`` (all of
    them, and those whose DRAM bytes agree within 1 %), and the network's ratio (with and
    without the registers)."""
    total, body = table.iloc[-1], table.iloc[:-1]
    same_dram = body[(body.ratio_dram_pj - 1).abs() <= 0.01]
    agree = int(((same_dram.ratio_compared_pj - 1).abs() <= tolerance).sum())
    return (f"Energy of MACs, SRAMs and DRAM (dynamic, no PE registers): ours is within "
            f"{tolerance:.0%} of ZigZag's on {within(table, 'compared_pj', tolerance)} of the "
            f"{len(body)} layers, and on {agree} of the {len(same_dram)} layers where both move "
            f"the same DRAM bytes (within 1%); over the network ours is "
            f"{total.ratio_compared_pj:.3f}x ZigZag's ({total.ratio_total_pj:.3f}x with each "
            "tool's registers).")


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--hw", default="edge-32x32", help="preset or .toml (a WS array)")
    parser.add_argument("--layers", default="", help="comma-separated layer names (default all)")
    parser.add_argument("--psum-bits", type=int,
                        help="ZigZag's partial-sum width in bits (default: the array's "
                        "psum_bits, else 32); final outputs are word-wide")
    parser.add_argument("--lpf-limit", type=int, default=6,
                        help="LOMA's loop prime factor limit (ZigZag's default 6)")
    parser.add_argument("--rerun-zigzag", action="store_true", help="ignore the cached results")
    parser.add_argument("--out", help="write the table to this .csv")
    parser.add_argument("--markdown", type=int, metavar="N", default=5,
                        help="the Markdown table shows the N layer shapes where ours moves the "
                        "most more DRAM bytes than ZigZag and the N most fewer (default 5)")
    parser.add_argument("--energy-out", help="write the per-layer energy table to this .csv")
    parser.add_argument("--publish", action="store_true",
                        help="write docs/results/zigzag_crosscheck.md and zigzag_energy.md")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the cross-check; print (and with ``--publish`` write) the tables."""
    args = build_parser().parse_args(argv)
    results = Results("zigzag_crosscheck", script_command(), args.publish)
    energy = Results("zigzag_energy", script_command(), args.publish)
    hw = load_hardware(args.hw)
    if hw.array.dataflow != "ws":
        raise UserError(f"--hw {args.hw}: dataflow {hw.array.dataflow!r}; the ZigZag "
                        "description is weight-stationary: use a ws array")
    layers = load_layers(args.model)
    if args.layers:
        wanted = args.layers.split(",")
        unknown = sorted(set(wanted) - {la.name for la in layers})
        if unknown:
            raise UserError(f"--layers: {unknown[0]!r} is not a layer of {args.model}")
        layers = [la for la in layers if la.name in wanted]
    psum_bits = args.psum_bits or getattr(hw.array, "psum_bits", 32)
    zz = run_zigzag(layers, hw, psum_bits, args.lpf_limit, args.rerun_zigzag)
    ours, walls = run_ours(layers, hw)
    table = compare(layers, zz, ours)
    with pd.option_context("display.width", 250, "display.max_columns", 40,
                           "display.float_format", "{:,.2f}".format):
        print(table.drop(columns="zz_dram_loops").to_string(index=False))
        print("\nZigZag's temporal loops above each operand's SRAM (outermost first):")
        print(table[["layer", "zz_dram_loops"]].iloc[:-1].to_string(index=False))
    distinct = zz.drop_duplicates("key")
    results.add(f"{args.model} (batch 1, 224x224, dense) on `{hw.name}`: ZigZag "
                f"{ZIGZAG_VERSION}'s best mapping (LOMA, lpf_limit {args.lpf_limit}, lowest "
                f"latency) against ours, with SCALE-Sim's schedule (`scalesim`), the mapper "
                f"(`best`) and the mapper with two weight registers per PE (`best-db`). MB = 10^6 "
                f"bytes. ZigZag took {distinct.zz_wall_s.sum():.0f} s for the "
                f"{len(distinct)} distinct shapes of the {len(layers)} layers (when it ran; its "
                "rows are cached); ours "
                + ", ".join(f"{wall * 1e3:.0f} ms ({name})" for name, wall in walls.items())
                + ", warm.")
    results.add(agreement(table))
    results.add(agreement(table, "best-db"))
    results.add(cycles_agreement(table))
    results.add(more_bytes(table, "best") + " " + more_bytes(table))
    results.add(f"The {args.markdown} shapes where ours (`best-db`) moves most more and most "
                "fewer DRAM bytes than ZigZag, and the network. \"(xN)\": N layers of that shape. "
                "\"Loops above the SRAMs\": ZigZag's temporal loops kept in DRAM per operand, "
                "outermost first; every iteration refills that operand's SRAM tile (W empty: all "
                "weights stay resident).")
    results.add(markdown(table, args.markdown))
    results.write()
    if args.out:
        write_atomic(Path(args.out), lambda tmp: table.to_csv(tmp, index=False))

    e = hw.energy
    energy.add(f"{args.model} (batch 1, 224x224, dense) on `{hw.name}`: ZigZag {ZIGZAG_VERSION} "
               "with this simulator's energy table as its unit costs, against ours (the mapper, "
               f"`best`). Unit costs: MAC {e.mac_pj:.3g} pJ; SRAM word read / write "
               f"{e.ifmap_sram_read_pj:.3g} / {e.ifmap_sram_write_pj:.3g} (ifmap), "
               f"{e.filter_sram_read_pj:.3g} / {e.filter_sram_write_pj:.3g} (filter), "
               f"{e.ofmap_sram_read_pj:.3g} / {e.ofmap_sram_write_pj:.3g} pJ (ofmap); DRAM "
               f"{e.dram_pj_per_byte:.4g} pJ per byte; PE register {e.reg_pj:.3g} pJ. Energy is "
               "dynamic (ours less leakage). SRAM accesses in operand-width words (a 32-bit "
               "partial sum counts four), ZigZag's from the accesses it prices. Each tool picks "
               "its own mapping per layer, for the lowest energy (both objectives `energy`) and "
               "for the lowest latency (the mappings of the DRAM cross-check).")
    tables = {}
    for objective in ("energy", "latency"):
        zz_rows = zz if objective == "latency" else run_zigzag(
            layers, hw, psum_bits, args.lpf_limit, args.rerun_zigzag, opt=objective)
        frame = ours["best"] if objective == "latency" else simulate(
            layers, hw, mapping="best", objective=objective).to_frame(totals=False)
        tables[objective] = etable = energy_table(layers, zz_rows, frame, hw, psum_bits)
        energy.add(f"**Lowest {objective}.** " + energy_agreement(etable))
        energy.add(energy_markdown(etable))
        energy.add(f"Lowest {objective}: the layers whose energy of MACs, SRAMs and DRAM differs "
                   "by more than 10 %, with each component's ours / ZigZag ratio "
                   "(\"(xN)\": N layers of that shape):")
        energy.add(energy_outliers(etable, frame))
    energy.write()
    if args.energy_out:
        both = pd.concat([t.assign(objective=o) for o, t in tables.items()], ignore_index=True)
        write_atomic(Path(args.energy_out), lambda tmp: both.to_csv(tmp, index=False))


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
