"""Pods and namespaces from the kubelet's pod-resources API, against a real gRPC server on a Unix socket."""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc", reason="needs grpcio (the kubernetes extra)")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from fleetscope.exporters.gpu import GpuCollector  # noqa: E402
from fleetscope.exporters.jobs import JobCollector  # noqa: E402
from fleetscope.exporters.podresources import PodResourcesClient, api_pb2  # noqa: E402
from tests.exporters.fake_nvml import FakeNvml  # noqa: E402
from tests.exporters.support import H100_X8, samples  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROTO = "fleetscope/exporters/podresources/api.proto"


class Kubelet:
    """A real gRPC server on a Unix socket that serves ``v1.PodResourcesLister/List`` as the kubelet does.

    Args:
        socket: Where to listen.

    Attributes:
        pods: ``(namespace, pod, container, resource name, [device ids])`` per container.
        answering: Cleared, ``List`` hangs until it is set again (a kubelet that does not answer).
    """

    def __init__(self, socket: Path) -> None:
        self.pods: list[tuple[str, str, str, str, list[str]]] = []
        self.answering = threading.Event()
        self.answering.set()
        self.calls = 0
        handler = grpc.method_handlers_generic_handler(
            "v1.PodResourcesLister",
            {
                "List": grpc.unary_unary_rpc_method_handler(
                    self._list,
                    request_deserializer=api_pb2.ListPodResourcesRequest.FromString,
                    response_serializer=api_pb2.ListPodResourcesResponse.SerializeToString,
                )
            },
        )
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler,))
        self._server.add_insecure_port(f"unix://{socket}")
        self._server.start()

    def _list(self, request: object, context: object) -> object:
        self.calls += 1
        self.answering.wait(30)
        response = api_pb2.ListPodResourcesResponse()
        for namespace, name, container, resource, ids in self.pods:
            pod = response.pod_resources.add(name=name, namespace=namespace)
            pod.containers.add(name=container).devices.add(resource_name=resource, device_ids=ids)
        return response

    def stop(self) -> None:
        self.answering.set()
        self._server.stop(None).wait()


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[Kubelet, Path]]:
    socket = tmp_path / "kubelet.sock"
    server = Kubelet(socket)
    yield server, socket
    server.stop()


@pytest.fixture
def gpu() -> Iterator[GpuCollector]:
    collector = GpuCollector(FakeNvml.from_capture(H100_X8))
    list(collector.collect())  # the UUIDs the kubelet's device ids are matched against
    yield collector
    collector.close()


def uuid(gpu: GpuCollector, index: int) -> str:
    return next(u for u, label in gpu.uuids().items() if label == str(index))


