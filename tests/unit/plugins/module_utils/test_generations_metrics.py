# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device's metrics (node exporter textfile) and the monitor rule, on the real Store with a temp state directory.

As in test_generations.py, only systemctl/systemd-run are stood in for (no systemd in a unit test); here the
stand-in says whether a monitor unit is active. The file is read back with the same parser a metric probe uses,
and with `promtool check metrics` (Prometheus' own linter) where promtool is installed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils._generations import cli, sysio, textfile
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.metrics import parse_exposition
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.store import Store


def release(rel, path, checks=None):
    return {"id": rel, "files": [{"path": str(path), "content": "release=%s\n" % rel, "mode": "0640"}],
            "health_checks": checks if checks is not None else
            [{"name": "conf", "type": "command", "argv": ["grep", "-q", "release=%s" % rel, str(path)]}]}


class Systemd:
    """systemctl/systemd-run stand-in: `systemctl is-active U` answers from `inactive`; grep runs for real."""

    def __init__(self):
        self.inactive = set()

    def __call__(self, argv, input_data=None, timeout=None, env=None):
        if argv[0] == "grep":
            return sysio.run(argv, timeout=timeout)
        if argv[:2] == ["systemctl", "is-active"]:
            return (3, "inactive\n", "") if argv[2] in self.inactive else (0, "active\n", "")
        return 0, "", ""


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        self.now += 1.5  # every reading advances: an activation takes time
        return self.now


@pytest.fixture
def store(tmp_path):
    (tmp_path / "textfile").mkdir()
    st = Store({"state_dir": str(tmp_path / "state"), "metrics_dir": str(tmp_path / "textfile"),
                "monitor_units": ["prometheus-node-exporter.service"]},
               runner=Systemd(), clock=Clock(), sleep=lambda s: None, which=lambda program: None)
    return st


def read_metrics(tmp_path):
    text = (tmp_path / "textfile" / textfile.METRICS_FILE).read_text()
    promtool = shutil.which("promtool")
    if promtool:
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    return dict(((name, tuple(sorted(labels.items()))), value) for name, labels, value in parse_exposition(text))


def value(samples, name, **labels):
    return samples[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))]


def test_a_device_that_never_switched_exposes_zeros_for_every_counter_label(store, tmp_path):
    store.stage(release("r1", tmp_path / "app.conf"))
    samples = read_metrics(tmp_path)
    assert value(samples, "edgeops_generation_current") == 0
    assert value(samples, "edgeops_generation_newest") == 1  # staged by a rollout, not switched yet
    for reason in textfile.ROLLBACK_REASONS:
        assert value(samples, "edgeops_rollbacks_total", reason=reason) == 0
    assert value(samples, "edgeops_switches_total", result="rolled_back") == 0
    assert not [key for key in samples if key[0] == "edgeops_release_info"]


def test_switch_confirm_rollback_and_deadman_are_counted(store, tmp_path):
    conf = tmp_path / "app.conf"
    for rel in ("r1", "r2"):
        gen = store.stage(release(rel, conf))["generation"]
        store.switch(gen, 15)
        store.confirm(gen)
    samples = read_metrics(tmp_path)
    assert value(samples, "edgeops_generation_current") == value(samples, "edgeops_generation_confirmed") == 2
    assert value(samples, "edgeops_release_info", pointer="current", release="r2", generation=2) == 1
    assert value(samples, "edgeops_switches_total", result="activated") == 2
    assert value(samples, "edgeops_health_ok") == 1
    assert value(samples, "edgeops_health_check_passed", check="monitor prometheus-node-exporter.service") == 1
    assert value(samples, "edgeops_activation_last_success") == 1
    assert value(samples, "edgeops_activation_last_duration_seconds") > 0

    store.stage(release("r3", conf))
    store.switch(3, 15)
    assert value(read_metrics(tmp_path), "edgeops_generation_pending") == 1
    store.deadman(3)  # the controller never confirmed
    samples = read_metrics(tmp_path)
    assert value(samples, "edgeops_generation_pending") == 0
    assert value(samples, "edgeops_rollbacks_total", reason="deadman-revert") == 1
    assert value(samples, "edgeops_deadman_reverts_total") == 1
    assert value(samples, "edgeops_incidents_total") == 1
    assert value(samples, "edgeops_last_incident_timestamp_seconds") > 1_800_000_000

    store.rollback(1)
    samples = read_metrics(tmp_path)
    assert value(samples, "edgeops_rollbacks_total", reason="rollback") == 1
    assert value(samples, "edgeops_release_info", pointer="confirmed", release="r1", generation=1) == 1


