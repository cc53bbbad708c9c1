"""Grafana dashboards as code, built with grafana-foundation-sdk (the ``dashboards`` extra).

Six dashboards read the exporter's and collector's metrics through one Prometheus data source: cluster
overview, GPU health, interconnect, training job, fleetscope's own health, and the open incidents
(every dashboard also draws the collector's incidents as annotations, from
``fleetscope_collector_open_incident_info``). Every panel queries the data source the ``datasource``
variable names; ``node`` (the Prometheus ``instance`` of an exporter), ``gpu`` and ``job`` (a Slurm or
torchrun job id) filter where a dashboard has them.

The JSON Grafana reads is generated, then committed under ``fleetscope/dashboards/grafana/`` (one file
per dashboard, named by its uid); ``docker-compose.yml`` provisions that folder and ``fleetscope
dashboards push`` uploads it. After changing this module run ``fleetscope dashboards generate``; a test
fails while the committed files differ from what this module makes.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from fleetscope.dashboards import GRAFANA_DIR

#: Tag on every fleetscope dashboard (Grafana's dashboard list filters on it).
TAG = "fleetscope"
#: The exporter's scrape job name, as in deploy/prometheus/prometheus.yml and the alerting rules.
EXPORTER_JOB = "fleetscope-exporter"
#: The collector's scrape job name.
COLLECTOR_JOB = "fleetscope-collector"

_DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
_NODE = 'instance=~"$node"'
_GPU = 'instance=~"$node", gpu=~"$gpu"'
_RATE = "$__rate_interval"
#: The incidents the collector holds open, one series each (labels fingerprint, layer, node, gpu).
INCIDENTS_EXPR = "fleetscope_collector_open_incident_info"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel.

    Attributes:
        expr: The PromQL expression; may use the dashboard's variables and ``$__rate_interval``.
        legend: Grafana legend format (``{{instance}} GPU {{gpu}}``).
        instant: An instant query (tables, stats) instead of a range query.
    """

    expr: str
    legend: str = ""
    instant: bool = False


def _targets(panel: Any, queries: Sequence[Query]) -> Any:
    if len(queries) > len(string.ascii_uppercase):
        raise ValueError(f"a panel takes at most 26 queries (refId A-Z), not {len(queries)}")
    for ref, query in zip(string.ascii_uppercase, queries, strict=False):
        target = prometheus.Dataquery().expr(query.expr).ref_id(ref).datasource(_DS)
        target = target.legend_format(query.legend) if query.legend else target
        target = target.instant() if query.instant else target.range()
        if query.instant:
            target = target.format(PromQueryFormat.TABLE)
        panel = panel.with_target(target)
    return panel


def _graph(title: str, unit: str, description: str, *queries: Query, width: int = 12) -> Builder[Any]:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(_DS)
    return _targets(panel.height(8).span(width), queries)


def _stat(title: str, unit: str, description: str, query: Query, width: int = 4) -> Builder[Any]:
    panel = stat.Panel().title(title).description(description).unit(unit).datasource(_DS)
    return _targets(panel.height(4).span(width), [query])


def _table(title: str, description: str, *queries: Query, width: int = 24) -> Builder[Any]:
    panel = table.Panel().title(title).description(description).datasource(_DS)
    if len(queries) > 1:  # one row per series, a value column per query (Grafana's "merge" transformation)
        panel = panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    return _targets(panel.height(8).span(width), queries)


def _datasource_variable() -> Builder[Any]:
    return gdash.DatasourceVariable("datasource").label("Data source").type("prometheus")


