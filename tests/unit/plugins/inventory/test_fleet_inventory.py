# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet inventory plugin (plugins/inventory/fleet.py): its layout of groups and variables, how it reads its file.

Through ansible-inventory, as Ansible and AWX load it: tests/integration/test_fleet_inventory.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.edgeops.fleet.plugins.inventory.fleet import (
    InventoryModule, effective_vars, inventory_layout, reference_vars)
from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import assign_waves, load_fleet, policy_for_json
from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import YAMLInputError
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
    assert layout["groups"]["edge_devices"] == {
        "edgeops_rollout": policy_for_json(loaded["rollout"]), "ansible_port": 22, "edgeops_channel": None,
        "edgeops_release": None, "edgeops_tags": ["line-a"]}
    assert layout["groups"]["wave_0"] == {"edgeops_wave": 0}
    assert layout["groups"]["tag_line_a"] == {}
    assert layout["hosts"]["site01-dev02"]["vars"] == {"ansible_host": "10.1.0.12"}


def test_a_device_that_differs_from_the_most_common_value_has_its_own():
    data = sample_fleet(devices_per_site=3, sites=1)
    data["devices"]["site01-dev02"].update(tags=[], port=2222, channel="beta", release="r2")
    loaded = load_fleet(data)
    layout = inventory_layout(loaded, assign_waves(loaded))
    assert layout["hosts"]["site01-dev02"]["vars"] == {
        "ansible_host": "10.1.0.12", "edgeops_tags": [], "ansible_port": 2222, "edgeops_channel": "beta",
        "edgeops_release": "r2"}
    assert layout["hosts"]["site01-dev01"]["vars"] == {"ansible_host": "10.1.0.11"}


def ssh_fleet():
    """Sites behind bastions whose vars, profiles and devices set ssh arguments of their own."""
    data = tricky_fleet()
    data["sites"]["s1"]["vars"]["ansible_ssh_common_args"] = "-o UserKnownHostsFile=/s1/known_hosts"
    data["sites"]["s2"]["bastion"] = {"host": "d5"}  # one of its devices: reached directly
    data["profiles"]["cpu"]["vars"]["ansible_ssh_common_args"] = "-o IdentitiesOnly=yes"
    data["devices"]["d2"]["vars"]["ansible_ssh_common_args"] = "-o IdentityFile=/d2"
    return data


def test_the_proxyjump_is_added_to_the_ssh_arguments_of_the_site_profile_or_device():
    loaded = load_fleet(ssh_fleet())
    waves = assign_waves(loaded)
    layout = inventory_layout(loaded, waves)
    args = dict((name, effective_vars(layout, name).get("ansible_ssh_common_args")) for name in loaded["devices"])
    assert args == {
        "d1": "-o UserKnownHostsFile=/s1/known_hosts -o ProxyJump=jump@203.0.113.1:22",  # the site's
        "d2": "-o IdentityFile=/d2 -o ProxyJump=jump@203.0.113.1:22",  # the device's own vars win
        "d3": "-o IdentitiesOnly=yes -o ProxyJump=jump@203.0.113.1:22",  # the profile's vars over the site's
        "d4": "-o ProxyJump=d5:22",
        "d5": "-o IdentitiesOnly=yes",  # the bastion itself: not through itself
        "d6": "-o Foo=bar",  # no bastion: the device's vars as they are
    }
    for name in loaded["devices"]:
        assert effective_vars(layout, name) == reference_vars(loaded, waves, name), name


