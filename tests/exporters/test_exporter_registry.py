"""Collector registration: flags, config fields, variables and help all come from one registration."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fleetscope.console.cli import app
from fleetscope.exporters.config import ENV, ExporterConfig, load_config
from fleetscope.exporters.registry import registrations


def test_every_registration_has_its_field_variable_and_flag() -> None:
    # click wraps help at 80 columns, even inside long words: compare with all white space taken out
    help_text = "".join(CliRunner().invoke(app, ["exporter", "--help"]).output.split())
    names = [r.name for r in registrations()]
    assert {"host", "gpu", "xid"} <= set(names)
    for reg in registrations():
        assert ExporterConfig.model_fields[reg.field].default is reg.default
        assert ENV[reg.field] == f"FLEETSCOPE_EXPORTER_COLLECTOR_{reg.name.upper()}"
        assert f"--collector.{reg.name}/--no-collector.{reg.name}" in help_text
        assert f"(default{'on' if reg.default else 'off'};env{ENV[reg.field]})" in help_text
        for setting in reg.settings:
            field = f"{reg.name}_{setting.key}"
            assert ExporterConfig.model_fields[field].default == setting.default
            assert setting.flag_name(reg.name) in help_text and ENV[field] in help_text


def test_a_setting_reaches_the_config_from_each_layer(tmp_path: Path) -> None:
    config_file = tmp_path / "exporter.yaml"
    config_file.write_text("xid_kernel_log: /from/file\ncollector_host: false\n")
    assert load_config({}, {}, config_file).xid_kernel_log == "/from/file"
    from_env = load_config({}, {ENV["xid_kernel_log"]: "journal"}, config_file)
    assert from_env.xid_kernel_log == "journal" and from_env.enabled("host") is False
    from_flag = load_config({"xid_kernel_log": "/flag"}, {ENV["xid_kernel_log"]: "journal"})
    assert from_flag.xid_kernel_log == "/flag"


def test_cli_flag_turns_a_collector_off_and_bad_values_exit_2() -> None:
    result = CliRunner().invoke(app, ["exporter", "--collector.gpu.timeout", "-1"])
    assert result.exit_code == 2
    assert "gpu_timeout_seconds" in result.output


def test_a_setting_a_collector_rejects_is_one_line_and_exit_2() -> None:
    args = ["exporter", "--web.listen-address", "127.0.0.1:0"]
    args += ["--collector.infiniband.device-include", "mlx["]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "fleetscope exporter: infiniband device-include 'mlx[' is not a regex: "
        "unterminated character set at position 3"
    ]