def _query_variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool = True,
    sort: model.VariableSort = model.VariableSort.ALPHABETICAL_ASC,
) -> Builder[Any]:
    variable = (
        gdash.QueryVariable(name)
        .label(label)
        .datasource(_DS)
        .query({"query": query, "refId": f"{name}-values"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(sort)
    )
    if multi:
        variable = variable.multi(True).include_all(True)
    return variable


def _incident_annotation() -> Builder[Any]:
    return (
        gdash.AnnotationQuery()
        .name("fleetscope incidents")
        .datasource(_DS)
        .enable(True)
        .icon_color("red")
        .expr(INCIDENTS_EXPR)
    )


# Prometheus annotation fields Grafana reads that grafana-foundation-sdk does not model: the title and
# text of each incident's region (one region while its series exists) and its tags.
_INCIDENT_ANNOTATION_FIELDS = {
    "step": "60s",
    "titleFormat": "fleetscope incident: {{layer}} on {{node}} GPU {{gpu}}",
    "textFormat": "fleetscope incidents show {{fingerprint}}",
    "tagKeys": "layer,node,gpu",
    "useValueForTime": False,
}


def _dashboard(uid: str, title: str, description: str, variables: Iterable[Builder[Any]]) -> Any:
    board = (
        gdash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .editable()
        .annotation(_incident_annotation())
    )
    for variable in [_datasource_variable(), *variables]:
        board = board.with_variable(variable)
    return board


def _node_variable(selector: str = f'up{{job="{EXPORTER_JOB}"}}') -> Builder[Any]:
    # From Prometheus's own `up` by default, so that an exporter that stopped answering is still offered.
    return _query_variable("node", "Node", f"label_values({selector}, instance)")


def _gpu_variable() -> Builder[Any]:
    return _query_variable(
        "gpu",
        "GPU",
        'label_values(fleetscope_gpu_up{instance=~"$node"}, gpu)',
        sort=model.VariableSort.NUMERICAL_ASC,
    )


def cluster_overview() -> Any:
    """The cluster at a glance: GPUs answering, lost, power, heat, Xids, exporters down, incidents."""
    board = _dashboard(
        "fleetscope-cluster",
        "fleetscope / Cluster overview",
        "How many GPUs answer, which nodes run hot or draw most, Xids and open incidents.",
        [_node_variable()],
    )
    for panel in (
        _stat(
            "GPUs",
            "short",
            "GPUs the exporters report (fleetscope_gpu_info).",
            Query(f"sum(instance:fleetscope_gpus:count{{{_NODE}}})", instant=True),
        ),
        _stat(
            "GPUs answering NVML",
            "short",
            "GPUs whose NVML reads finished within the deadline.",
            Query(f"sum(instance:fleetscope_gpu_up:sum{{{_NODE}}})", instant=True),
        ),
        _stat(
            "GPUs lost",
            "short",
            "GPUs NVML reports lost (fallen off the bus).",
            Query(f"sum(fleetscope_gpu_lost{{{_NODE}}})", instant=True),
        ),
        _stat(
            "Exporters down",
            "short",
            "Exporters Prometheus could not scrape in its latest try.",
            Query(f'count(up{{job="{EXPORTER_JOB}", {_NODE}}} == 0) or vector(0)', instant=True),
        ),
        _stat(
            "Open incidents",
            "short",
            "Incidents the collector holds open.",
            Query("max(fleetscope_collector_incidents_open)", instant=True),
        ),
        _stat(
            "Power drawn",
            "watt",
            "Power of every GPU, summed.",
            Query(f"sum(instance:fleetscope_gpu_power_watts:sum{{{_NODE}}})", instant=True),
        ),
        _graph(
            "GPU power by node",
            "watt",
            "Sum of the node's GPUs (nvmlDeviceGetPowerUsage).",
            Query(f"instance:fleetscope_gpu_power_watts:sum{{{_NODE}}}", "{{instance}}"),
        ),
        _graph(
            "Hottest GPU by node",
            "celsius",
            "The node's hottest GPU die.",
            Query(f"instance:fleetscope_gpu_temperature_celsius:max{{{_NODE}}}", "{{instance}}"),
        ),
        _graph(
            "GPU utilisation by node",
            "percentunit",
            "Mean of the node's GPUs (nvmlDeviceGetUtilizationRates).",
            Query(f"instance:fleetscope_gpu_utilization_ratio:avg{{{_NODE}}}", "{{instance}}"),
        ),
        _graph(
            "Xid errors by node (10 min)",
            "short",
            "Xid errors counted in the kernel log over 10 minutes.",
            Query(
                f"sum by (instance, xid) (instance_gpu_xid:fleetscope_gpu_xid_errors:increase10m{{{_NODE}}})",
                "{{instance}} Xid {{xid}}",
            ),
        ),
        _table(
            "Open incidents",
            "What the collector holds open; `fleetscope incidents show FINGERPRINT`.",
            Query(INCIDENTS_EXPR, instant=True),
        ),
    ):
        board = board.with_panel(panel)
    return board


def gpu_health() -> Any:
    """Per GPU: temperatures, power, clock-event (throttle) time per reason, ECC, row remapping, Xid."""
    board = _dashboard(
        "fleetscope-gpu",
        "fleetscope / GPU health",
        "Per GPU: heat, power, throttling by reason, ECC, row remapping, Xids and the recovery action.",
        [_node_variable("fleetscope_gpu_up"), _gpu_variable()],
    )
    legend = "{{instance}} GPU {{gpu}}"
    for panel in (
        _graph(
            "NVML answering, GPUs lost",
            "short",
            "1 while the GPU's NVML reads finish within the exporter's deadline; 1 once NVML reports the GPU "
            "lost (fallen off the bus, Xid 79).",
            Query(f"fleetscope_gpu_up{{{_GPU}}}", f"{legend} answering"),
            Query(f"fleetscope_gpu_lost{{{_GPU}}}", f"{legend} lost"),
            width=24,
        ),
        _graph(
            "Temperature",
            "celsius",
            "GPU die and HBM temperature (nvmlDeviceGetTemperature, field values).",
            Query(f"fleetscope_gpu_temperature_celsius{{{_GPU}}}", f"{legend} die"),
            Query(f"fleetscope_gpu_memory_temperature_celsius{{{_GPU}}}", f"{legend} memory"),
        ),
        _graph(
            "Power",
            "watt",
            "Power drawn and the enforced limit (nvmlDeviceGetPowerUsage, nvmlDeviceGetEnforcedPowerLimit).",
            Query(f"fleetscope_gpu_power_watts{{{_GPU}}}", legend),
            Query(f"fleetscope_gpu_power_limit_watts{{{_GPU}}}", f"{legend} limit"),
        ),
        _graph(
            "Throttle time by reason",
            "percentunit",
            "Share of time clocks were held down, per reason (nvmlDeviceGetViolationStatus).",
            Query(
                f"sum by (instance, gpu, reason) (rate(fleetscope_gpu_clock_event_violation_seconds_total"
                f"{{{_GPU}}}[{_RATE}]))",
                f"{legend} {{{{reason}}}}",
            ),
        ),
        _graph(
            "Clock-event reasons active",
            "short",
            "1 while a reason holds the clocks down (nvmlDeviceGetCurrentClocksEventReasons).",
            Query(
                f"max by (instance, gpu, reason) (fleetscope_gpu_clock_event_reason_active{{{_GPU}}})",
                f"{legend} {{{{reason}}}}",
            ),
        ),
        _graph(
            "ECC errors",
            "short",
            "Volatile ECC errors counted in the interval (nvmlDeviceGetTotalEccErrors).",
            Query(
                f"increase(fleetscope_gpu_ecc_volatile_corrected_errors_total{{{_GPU}}}[{_RATE}])",
                f"{legend} corrected",
            ),
            Query(
                f"increase(fleetscope_gpu_ecc_volatile_uncorrected_errors_total{{{_GPU}}}[{_RATE}])",
                f"{legend} uncorrected",
            ),
        ),
        _graph(
            "Xid errors",
            "short",
            "Xid errors in the kernel log in the interval, by Xid.",
            Query(
                f"sum by (instance, gpu, xid) (increase(fleetscope_gpu_xid_errors_total{{{_GPU}}}[{_RATE}]))",
                f"{legend} Xid {{{{xid}}}}",
            ),
        ),
        _table(
            "Row remapping and recovery",
            "Remapped rows (nvmlDeviceGetRemappedRows), a remap pending "
            "or failed, retired pages, and the recovery action the driver asks for "
            "(NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: 0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, "
            "4 drain and reset).",
            Query(f"fleetscope_gpu_remapped_rows_correctable_total{{{_GPU}}}", instant=True),
            Query(f"fleetscope_gpu_remapped_rows_uncorrectable_total{{{_GPU}}}", instant=True),
            Query(f"fleetscope_gpu_remapped_rows_pending{{{_GPU}}}", instant=True),
            Query(f"fleetscope_gpu_remapped_rows_failure{{{_GPU}}}", instant=True),
            Query(f"fleetscope_gpu_recovery_action{{{_GPU}}}", instant=True),
        ),
        _graph(
            "Recovery action",
            "short",
            "What the driver asks for (0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset).",
            Query(f"fleetscope_gpu_recovery_action{{{_GPU}}}", legend),
        ),
        _graph(
            "PCIe replays",
            "short",
            "PCIe replays in the interval (nvmlDeviceGetPcieReplayCounter).",
            Query(f"increase(fleetscope_gpu_pcie_replays_total{{{_GPU}}}[{_RATE}])", legend),
        ),
        _table(
            "Jobs on these GPUs",
            "Which job runs on each GPU (Slurm mapping, process environment, cgroup).",
            Query(f"fleetscope_gpu_job_info{{{_GPU}}}", instant=True),
        ),
    ):
        board = board.with_panel(panel)
    return board


def interconnect() -> Any:
    """NVLink and InfiniBand/EFA: errors, retransmits, bandwidth, measured latency."""
    board = _dashboard(
        "fleetscope-interconnect",
        "fleetscope / Interconnect",
        "NVLink and InfiniBand/EFA errors, retransmits, bandwidth and measured latency.",
        [_node_variable(), _gpu_variable()],
    )
    link = "{{instance}} GPU {{gpu}} link {{link}}"
    port = "{{instance}} {{device}}:{{port}}"
    nvlink_errors = [
        Query(
            f"sum by (instance, gpu) (increase(fleetscope_nvlink_{kind}_errors_total{{{_GPU}}}[{_RATE}]))",
            f"{{{{instance}}}} GPU {{{{gpu}}}} {kind.replace('_', ' ')}",
        )
        for kind in ("crc_flit", "crc_data", "replay", "recovery", "ecc_data")
    ]
    for panel in (
        _graph(
            "NVLink errors",
            "short",
            "NVLink error counters in the interval, summed over a GPU's links "
            "(nvmlDeviceGetNvLinkErrorCounter).",
            *nvlink_errors,
        ),
        _graph(
            "NVLinks down",
            "short",
            "Links not active (nvmlDeviceGetNvLinkState).",
            Query(
                f"count by (instance, gpu) (fleetscope_nvlink_up{{{_GPU}}} == 0) or "
                f"sum by (instance, gpu) (fleetscope_nvlink_up{{{_GPU}}} * 0)",
                "{{instance}} GPU {{gpu}}",
            ),
        ),
        _graph(
            "NVLink bandwidth",
            "Bps",
            "Data sent and received (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX).",
            Query(
                f"sum by (instance, gpu) (rate(fleetscope_nvlink_transmit_bytes_total{{{_GPU}}}[{_RATE}]))",
                "{{instance}} GPU {{gpu}} transmit",
            ),
            Query(
                f"sum by (instance, gpu) (rate(fleetscope_nvlink_receive_bytes_total{{{_GPU}}}[{_RATE}]))",
                "{{instance}} GPU {{gpu}} receive",
            ),
        ),
        _graph(
            "NVLink speed",
            "Bps",
            "Link speed (nvmlDeviceGetNvLinkSpeed... field values).",
            Query(f"fleetscope_nvlink_speed_bytes_per_second{{{_GPU}}}", link),
        ),
        _graph(
            "GPU peer-to-peer latency (p90)",
            "s",
            "Round trips GPU -> peer -> GPU over NVLink, from the exporter's torch CUDA probe.",
            Query(
                "histogram_quantile(0.9, sum by (instance, gpu, peer, le) (rate("
                f"fleetscope_nvlink_probe_latency_seconds_bucket{{{_GPU}}}[{_RATE}])))",
                "{{instance}} GPU {{gpu}} -> {{peer}}",
            ),
        ),
        _graph(
            "InfiniBand errors",
            "short",
            "Port error counters in the interval (ports/P/counters/).",
            Query(
                f"sum by (instance, device, port) (increase(fleetscope_infiniband_port_receive_errors_total"
                f"{{{_NODE}}}[{_RATE}]))",
                f"{port} receive errors",
            ),
            Query(
                f"sum by (instance, device, port) (increase(fleetscope_infiniband_symbol_errors_total"
                f"{{{_NODE}}}[{_RATE}]))",
                f"{port} symbol errors",
            ),
            Query(
                f"sum by (instance, device, port) (increase(fleetscope_infiniband_link_downed_total"
                f"{{{_NODE}}}[{_RATE}]))",
                f"{port} link downed",
            ),
            Query(
                "sum by (instance, device, port) (increase("
                f"fleetscope_infiniband_port_transmit_discards_total{{{_NODE}}}[{_RATE}]))",
                f"{port} transmit discards",
            ),
        ),
        _graph(
            "EFA retransmits and errors",
            "short",
            "EFA hardware counters in the interval (ports/P/hw_counters/).",
            Query(
                f"increase(fleetscope_efa_retransmitted_packets_total{{{_NODE}}}[{_RATE}])",
                f"{port} retransmitted packets",
            ),
            Query(
                f"increase(fleetscope_efa_retransmit_timeout_events_total{{{_NODE}}}[{_RATE}])",
                f"{port} retransmit timeouts",
            ),
            Query(
                f"increase(fleetscope_efa_unresponsive_remote_events_total{{{_NODE}}}[{_RATE}])",
                f"{port} unresponsive remotes",
            ),
            Query(
                f"increase(fleetscope_efa_impaired_remote_connection_events_total{{{_NODE}}}[{_RATE}])",
                f"{port} impaired remotes",
            ),
            Query(
                f"increase(fleetscope_efa_rdma_read_work_request_errors_total{{{_NODE}}}[{_RATE}]) + "
                f"increase(fleetscope_efa_rdma_write_work_request_errors_total{{{_NODE}}}[{_RATE}])",
                f"{port} RDMA errors",
            ),
        ),
        _graph(
            "InfiniBand and EFA bandwidth",
            "Bps",
            "Bytes sent and received per port.",
            Query(
                f"rate(fleetscope_infiniband_port_transmit_bytes_total{{{_NODE}}}[{_RATE}])",
                f"{port} IB transmit",
            ),
            Query(
                f"rate(fleetscope_infiniband_port_receive_bytes_total{{{_NODE}}}[{_RATE}])",
                f"{port} IB receive",
            ),
            Query(f"rate(fleetscope_efa_transmit_bytes_total{{{_NODE}}}[{_RATE}])", f"{port} EFA transmit"),
            Query(f"rate(fleetscope_efa_receive_bytes_total{{{_NODE}}}[{_RATE}])", f"{port} EFA receive"),
        ),
        _graph(
            "Ports not active",
            "short",
            "Ports whose state is not ACTIVE (4) (ports/P/state).",
            Query(
                f"count by (instance) (fleetscope_infiniband_port_state{{{_NODE}}} != 4) or "
                f"sum by (instance) (fleetscope_infiniband_port_state{{{_NODE}}} * 0)",
                "{{instance}}",
            ),
        ),
        _graph(
            "Network round trip to peers (p90)",
            "s",
            "The exporter's netprobe: fi_pingpong or TCP echo.",
            Query(
                "histogram_quantile(0.9, sum by (instance, peer, transport, le) (rate("
                f"fleetscope_network_probe_rtt_seconds_bucket{{{_NODE}}}[{_RATE}])))",
                "{{instance}} -> {{peer}} ({{transport}})",
            ),
        ),
    ):
        board = board.with_panel(panel)
    return board


def training_job() -> Any:
    """One job's ranks: step time per rank, phases, throughput, stragglers."""
    board = _dashboard(
        "fleetscope-training",
        "fleetscope / Training job",
        "Step time per rank, where the time goes, throughput, and the ranks that hold the others back.",
        [
            _query_variable("job", "Job", "label_values(fleetscope_training_rank_info, job_id)", multi=False),
            _query_variable(
                "node", "Node", 'label_values(fleetscope_training_rank_info{job_id="$job"}, instance)'
            ),
        ],
    )
    of_job = f'group_left (job_id) fleetscope_training_rank_info{{job_id="$job", {_NODE}}}'
    mean_step = (
        f"rate(fleetscope_training_step_duration_seconds_sum{{{_NODE}}}[{_RATE}]) / "
        f"rate(fleetscope_training_step_duration_seconds_count{{{_NODE}}}[{_RATE}])"
    )
    compute = (
        "(sum by (instance, rank) (rate(fleetscope_training_phase_seconds_total"
        f'{{{_NODE}, phase=~"forward|backward|optimizer"}}[{_RATE}])) * on (instance, rank) {of_job})'
    )
    for panel in (
        _graph(
            "Step time per rank",
            "s",
            "Mean step time of each rank in the interval (training hook).",
            Query(f"({mean_step}) * on (instance, rank) {of_job}", "rank {{rank}}"),
            width=24,
        ),
        _graph(
            "Stragglers: compute time over the job's median",
            "percentunit",
            "Each rank's share of time in forward, backward and optimizer, divided by the median rank's, "
            "minus one. Ranks of a synchronous job finish their steps together, so step times hide a "
            "straggler: it computes longest while the others wait for it at the collective.",
            Query(
                f"{compute} / on (job_id) group_left quantile by (job_id) (0.5, {compute}) - 1",
                "rank {{rank}}",
            ),
        ),
        _graph(
            "Collective wait per rank",
            "percentunit",
            "Share of time each rank waits in collectives (the training hook's comm hook): the ranks that "
            "wait least are the ones the others wait for.",
            Query(
                "sum by (instance, rank) (rate(fleetscope_training_phase_seconds_total"
                f'{{{_NODE}, phase="collective_wait"}}[{_RATE}])) * on (instance, rank) {of_job}',
                "rank {{rank}}",
            ),
        ),
        _graph(
            "Where the time goes",
            "percentunit",
            "Share of wall time per phase, all ranks (data wait, "
            "forward, backward, optimizer, collective wait).",
            Query(
                f"sum by (phase) (rate(fleetscope_training_phase_seconds_total{{{_NODE}}}[{_RATE}]) "
                f"* on (instance, rank) {of_job})",
                "{{phase}}",
            ),
        ),
        _graph(
            "Throughput",
            "short",
            "Samples and tokens per second, the whole job.",
            Query(
                f"sum(rate(fleetscope_training_samples_total{{{_NODE}}}[{_RATE}]) "
                f"* on (instance, rank) {of_job})",
                "samples/s",
            ),
            Query(
                f"sum(rate(fleetscope_training_tokens_total{{{_NODE}}}[{_RATE}]) "
                f"* on (instance, rank) {of_job})",
                "tokens/s",
            ),
        ),
        _graph(
            "Loss",
            "short",
            "Latest loss each rank reported.",
            Query(f"fleetscope_training_loss{{{_NODE}}} * on (instance, rank) {of_job}", "rank {{rank}}"),
        ),
        _table(
            "Ranks",
            "Each rank's node, step and seconds since its last step (a hung rank grows).",
            Query(f"fleetscope_training_step{{{_NODE}}} * on (instance, rank) {of_job}", instant=True),
            Query(
                f"time() - fleetscope_training_last_step_timestamp_seconds{{{_NODE}}} "
                f"* on (instance, rank) {of_job}",
                instant=True,
            ),
        ),
    ):
        board = board.with_panel(panel)
    return board


def self_health() -> Any:
    """The exporters and the collector themselves: up, collector success and time, dropped records."""
    board = _dashboard(
        "fleetscope-self",
        "fleetscope / Exporter and collector health",
        "Whether fleetscope itself works: scrapes, each exporter collector, NVML deadlines, the kernel-log "
        "watcher, the training socket, and the collector's cycles.",
        [_node_variable()],
    )
    for panel in (
        _graph(
            "Exporters up",
            "short",
            "1 when Prometheus scraped the exporter.",
            Query(f'up{{job="{EXPORTER_JOB}", {_NODE}}}', "{{instance}}"),
        ),
        _graph(
            "Exporter collectors succeeding",
            "short",
            "1 when the collector read its source this scrape.",
            Query(f"fleetscope_scrape_collector_success{{{_NODE}}}", "{{instance}} {{collector}}"),
        ),
        _graph(
            "Exporter collector time",
            "s",
            "Seconds each collector took in a scrape.",
            Query(f"fleetscope_scrape_collector_duration_seconds{{{_NODE}}}", "{{instance}} {{collector}}"),
        ),
        _graph(
            "Scrape time",
            "s",
            "Prometheus's own scrape duration of each exporter.",
            Query(f'scrape_duration_seconds{{job="{EXPORTER_JOB}", {_NODE}}}', "{{instance}}"),
        ),
        _graph(
            "NVML deadlines missed",
            "short",
            "NVML calls that overran the exporter's deadline, per second.",
            Query(
                f"sum by (instance) (rate(fleetscope_gpu_nvml_timeouts_total{{{_NODE}}}[{_RATE}]))",
                "{{instance}}",
            ),
        ),
        _graph(
            "Kernel-log lines",
            "short",
            "Lines the Xid watcher read, and those it could not parse, per second.",
            Query(f"rate(fleetscope_kernel_log_lines_total{{{_NODE}}}[{_RATE}])", "{{instance}} read"),
            Query(
                f"rate(fleetscope_kernel_log_malformed_lines_total{{{_NODE}}}[{_RATE}])",
                "{{instance}} malformed",
            ),
        ),
        _graph(
            "Training records refused",
            "short",
            "Training-hook datagrams the exporter refused, per second, "
            "by reason; records a hook dropped before sending.",
            Query(
                f"sum by (instance, reason) (rate(fleetscope_training_records_rejected_total{{{_NODE}}}"
                f"[{_RATE}]))",
                "{{instance}} {{reason}}",
            ),
            Query(
                f"sum by (instance) (fleetscope_training_hook_dropped_records_total{{{_NODE}}})",
                "{{instance}} dropped by hooks",
            ),
        ),
        _graph(
            "Job attribution",
            "short",
            "Jobs over the per-GPU bound, and unreadable mapping files.",
            Query(
                f"sum by (instance) (fleetscope_gpu_job_attribution_dropped{{{_NODE}}})",
                "{{instance}} jobs dropped",
            ),
            Query(f"fleetscope_job_mapping_files_invalid{{{_NODE}}}", "{{instance}} invalid mapping files"),
        ),
        _graph(
            "Collector up",
            "short",
            "1 when Prometheus scraped the collector.",
            Query(f'up{{job="{COLLECTOR_JOB}"}}', "{{instance}}"),
        ),
        _graph(
            "Collector cycles",
            "short",
            "Cycles run and sources that failed, per second.",
            Query("rate(fleetscope_collector_cycles_total[$__rate_interval])", "cycles"),
            Query("rate(fleetscope_collector_source_errors_total[$__rate_interval])", "source errors"),
            Query(
                "rate(fleetscope_collector_incident_export_errors_total[$__rate_interval])",
                "lineage export errors",
            ),
        ),
        _graph(
            "Collector cycle time (p90)",
            "s",
            "Gather, investigate and record one window.",
            Query(
                "histogram_quantile(0.9, sum by (le) (rate("
                "fleetscope_collector_cycle_duration_seconds_bucket[$__rate_interval])))",
                "p90",
            ),
        ),
        _graph(
            "Collector nodes and incidents",
            "short",
            "Nodes in the latest window; incidents open.",
            Query("fleetscope_collector_nodes", "nodes"),
            Query("fleetscope_collector_incidents_open", "open incidents"),
        ),
        _graph(
            "Incident changes",
            "short",
            "Incidents opened, updated, reopened and resolved in the interval.",
            Query(
                "sum by (change) (increase(fleetscope_collector_incident_changes_total[$__rate_interval]))",
                "{{change}}",
            ),
        ),
    ):
        board = board.with_panel(panel)
    return board


def incidents() -> Any:
    """The collector's incidents: open ones as a table and a timeline, lifecycle changes."""
    board = _dashboard(
        "fleetscope-incidents",
        "fleetscope / Incidents",
        "The incidents the collector holds open (layer, node, GPU), when they opened, and what changed.",
        [],
    )
    for panel in (
        _table(
            "Open incidents",
            "One row per open incident; `fleetscope incidents show FINGERPRINT` for the evidence.",
            Query(INCIDENTS_EXPR, instant=True),
        ),
        _graph(
            "Open incidents over time",
            "short",
            "One line per incident while it is open.",
            Query(INCIDENTS_EXPR, "{{layer}} {{node}} GPU {{gpu}} ({{fingerprint}})"),
            width=24,
        ),
        _graph(
            "Incidents open",
            "short",
            "How many incidents the collector holds open.",
            Query("fleetscope_collector_incidents_open", "open"),
        ),
        _graph(
            "Incident changes",
            "short",
            "Opened, updated, reopened and resolved in the interval.",
            Query(
                "sum by (change) (increase(fleetscope_collector_incident_changes_total[$__rate_interval]))",
                "{{change}}",
            ),
        ),
    ):
        board = board.with_panel(panel)
    return board


BUILDERS = (cluster_overview, gpu_health, interconnect, training_job, self_health, incidents)


def dashboards() -> dict[str, dict[str, Any]]:
    """Build every dashboard.

    Returns:
        ``{uid: dashboard JSON model}``, each as Grafana's dashboard API and file provisioning take it.
    """
    result = {}
    for builder in BUILDERS:
        board = json.loads(json.dumps(builder().build(), cls=JSONEncoder))
        for annotation in board["annotations"]["list"]:
            if annotation.get("expr") == INCIDENTS_EXPR:
                annotation.update(_INCIDENT_ANNOTATION_FIELDS)
        for number, panel in enumerate(board["panels"], start=1):
            panel["id"] = number
        result[board["uid"]] = board
    return result


def render(board: dict[str, Any]) -> str:
    """The committed text of one dashboard: JSON with sorted keys, two-space indent, final newline."""
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(folder: Path = GRAFANA_DIR) -> list[Path]:
    """Write every dashboard to ``folder/<uid>.json``, each file replaced whole; remove stale ones.

    Returns:
        The files written, sorted.

    Raises:
        OSError: The folder cannot be created or written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    boards = dashboards()
    written = []
    for uid, board in sorted(boards.items()):
        path = folder / f"{uid}.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(render(board))
        partial.replace(path)  # a reader (Grafana's provisioner) never sees half a file
        written.append(path)
    for stale in folder.glob("fleetscope-*.json"):
        if stale.stem not in boards:
            stale.unlink()
    return written