def test_the_merged_ssh_arguments_are_a_site_group_variable_where_no_profile_sets_them():
    data = ssh_fleet()
    del data["profiles"]["cpu"]["vars"]["ansible_ssh_common_args"]
    loaded = load_fleet(data)
    waves = assign_waves(loaded)
    layout = inventory_layout(loaded, waves)
    assert layout["groups"]["s1"]["ansible_ssh_common_args"] == (
        "-o UserKnownHostsFile=/s1/known_hosts -o ProxyJump=jump@203.0.113.1:22")
    assert layout["groups"]["s2"]["ansible_ssh_common_args"] == "-o ProxyJump=d5:22"
    assert layout["hosts"]["d5"]["vars"]["ansible_ssh_common_args"] == ""  # the bastion: none, not its own ProxyJump
    assert layout["hosts"]["d2"]["vars"]["ansible_ssh_common_args"] == (
        "-o IdentityFile=/d2 -o ProxyJump=jump@203.0.113.1:22")
    assert "ansible_ssh_common_args" not in layout["hosts"]["d1"]["vars"]
    for name in loaded["devices"]:
        assert effective_vars(layout, name) == reference_vars(loaded, waves, name), name


# --- reading the fleet file ----------------------------------------------------------------------------------

def reader(vault_password=None):
    plugin = InventoryModule()
    plugin.loader = DataLoader()
    if vault_password:
        plugin.loader.set_vault_secrets([("default", VaultSecret(vault_password))])
    return plugin


FLEET_TEXT = "sites:\n  s1: {}\ndevices:\n  d1:\n    site: s1\n    address: 10.0.0.1\n"


def test_the_plugin_reads_plain_yaml_itself(tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text(FLEET_TEXT)
    assert reader()._read_fleet_file(str(path)) == (yaml.safe_load(FLEET_TEXT), True)  # may be cached


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path):
    """Before, the file went to Ansible's loader, which warned and took the last value."""
    path = tmp_path / "fleet.yml"
    path.write_text(FLEET_TEXT + "    address: 10.0.0.99\n")
    with pytest.raises(YAMLInputError) as err:
        reader()._read_fleet_file(str(path))
    assert str(err.value).startswith("%s: line 7 column 5 (in devices.d1): the key 'address' is given twice, at line 6 "
                                     "and line 7" % path)


def test_ansible_tags_go_through_ansibles_loader_after_the_same_checks(tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text(FLEET_TEXT.replace("address: 10.0.0.1", "address: !unsafe 10.0.0.1"))
    data, cacheable = reader()._read_fleet_file(str(path))
    assert data["devices"]["d1"]["address"] == "10.0.0.1" and not cacheable  # a !vault value would be in the clear
    bomb = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    bomb += ["l%d: &l%d [%s]" % (n, n, ", ".join(["*l%d" % (n - 1)] * 9)) for n in range(1, 10)]
    path.write_text(FLEET_TEXT.replace("address: 10.0.0.1", "address: !unsafe 10.0.0.1\n    vars:\n      " +
                                       "\n      ".join(bomb)))
    with pytest.raises(YAMLInputError) as err:  # before, Ansible's loader took it (its variables expand it later)
        reader()._read_fleet_file(str(path))
    assert "aliases expand to more than" in str(err.value)


def test_a_vaulted_fleet_file_is_decrypted_then_checked(tmp_path):
    path = tmp_path / "fleet.yml"
    vault = VaultLib([("default", VaultSecret(b"pw"))])
    path.write_bytes(vault.encrypt(FLEET_TEXT))
    assert reader(b"pw")._read_fleet_file(str(path)) == (yaml.safe_load(FLEET_TEXT), False)  # never cached
    path.write_bytes(vault.encrypt(FLEET_TEXT + "sites: {}\n"))
    with pytest.raises(YAMLInputError) as err:
        reader(b"pw")._read_fleet_file(str(path))
    assert "the key 'sites' is given twice, at line 1 and line 7" in str(err.value)


@pytest.mark.parametrize("content, message", [
    (b"", "empty, expected a mapping"),
    (b"- d1\n", "expected a mapping at the top of the document, got a list"),
    (b"sites: {s1: {}}\ndevices: \xff\n", "not UTF-8: byte 0xff at byte offset 25 (line 2)"),
])
def test_what_is_not_a_fleet_is_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "fleet.yml"
    path.write_bytes(content)
    with pytest.raises(YAMLInputError) as err:
        reader()._read_fleet_file(str(path))
    assert str(err.value) == "%s: %s" % (path, message)
