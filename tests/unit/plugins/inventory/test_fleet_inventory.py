# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet inventory plugin (plugins/inventory/fleet.py): its layout of groups and variables, and its YAML reader.

Through ansible-inventory, as Ansible and AWX load it: tests/integration/test_fleet_inventory.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest
import yaml

from ansible_collections.edgeops.fleet.plugins.inventory.fleet import (
    effective_vars, inventory_layout, read_plain_yaml, reference_vars)
from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import assign_waves, load_fleet, policy_for_json
from conftest import sample_fleet


def tricky_fleet():
    """Variables named alike in sites, profiles and devices: where precedence matters."""
    return {
        "profiles": {
            "gpu": {"gpus": 1, "vars": {"hw": "nuc13", "registry_address": "profile-reg", "edgeops_wave": 99,
                                        "ansible_user": "profile-user", "shared": "profile", "ansible_port": 2200}},
            "cpu": {"gpus": 0, "vars": {"hw": "nuc12"}},
            "unused": {"gpus": 4},
        },
        "sites": {
            "s1": {"bastion": {"host": "203.0.113.1", "user": "jump"}, "registry": "s1-hub:5000",
                   "network": {"cidr": "10.1.0.0/24"},
                   "vars": {"shared": "site", "ansible_host": "nope", "edgeops_gpus": 7, "edgeops_site": "x",
                            "edgeops_rollout": "site"}},
            "s2": {"registry": "s2-hub:5000", "vars": {"only_site": 2}},
            "s3": {},
            "empty": {},
        },
        "devices": {
            "d1": {"site": "s1", "address": "10.1.0.1", "profile": "gpu", "tags": ["canary", "line-a"], "channel": "stable"},
            "d2": {"site": "s1", "address": "10.1.0.2", "user": "dev-user", "tags": ["line-a"],
                   "vars": {"shared": "device", "registry_address": "device-reg"}},
            "d3": {"site": "s1", "address": "10.1.0.3", "profile": "cpu", "release": "r1"},
            "d4": {"site": "s2", "address": "10.2.0.4", "port": 2222, "profile": "gpu", "vars": {"edgeops_wave": 5}},
            "d5": {"site": "s2", "address": "10.2.0.5", "profile": "cpu", "tags": ["line-b"]},
            "d6": {"site": "s3", "address": "10.3.0.6", "vars": {"ansible_ssh_common_args": "-o Foo=bar"}},
        },
        "rollout": {"waves": [1, "50%", "100%"], "site_cap": "50%"},
    }


def legacy_host_vars(fleet_data, waves, name):
    """How the first version of the plugin computed a device's variables (all of them host variables)."""
    device = fleet_data["devices"][name]
    site = fleet_data["sites"][device["site"]]
    profile = fleet_data["profiles"].get(device["profile"] or "", {"gpus": 0, "vars": {}})
    hostvars = dict(site["vars"])
    hostvars.update(profile["vars"])
    hostvars.update({
        "ansible_host": device["address"], "ansible_port": device["port"], "edgeops_site": device["site"],
        "edgeops_tags": device["tags"], "edgeops_profile": device["profile"], "edgeops_gpus": profile["gpus"],
        "edgeops_wave": waves[name], "edgeops_release": device["release"], "edgeops_channel": device["channel"],
        "edgeops_network": site["network"]})
    if device["user"]:
        hostvars["ansible_user"] = device["user"]
    if site["registry"]:
        hostvars["registry_address"] = hostvars["workloads_registry"] = site["registry"]
    if site["bastion"]:
        bastion = site["bastion"]
        hostvars["ansible_ssh_common_args"] = "-o ProxyJump=%s%s:%d" % (
            bastion["user"] + "@" if bastion["user"] else "", bastion["host"], bastion["port"])
    hostvars.update(device["vars"])
    return hostvars


