"""The Kubernetes deployment: the Helm chart and the plain manifests rendered from it, checked offline.

- The chart is linted and rendered by Helm's own Go SDK (Helm 4, through ``helm-python-sdk``, which
  binds its C library; no helm binary exists in the package registries here), which also checks the
  values against the chart's ``values.schema.json``.
- Every built-in object is validated (strictly: unknown fields fail) against the Kubernetes OpenAPI
  schemas of each Kubernetes version below by ``kubernetes-validate``; the ServiceMonitor against the
  Prometheus Operator's own CRD schema (``fixtures/``, with its source).
- ``deploy/kubernetes/`` is the chart rendered with its defaults; after a reviewed chart change,
  regenerate it with ``UPDATE_GOLDEN=1 python -m pytest tests/install/test_kubernetes.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "fleetscope-exporter"
PLAIN = ROOT / "deploy" / "kubernetes"
SERVICEMONITOR_CRD = Path(__file__).parent / "fixtures" / "monitoring.coreos.com_servicemonitors.yaml"
#: Oldest and newest Kubernetes whose schemas kubernetes-validate ships and that we support.
KUBERNETES_VERSIONS = ["1.27.0", "1.37.0"]
RELEASE, NAMESPACE = "fleetscope-exporter", "fleetscope"


def generated_header(values: str) -> str:
    return (
        f"# Rendered from deploy/helm/fleetscope-exporter (release {RELEASE}, namespace {NAMESPACE},"
        f" {values}).\n"
        "# Edit the chart, then: UPDATE_GOLDEN=1 python -m pytest tests/install/test_kubernetes.py\n"
    )


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template file name (``daemonset.yaml``) to rendered text, empty renders and NOTES left out."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {
        Path(name).name: text.strip() + "\n"
        for name, text in out.items()
        if text.strip() and not name.endswith("NOTES.txt")
    }


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def servicemonitor_schema() -> dict[str, Any]:
    crd = yaml.safe_load(SERVICEMONITOR_CRD.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = v1["schema"]["openAPIV3Schema"]
    return schema


def validate(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` is not a valid object of its kind for every Kubernetes version we support."""
    if obj["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.validate(obj, servicemonitor_schema())
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_chart_lints_clean_and_matches_the_package_version() -> None:
    result = helm.lint(str(CHART), strict=True)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] >= 2] == []  # no warning or error
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = re.search(r'(?m)^version = "(.*)"$', (ROOT / "pyproject.toml").read_text())
    assert version is not None
    assert chart["version"] == chart["appVersion"] == version.group(1)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        {
            "port": 9900,
            "runtimeClassName": "nvidia",
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "imagePullSecrets": [{"name": "registry"}],
            "extraArgs": ["--collector.gpu.timeout", "5"],
            "image": {"repository": "registry.example/fleetscope", "tag": "0.1.0-cuda"},
        },
    ],
    ids=["defaults", "servicemonitor", "customised"],
)
def test_every_rendered_object_is_valid(values: dict[str, Any]) -> None:
    rendered = render(values)
    docs = [obj for text in rendered.values() for obj in objects(text)]
    kinds = sorted(obj["kind"] for obj in docs)
    expected = ["DaemonSet", "Service"] + (["ServiceMonitor"] if values.get("serviceMonitor") else [])
    assert kinds == sorted(expected)
    for obj in docs:
        validate(obj)


def test_daemonset_has_what_the_exporter_needs_on_a_gpu_node() -> None:
    by_kind = {
        obj["kind"]: obj
        for text in render({"serviceMonitor": {"enabled": True}}).values()
        for obj in objects(text)
    }
    pod = by_kind["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
    assert mounts["/host/sys"]["readOnly"] is True and volumes[mounts["/host/sys"]["name"]]["path"] == "/sys"
    assert (
        mounts["/host/proc"]["readOnly"] is True and volumes[mounts["/host/proc"]["name"]]["path"] == "/proc"
    )
    assert volumes[mounts["/dev/kmsg"]["name"]] == {"path": "/dev/kmsg", "type": "CharDevice"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "utility"}
    assert "resources" in container and "nvidia.com/gpu" not in str(container["resources"])  # takes no GPU
    args = container["args"]
    assert args[0] == "exporter"
    assert dict(zip(args[1::2], args[2::2], strict=False))["--path.sysfs"] == "/host/sys"
    # The pieces meet: the Service selects the pods, the ServiceMonitor the Service, on the named port.
    service, monitor = by_kind["Service"], by_kind["ServiceMonitor"]
    labels = by_kind["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port = container["ports"][0]
    assert (
        service["spec"]["ports"][0]["targetPort"] == port["name"] == monitor["spec"]["endpoints"][0]["port"]
    )
    assert f":{port['containerPort']}" in args


def test_bad_values_are_refused_by_the_chart_schema() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(Exception, match="port"):
            chart.validate_schema({"port": "http"})
        with pytest.raises(Exception, match="interval"):
            chart.validate_schema({"serviceMonitor": {"enabled": True, "interval": "often"}})


def plain_files() -> dict[str, str]:
    """What ``deploy/kubernetes/`` must hold: the chart rendered with its defaults, in apply order."""
    defaults = render()
    monitor = render({"serviceMonitor": {"enabled": True}})["servicemonitor.yaml"]
    return {
        "10-exporter.yaml": generated_header("default values")
        + "---\n".join([defaults["daemonset.yaml"], defaults["service.yaml"]]),
        "20-servicemonitor.yaml": generated_header("serviceMonitor.enabled=true") + monitor,
    }


def test_plain_manifests_are_the_chart_rendered() -> None:
    expected = plain_files()
    if os.environ.get("UPDATE_GOLDEN"):
        for name, text in expected.items():
            (PLAIN / name).write_text(text)
    for name, text in expected.items():
        assert (PLAIN / name).read_text() == text, (
            f"{name} is stale: regenerate it (see this module's docstring)"
        )
    namespace = objects((PLAIN / "00-namespace.yaml").read_text())
    assert namespace == [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for path in sorted(PLAIN.glob("*.yaml")):
        for obj in objects(path.read_text()):
            validate(obj)
            assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == NAMESPACE
