"""nvidia-smi output without the lines that usually name the GPU, and ``--query-gpu`` CSV output.

Shapes: ``nvidia-smi -q`` clock-event block and default-table rows as in fleetscope/examples/incidents/32 and
21; ``--query-gpu`` CSV as ``nvidia-smi --help-query-gpu`` names its fields (header with units, ``[N/A]``).
"""

from __future__ import annotations

from pathlib import Path

from tests.collectors.judging import diagnose

CLOCK_BLOCK = (
    "    Clocks Event Reasons\n"
    "        Idle                                   : Not Active\n"
    "        Applications Clocks Setting            : Not Active\n"
    "        SW Power Cap                           : Not Active\n"
    "        HW Slowdown                            : Not Active\n"
    "            HW Thermal Slowdown                : Active\n"
    "            HW Power Brake Slowdown            : Not Active\n"
    "        Sync Boost                             : Not Active\n"
    "        SW Thermal Slowdown                    : Not Active\n"
)
CUT_TABLE = (
    "| N/A   ERR!    P0            ERR! /  700W |  0MiB /  81559MiB |     ERR!      Default |\n"
    "|                                         |                        |                  ERR! |\n"
)
CSV = (
    "index, pci.bus_id, temperature.gpu, clocks_event_reasons.hw_thermal_slowdown, "
    "ecc.errors.uncorrected.volatile.total\n"
    "0, 00000000:18:00.0, 41, Not Active, 0\n"
    "1, 00000000:2A:00.0, 93, Active, [N/A]\n"
    "2, 00000000:3A:00.0, 40, Not Active, 4\n"
)


def test_a_thermal_block_without_its_gpu_header_is_read(tmp_path: Path) -> None:
    out = diagnose(tmp_path, {"node-01/nvidia-smi-q.txt": CLOCK_BLOCK})
    assert out["incident"] is True
    top = out["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"], top["gpu_pci_bus_id"]) == (
        "thermal_slowdown",
        "thermal_power",
        "node-01",
        None,
        None,
    )
    assert top["summary"] == (
        "A GPU of node-01 (nvidia-smi's GPU header line is missing, so which one is unknown) is slowed "
        "down for heat or power: the clock-event reason 'HW Thermal Slowdown' is active"
    )


def test_a_gpu_header_inside_a_log_places_the_block(tmp_path: Path) -> None:
    text = "2024-03-05 10:00:00,001 INFO collecting nvidia-smi -q\nGPU 00000000:3B:00.0\n" + CLOCK_BLOCK
    top = diagnose(tmp_path, {"node-01/collect.log": text})["root_causes"][0]
    assert (top["kind"], top["gpu_pci_bus_id"]) == ("thermal_slowdown", "0000:3b:00.0")


def test_an_err_row_without_its_gpu_row_is_a_lost_gpu(tmp_path: Path) -> None:
    top = diagnose(tmp_path, {"node-01/nvidia-smi.txt": CUT_TABLE})["root_causes"][0]
    assert (top["kind"], top["layer"], top["node"], top["gpu"]) == (
        "signature:nvidia_smi_table_err_unplaced",
        "gpu_hardware",
        "node-01",
        None,
    )
    assert top["summary"] == (
        "nvidia-smi on node-01 shows ERR! for a GPU whose table row with its index and bus id was cut off: "
        "NVML lost contact with one of the node's GPUs"
    )


def test_query_gpu_csv_maps_bus_ids_and_states_faults(tmp_path: Path) -> None:
    xid = (
        "[  100.000001] NVRM: Xid (PCI:0000:3a:00): 48, pid=1, name=python, "
        "An uncorrectable double bit error\n"
    )
    out = diagnose(tmp_path, {"node-03/gpus.csv": CSV, "node-03/dmesg.log": xid})
    found = {(r["kind"], r["gpu"], r["gpu_pci_bus_id"]) for r in out["root_causes"]}
    assert ("thermal_slowdown", 1, "0000:2a:00.0") in found
    assert ("gpu_memory_errors", 2, "0000:3a:00.0") in found
    assert ("xid:48", 2, "0000:3a:00.0") in found  # the kernel line's bus id, indexed by the CSV


def test_noheader_csv_is_still_a_bus_id_map(tmp_path: Path) -> None:
    csv = (
        "0, 00000000:18:00.0, GPU-1f0c3b7a-aaaa-bbbb-cccc-000000000000\n"
        "5, 00000000:BA:00.0, GPU-1f0c3b7a-aaaa-bbbb-cccc-000000000005\n"
    )
    xid = "[  100.000001] NVRM: Xid (PCI:0000:ba:00): 79, pid=1, name=python, GPU has fallen off the bus.\n"
    top = diagnose(tmp_path, {"node-01/smi.csv": csv, "node-01/dmesg.log": xid})["root_causes"][0]
    assert (top["kind"], top["gpu"], top["gpu_pci_bus_id"]) == ("xid:79", 5, "0000:ba:00.0")
    assert top["summary"] == "Xid 79 (GPU has fallen off the bus) on GPU 5 (0000:ba:00.0) on node-01"