def test_the_monitor_rule_a_switch_that_finds_the_monitor_down_rolls_back_with_an_incident(store, tmp_path):
    conf = tmp_path / "app.conf"
    store.stage(release("r1", conf))
    store.switch(1, 15)
    store.confirm(1)
    store.stage(release("r2", conf))
    store.run.inactive.add("prometheus-node-exporter.service")  # the monitor died (or the release killed it)
    out = store.switch(2, 15)
    assert out["rolled_back"] and out["rolled_back_to"] == 1
    assert "monitor prometheus-node-exporter.service" in out["reason"]
    assert conf.read_text() == "release=r1\n"
    assert store.incidents()[-1]["what"] == "health-rollback"
    samples = read_metrics(tmp_path)
    assert value(samples, "edgeops_switches_total", result="rolled_back") == 1
    assert value(samples, "edgeops_rollbacks_total", reason="health-rollback") == 1


def test_a_monitor_that_dies_later_shows_in_the_health_metrics(store, tmp_path, capsys):
    conf = tmp_path / "app.conf"
    store.stage(release("r1", conf))
    store.switch(1, 15)
    store.confirm(1)
    store.run.inactive.add("prometheus-node-exporter.service")
    ok, results = store.check_health(1)
    store.write_metrics()
    assert not ok and results[0]["name"] == "monitor prometheus-node-exporter.service"
    samples = read_metrics(tmp_path)
    assert value(samples, "edgeops_health_ok") == 0
    assert value(samples, "edgeops_health_check_passed", check="monitor prometheus-node-exporter.service") == 0
    assert value(samples, "edgeops_health_check_passed", check="conf") == 1
    assert store.pointer("current") == 1  # later failures alert; only a switch's gate rolls back


def test_no_textfile_directory_means_no_metrics_and_no_failure(tmp_path):
    st = Store({"state_dir": str(tmp_path / "state"), "metrics_dir": str(tmp_path / "absent")},
               runner=Systemd(), sleep=lambda s: None, which=lambda program: None)
    st.stage(release("r1", tmp_path / "app.conf"))
    assert st.switch(1, 15)["changed"]
    assert not os.path.exists(str(tmp_path / "absent"))


def test_label_values_from_the_field_are_escaped():
    facts = textfile.snapshot(1, 1, 1, {1: {"release": 'r"1\\\nx'}}, {}, [], None, "3", 5.0)
    text = textfile.render(facts)
    parsed = parse_exposition(text)
    assert [labels["release"] for name, labels, _v in parsed if name == "edgeops_release_info"] == ['r"1\\\nx'] * 2


def test_the_cli_prints_and_writes_the_metrics(tmp_path, capsys):
    (tmp_path / "textfile").mkdir()
    config = tmp_path / "agent.json"
    config.write_text('{"state_dir": "%s", "metrics_dir": "%s"}' % (tmp_path / "state", tmp_path / "textfile"))
    assert cli.main(["metrics"], config_path=str(config)) == 0
    assert "edgeops_generation_current 0" in capsys.readouterr().out
    assert (tmp_path / "textfile" / textfile.METRICS_FILE).exists()
    config.write_text('{"monitor_units": "node-exporter"}')
    assert cli.main(["metrics"], config_path=str(config)) == 1
    assert "monitor_units must be a list" in capsys.readouterr().err
