"""The kubelet's pod-resources API: which pod and namespace each GPU was given to.

The kubelet serves ``v1.PodResourcesLister/List`` over gRPC on a Unix socket
(:data:`DEFAULT_SOCKET`); the answer lists every pod on the node with, per container, the device ids
of each extended resource it was allocated. For ``nvidia.com/gpu`` the NVIDIA device plugin's device
ids are GPU UUIDs (its default ``DEVICE_ID_STRATEGY=uuid``) or nvidia-smi indexes (``index``); a
time-sliced GPU is shared as ``<uuid>::<replica>``. This is how dcgm-exporter attributes GPUs to pods.
MIG devices (``MIG-<uuid>`` ids, or the ``nvidia.com/mig-*`` resources) are not attributed: the GPU
collector does not read MIG device UUIDs.
The messages are in ``api.proto`` next to this file (written from the Kubernetes documentation), with
its generated ``api_pb2.py``.

``grpcio`` and ``protobuf`` are the ``kubernetes`` extra: they are imported only when the socket
exists, so a node without a kubelet needs neither.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
GPU_RESOURCE = "nvidia.com/gpu"
LIST_METHOD = "/v1.PodResourcesLister/List"
# dcgm-exporter reads answers of up to 16 MiB (a node with many pods and devices); gRPC's default is 4.
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PodDevice:
    """One device id of a container, as the kubelet lists it.

    Attributes:
        namespace: The pod's namespace.
        pod: The pod's name.
        container: The container's name.
        device_id: The device plugin's id, with a time-slicing ``::<replica>`` suffix removed.
    """

    namespace: str
    pod: str
    container: str
    device_id: str


def devices_of(response: Any, resource: str = GPU_RESOURCE) -> list[PodDevice]:
    """The devices of ``resource`` in a ``ListPodResourcesResponse``, in the kubelet's order.

    Args:
        response: The parsed ``v1.ListPodResourcesResponse``.
        resource: The extended resource name.

    Returns:
        One :class:`PodDevice` per device id; a device shared by time slicing once per pod holding it.
    """
    found = []
    for pod in response.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                if devices.resource_name != resource:
                    continue
                for device_id in devices.device_ids:
                    # The device plugin's time-slicing replicas are "<uuid>::<n>"; the GPU is the uuid.
                    base = device_id.split("::", 1)[0]
                    found.append(PodDevice(pod.namespace, pod.name, container.name, base))
    return found


class PodResourcesClient:
    """Asks the kubelet's pod-resources socket which pods hold which devices, under a deadline.

    Args:
        socket_path: The kubelet's pod-resources socket.
        timeout: Seconds one ``List`` call may take.

    Attributes:
        up: ``True`` if the last call answered, ``False`` if it failed or timed out, ``None`` when there
            is no socket (not a Kubernetes node) or gRPC is not installed.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 1.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.up: bool | None = None
        self._channel: Any = None
        self._call: Any = None
        self._request: Any = None
        self._last: list[PodDevice] = []
        self._reported: str | None = None
        self._lock = threading.Lock()

    def devices(self) -> list[PodDevice]:
        """The pods' devices now; on a failed or timed-out call, those of the last call that answered.

        Never raises: a missing socket gives ``[]`` (and :attr:`up` ``None``), a failure is logged once
        per kind of failure and sets :attr:`up` to ``False``.
        """
        with self._lock:  # concurrent scrapes share the channel; one call at a time is plenty
            if not os.path.exists(self.socket_path):
                self._close()
                self.up, self._last = None, []
                return []
            try:
                response = self._list()
            except ImportError as exc:
                self._report(f"the kubelet's pod-resources socket is there, but {exc}: pip install "
                             "'fleetscope[kubernetes]' to name the pods that hold the GPUs")  # fmt: skip
                self.up = None
                return []
            except Exception as exc:  # grpc.RpcError (timeout, unavailable ...) or a malformed answer
                self._close()  # a restarted kubelet makes a new socket: connect afresh next time
                self._report(f"kubelet pod-resources List on {self.socket_path} failed: {_describe(exc)}")
                self.up = False
                return self._last
            if self._reported is not None:
                log.info("kubelet pod-resources List answers again")
                self._reported = None
            self.up = True
            self._last = devices_of(response)
            return self._last

    def close(self) -> None:
        """Close the gRPC channel, if one is open."""
        with self._lock:
            self._close()

    def _list(self) -> Any:
        if self._call is None:
            import grpc

            from fleetscope.exporters.podresources import api_pb2

            self._channel = grpc.insecure_channel(
                f"unix://{os.path.abspath(self.socket_path)}",
                options=[("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)],
            )
            self._call = self._channel.unary_unary(
                LIST_METHOD,
                request_serializer=api_pb2.ListPodResourcesRequest.SerializeToString,
                response_deserializer=api_pb2.ListPodResourcesResponse.FromString,
            )
            self._request = api_pb2.ListPodResourcesRequest()
        return self._call(self._request, timeout=self.timeout)

    def _close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._call = None

    def _report(self, message: str) -> None:
        if message != self._reported:
            log.warning("%s", message)
            self._reported = message


def _describe(exc: Exception) -> str:
    """A gRPC error's status code and details, else the exception's text, on one line."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {details()}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
