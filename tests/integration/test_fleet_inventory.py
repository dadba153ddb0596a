# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet inventory plugin through ansible-inventory, as Ansible and AWX load it (no lab needed)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import yaml

from conftest import ansible

FLEET = {
    "profiles": {"nuc-gpu": {"gpus": 1, "vars": {"edgeops_hw": "nuc13"}}},
    "sites": {"site01": {"bastion": {"host": "203.0.113.10", "user": "jump"}, "registry": "site01-hub:5000"},
              "site02": {"registry": "site02-hub:5000"}},
    "devices": {
        "site01-dev01": {"site": "site01", "address": "10.1.0.11", "tags": ["canary"], "profile": "nuc-gpu",
                         "channel": "stable"},
        "site01-dev02": {"site": "site01", "address": "10.1.0.12", "tags": ["line-a"], "channel": "beta"},
        "site02-dev01": {"site": "site02", "address": "10.2.0.11", "port": 2222},
    },
    "rollout": {"waves": [1, "100%"]},
}


def plain(value):
    """ansible-inventory marks external data as unsafe ({"__ansible_unsafe": value}); the plugin must do that."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def write(tmp_path, fleet):
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    config = tmp_path / "edge.fleet.yml"
    config.write_text("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n"
                      "keyed_groups:\n  - key: edgeops_channel\n    prefix: channel\n")
    return str(config)


def test_groups_waves_bastion_and_registry(tmp_path):
    run = ansible("ansible-inventory", "-i", write(tmp_path, FLEET), "--list", "--export")
    assert run.rc == 0, run.out
    data = json.loads(run.out[run.out.index("{"):])
    assert data["_meta"]["hostvars"]["site01-dev01"]["ansible_host"] == {"__ansible_unsafe": "10.1.0.11"}
    hostvars = plain(data["_meta"]["hostvars"])
    assert sorted(data["edge_devices"]["hosts"]) == ["site01-dev01", "site01-dev02", "site02-dev01"]
    assert sorted(data["site01"]["hosts"]) == ["site01-dev01", "site01-dev02"]
    assert data["wave_0"]["hosts"] == ["site01-dev01"]
    assert data["tag_line_a"]["hosts"] == ["site01-dev02"]
    assert data["profile_nuc_gpu"]["hosts"] == ["site01-dev01"]
    assert data["channel_beta"]["hosts"] == ["site01-dev02"]
    dev = hostvars["site01-dev01"]
    assert dev["ansible_ssh_common_args"] == "-o ProxyJump=jump@203.0.113.10:22"
    assert dev["workloads_registry"] == dev["registry_address"] == "site01-hub:5000"
    assert dev["edgeops_gpus"] == 1 and dev["edgeops_hw"] == "nuc13"
    assert "ansible_ssh_common_args" not in hostvars["site02-dev01"]
    assert hostvars["site02-dev01"]["ansible_port"] == 2222


def test_a_bad_fleet_file_stops_the_run_naming_file_and_key(tmp_path):
    bad = json.loads(json.dumps(FLEET))
    bad["devices"]["site02-dev01"]["site"] = "site09"
    config = write(tmp_path, bad)
    env_failed = ("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
    os.environ[env_failed[0]] = env_failed[1]
    try:
        run = ansible("ansible-inventory", "-i", config, "--list")
    finally:
        del os.environ[env_failed[0]]
    assert run.rc != 0
    assert "fleet.yml: devices.site02-dev01.site: expected one of the sites (site01, site02), got 'site09'" in run.out