def scrape(collector: JobCollector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return samples(generate_latest(registry).decode())


def pods(found: dict) -> dict[str, set[tuple[str, str, str]]]:
    """GPU -> {(pod namespace, pod name, source)} of fleetscope_gpu_job_info."""
    by_gpu: dict[str, set[tuple[str, str, str]]] = {}
    for name, labels in found:
        if name == "fleetscope_gpu_job_info":
            label = dict(labels)
            by_gpu.setdefault(label["gpu"], set()).add(
                (label["pod_namespace"], label["pod_name"], label["source"])
            )
    return by_gpu


def test_the_kubelet_names_the_pod_and_namespace_of_each_gpu(
    kubelet: tuple[Kubelet, Path], gpu: GpuCollector, tmp_path: Path
) -> None:
    server, socket = kubelet
    server.pods = [
        ("ml", "train-0", "worker", "nvidia.com/gpu", [uuid(gpu, 0), uuid(gpu, 1)]),
        ("ml", "train-0", "sidecar", "example.com/nic", ["eth1"]),
        # time slicing: two pods share GPU 3 as replicas "<uuid>::<n>"
        ("serve", "infer-a", "model", "nvidia.com/gpu", [f"{uuid(gpu, 3)}::0"]),
        ("serve", "infer-b", "model", "nvidia.com/gpu", [f"{uuid(gpu, 3)}::1"]),
        # the device plugin's DEVICE_ID_STRATEGY=index names GPUs by index
        ("batch", "etl", "main", "nvidia.com/gpu", ["5"]),
        # another resource that happens to carry a GPU's UUID, and a GPU of another node
        ("other", "fpga", "main", "example.com/fpga", [uuid(gpu, 6)]),
        ("other", "ghost", "main", "nvidia.com/gpu", ["GPU-ffffffff-0000-0000-0000-000000000000"]),
    ]
    collector = JobCollector(
        gpu, "/proc", tmp_path / "no-mappings", pod_resources=PodResourcesClient(str(socket))
    )
    found = scrape(collector)
    collector.close()
    assert pods(found) == {
        "0": {("ml", "train-0", "pod_resources")},
        "1": {("ml", "train-0", "pod_resources")},
        "3": {("serve", "infer-a", "pod_resources"), ("serve", "infer-b", "pod_resources")},
        "5": {("batch", "etl", "pod_resources")},
    }  # GPUs 2, 4, 6 and 7 are in no pod: no series for them
    assert found[("fleetscope_kubelet_pod_resources_up", ())] == 1


def test_without_the_socket_the_kubelet_is_not_asked(gpu: GpuCollector, tmp_path: Path) -> None:
    client = PodResourcesClient(str(tmp_path / "no-kubelet.sock"))
    found = scrape(JobCollector(gpu, "/proc", tmp_path / "no-mappings", pod_resources=client))
    assert pods(found) == {}
    assert ("fleetscope_kubelet_pod_resources_up", ()) not in found  # not a Kubernetes node
    assert client.up is None


def test_a_hung_kubelet_times_out_and_its_last_pods_are_kept(
    kubelet: tuple[Kubelet, Path], gpu: GpuCollector, tmp_path: Path
) -> None:
    server, socket = kubelet
    server.pods = [("ml", "train-0", "worker", "nvidia.com/gpu", [uuid(gpu, 2)])]
    client = PodResourcesClient(str(socket), timeout=0.3)
    collector = JobCollector(gpu, "/proc", tmp_path / "no-mappings", pod_resources=client)
    try:
        assert pods(scrape(collector)) == {"2": {("ml", "train-0", "pod_resources")}}
        server.answering.clear()  # the kubelet stops answering
        calls = server.calls
        found = scrape(collector)
        assert server.calls > calls  # it was asked, and did not answer in time
        assert found[("fleetscope_kubelet_pod_resources_up", ())] == 0
        assert pods(found) == {"2": {("ml", "train-0", "pod_resources")}}  # last answer kept
        server.answering.set()
        server.pods = [("ml", "train-1", "worker", "nvidia.com/gpu", [uuid(gpu, 2)])]
        found = scrape(collector)
        assert found[("fleetscope_kubelet_pod_resources_up", ())] == 1
        assert pods(found) == {"2": {("ml", "train-1", "pod_resources")}}
    finally:
        collector.close()


def test_a_mapping_file_names_the_job_before_the_kubelet(
    kubelet: tuple[Kubelet, Path], gpu: GpuCollector, tmp_path: Path
) -> None:
    server, socket = kubelet
    server.pods = [("ml", "train-0", "worker", "nvidia.com/gpu", [uuid(gpu, 0), uuid(gpu, 1)])]
    mappings = tmp_path / "jobs"
    mappings.mkdir()
    (mappings / "42.json").write_text(
        '{"job_id": "42", "step_id": null, "user": "u", "gpus": [1], "uuids": [],'
        ' "started_at": "2026-11-30T10:00:00Z"}'
    )
    collector = JobCollector(gpu, "/proc", mappings, pod_resources=PodResourcesClient(str(socket)))
    found = scrape(collector)
    collector.close()
    assert pods(found) == {"0": {("ml", "train-0", "pod_resources")}, "1": {("", "", "mapping_file")}}


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="needs grpcio-tools (dev extra)")
def test_the_committed_stubs_are_what_the_proto_generates(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (tmp_path / "src" / PROTO).parent.mkdir(parents=True)
    shutil.copy(REPO / PROTO, tmp_path / "src" / PROTO)  # protoc names the file by its path from -I
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            f"--python_out={target}",
            f"--pyi_out={target}",
            PROTO,
        ],
        cwd=tmp_path / "src",
        check=True,
    )
    for generated in ("api_pb2.py", "api_pb2.pyi"):
        fresh = target / "fleetscope" / "exporters" / "podresources" / generated
        assert filecmp.cmp(
            fresh, REPO / "fleetscope" / "exporters" / "podresources" / generated, shallow=False
        )
