"""A simulated GPU cluster for tests, benchmarks and demos (``fleetscope simulate``).

N nodes of 8 H100 GPUs, each served as a ``fleetscope exporter`` endpoint (``/metrics`` and ``/events``,
many nodes from one process on their own ports) or all behind one Prometheus-compatible query API for
large N, with training ranks' step metrics and faults injected at a time on a node, GPU, NVLink, EFA
device or rank. Everything it serves says it is a simulation (``fleetscope_simulation_info``); nothing in
fleetscope reads it unless pointed at it.

Modules: :mod:`~fleetscope.simulate.faults` (kinds, the ``--fault`` grammar, YAML scenarios),
:mod:`~fleetscope.simulate.cluster` (the values), :mod:`~fleetscope.simulate.promql` (the query API),
:mod:`~fleetscope.simulate.serve` (the HTTP endpoints, the ``file_sd`` file).
"""

from fleetscope.simulate.cluster import SIMULATION_INFO, SimulatedCluster
from fleetscope.simulate.faults import KINDS, Fault, Scenario, load_scenario, node_name, parse_fault
from fleetscope.simulate.serve import ExporterEndpoints, QueryAPI, write_file_sd

__all__ = [
    "KINDS",
    "SIMULATION_INFO",
    "ExporterEndpoints",
    "Fault",
    "QueryAPI",
    "Scenario",
    "SimulatedCluster",
    "load_scenario",
    "node_name",
    "parse_fault",
    "write_file_sd",
]