@pytest.mark.parametrize("make", [tricky_fleet, lambda: sample_fleet(devices_per_site=5, sites=3)])
def test_layout_gives_every_host_the_variables_it_had_as_host_variables(make):
    loaded = load_fleet(make())
    waves = assign_waves(loaded)
    layout = inventory_layout(loaded, waves)
    policy = policy_for_json(loaded["rollout"])
    for name in loaded["devices"]:
        entry = layout["hosts"][name]
        # no variable on two groups of one host: Ansible's order among sibling groups (by name) never matters
        seen = {}
        for group in entry["groups"]:
            for key in layout["groups"][group]:
                assert key not in seen, (name, key, group, seen.get(key))
                seen[key] = group
        effective = effective_vars(layout, name)
        assert effective == reference_vars(loaded, waves, name)
        legacy = legacy_host_vars(loaded, waves, name)
        legacy.setdefault("edgeops_rollout", policy)  # the one new variable
        assert effective == legacy
    assert json.loads(json.dumps(layout)) == layout  # cacheable as JSON


def test_layout_puts_shared_variables_on_groups():
    data = sample_fleet(devices_per_site=3, sites=2)
    data["sites"]["site01"]["vars"] = {"timezone": "UTC"}
    loaded = load_fleet(data)
    layout = inventory_layout(loaded, assign_waves(loaded))
    assert layout["groups"]["site01"] == {
        "timezone": "UTC", "edgeops_site": "site01", "edgeops_network": {}, "registry_address": "site01-hub:5000",
        "workloads_registry": "site01-hub:5000", "ansible_ssh_common_args": "-o ProxyJump=10.1.0.1:22"}
    assert layout["groups"]["profile_nuc_gpu"] == {"edgeops_profile": "nuc-gpu", "edgeops_gpus": 1}
    assert layout["groups"]["edge_devices"] == {"edgeops_rollout": policy_for_json(loaded["rollout"])}
    assert layout["groups"]["wave_0"] == {"edgeops_wave": 0}
    assert layout["groups"]["tag_line_a"] == {}
    assert sorted(layout["hosts"]["site01-dev01"]["vars"]) == [
        "ansible_host", "ansible_port", "edgeops_channel", "edgeops_release", "edgeops_tags"]


YAML_DOCS = [
    "a: 1\nb: [x, 'y', \"z\", 1.5, 0x1F, 0o17, 1_000, -3, .inf, yes, No, ~, null, '', true]\n",
    "base: &b {port: 22, tags: [a]}\none: *b\ntwo:\n  <<: *b\n  port: 23\n",  # anchors, merge key
    "when: 2024-06-01\nat: 2024-06-01 10:00:00\n",  # timestamps
    "- &x [1, 2]\n- *x\n",
    "a: &r\n  self: *r\n",  # recursive
    "",
    "# only a comment\n",
    "{\"json\": [1, 2, {\"k\": null}]}\n",
    "? [1, 2]\n: complex key\n",
    "set: !!set {a, b}\nbin: !!binary aGVsbG8=\n",
]


@pytest.mark.parametrize("text", YAML_DOCS)
def test_plain_yaml_reader_reads_what_safe_load_reads(text):
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:
        with pytest.raises(yaml.YAMLError):
            read_plain_yaml(text.encode("utf-8"))
        return
    got = read_plain_yaml(text.encode("utf-8"))
    if isinstance(expected, dict) and "a" in expected and isinstance(expected["a"], dict) and "self" in expected["a"]:
        assert got["a"]["self"] is got["a"]  # the recursive anchor is kept as such
    else:
        assert got == expected


@pytest.mark.parametrize("text", ["secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3031\n", "x: !unsafe '{{ a }}'\n",
                                  "a: [1\n", "a: b: c\n", "a: 1\nb: {c: 1, c: 2}\n"])
def test_plain_yaml_reader_refuses_what_needs_ansibles_loader(text):
    with pytest.raises(yaml.YAMLError):
        read_plain_yaml(text.encode("utf-8"))
