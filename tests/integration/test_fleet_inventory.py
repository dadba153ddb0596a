# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet inventory plugin through ansible-inventory, as Ansible and AWX load it (no lab needed)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

import yaml

from conftest import REPO, ansible

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

# FLEET's rollout policy as the plugin publishes it (edgeops_rollout): the waves as written, every default filled in.
POLICY = {"wave_plan": [1, "100%"], "canary_tag": "canary", "site_cap": 1.0,
          "salt": "edgeops", "soak": 60, "failure_threshold": 10, "min_executed": 1, "unreachable": "fail",
          "rollback_switched": True, "confirm_timeout": 300, "environment": "production", "approval_waived": False}


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


def inventory(*args):
    run = ansible("ansible-inventory", *args)
    assert run.rc == 0, run.out
    return json.loads(run.out[run.out.index("{"):])


def test_groups_waves_bastion_and_registry(tmp_path):
    config = write(tmp_path, FLEET)
    data = inventory("-i", config, "--list")  # every host's effective variables, group variables included
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
    assert dev["edgeops_gpus"] == 1 and dev["edgeops_hw"] == "nuc13" and dev["edgeops_site"] == "site01"
    assert dev["edgeops_wave"] == 0 and dev["edgeops_rollout"]["wave_plan"] == [1, "100%"]
    assert "ansible_ssh_common_args" not in hostvars["site02-dev01"]
    assert hostvars["site02-dev01"]["ansible_port"] == 2222
    assert hostvars["site02-dev01"]["edgeops_profile"] is None and hostvars["site02-dev01"]["edgeops_gpus"] == 0


def test_site_profile_wave_and_policy_variables_are_group_variables(tmp_path):
    data = inventory("-i", write(tmp_path, FLEET), "--list", "--export")  # what AWX imports
    site01 = plain(data["site01"]["vars"])
    assert site01["ansible_ssh_common_args"] == "-o ProxyJump=jump@203.0.113.10:22"
    assert site01["registry_address"] == site01["workloads_registry"] == "site01-hub:5000"
    assert plain(data["profile_nuc_gpu"]["vars"]) == {"edgeops_profile": "nuc-gpu", "edgeops_gpus": 1,
                                                      "edgeops_hw": "nuc13"}
    assert data["wave_0"]["vars"] == {"edgeops_wave": 0}
    policy = plain(data["edge_devices"]["vars"])["edgeops_rollout"]
    assert policy == POLICY
    for name, hostvars in data["_meta"]["hostvars"].items():
        assert "edgeops_rollout" not in hostvars and "registry_address" not in hostvars, name
        assert "ansible_host" in hostvars, name
    # What most devices share is said once, on edge_devices; the one device on another port has its own.
    assert plain(data["edge_devices"]["vars"])["ansible_port"] == 22
    assert [name for name, hostvars in data["_meta"]["hostvars"].items() if "ansible_port" in hostvars] == [
        "site02-dev01"]


def test_effective_variables_are_the_reference_ones(tmp_path):
    """ansible-inventory --host (Ansible's own merge of group and host variables) gives every device the variables
    the plugin documents, later ones winning: edgeops_rollout, the site's vars, the profile's vars, what the
    plugin derives (site, profile, device) and the device's vars. Names below are used by more than one of them."""
    fleet = json.loads(json.dumps(FLEET))
    fleet["profiles"]["nuc-gpu"]["vars"].update(registry_address="profile-reg", shared="profile", edgeops_wave=7)
    fleet["sites"]["site01"]["vars"] = {"shared": "site", "edgeops_gpus": 5, "ansible_host": "site-host"}
    fleet["devices"]["site01-dev02"]["vars"] = {"shared": "device", "workloads_registry": "device-reg"}
    site01 = {"edgeops_site": "site01", "edgeops_network": {}, "registry_address": "site01-hub:5000",
              "workloads_registry": "site01-hub:5000", "ansible_ssh_common_args": "-o ProxyJump=jump@203.0.113.10:22"}
    expected = {
        # wave 0: the canary wave (1 device) takes the device tagged canary. Every derived variable beats the
        # site's and the profile's vars of the same name (ansible_host, edgeops_gpus, registry_address,
        # edgeops_wave); the profile's vars beat the site's (shared).
        "site01-dev01": dict(site01, edgeops_rollout=POLICY, shared="profile", edgeops_hw="nuc13",
                             edgeops_profile="nuc-gpu", edgeops_gpus=1, ansible_host="10.1.0.11", ansible_port=22,
                             edgeops_tags=["canary"], edgeops_wave=0, edgeops_release=None, edgeops_channel="stable"),
        # no profile: edgeops_profile None and 0 GPUs (over the site's 5); the device's vars beat everything
        # (shared, workloads_registry); 100% of the rest is wave 1.
        "site01-dev02": dict(site01, edgeops_rollout=POLICY, shared="device", workloads_registry="device-reg",
                             edgeops_profile=None, edgeops_gpus=0, ansible_host="10.1.0.12", ansible_port=22,
                             edgeops_tags=["line-a"], edgeops_wave=1, edgeops_release=None, edgeops_channel="beta"),
        # a site without vars or bastion: no ansible_ssh_common_args, and nothing of site01's.
        "site02-dev01": {"edgeops_rollout": POLICY, "edgeops_site": "site02", "edgeops_network": {},
                         "registry_address": "site02-hub:5000", "workloads_registry": "site02-hub:5000",
                         "edgeops_profile": None, "edgeops_gpus": 0, "ansible_host": "10.2.0.11", "ansible_port": 2222,
                         "edgeops_tags": [], "edgeops_wave": 1, "edgeops_release": None, "edgeops_channel": None},
    }
    config = write(tmp_path, fleet)
    for name in fleet["devices"]:
        got = plain(inventory("-i", config, "--host", name))
        # Ansible's own: where the inventory came from, and the empty local facts it shows when facts are not
        # injected as variables (ansible.cfg: inject_facts_as_vars = False).
        for internal in ("inventory_file", "inventory_dir", "ansible_local"):
            got.pop(internal, None)
        assert got == expected[name], name


def test_fleet_values_are_never_templated(tmp_path):
    fleet = json.loads(json.dumps(FLEET))
    fleet["devices"]["site02-dev01"]["vars"] = {"payload": '{{ "pw" ~ "ned" }}'}
    run = ansible("ansible", "site02-dev01", "-i", write(tmp_path, fleet), "-m", "ansible.builtin.debug",
                  "-a", "var=payload")
    assert run.rc == 0, run.out
    assert '{{ "pw" ~ "ned" }}' in run.out and "pwned" not in run.out


def test_tagged_yaml_is_read_by_ansibles_loader(tmp_path):
    """!unsafe (or !vault) values are beyond a plain YAML reader: the plugin falls back to Ansible's loader."""
    config = write(tmp_path, FLEET)
    text = (tmp_path / "fleet.yml").read_text()
    (tmp_path / "fleet.yml").write_text(text.replace("address: 10.2.0.11", "address: !unsafe 10.2.0.11"))
    assert "!unsafe" in (tmp_path / "fleet.yml").read_text()
    hostvars = plain(inventory("-i", config, "--list")["_meta"]["hostvars"])
    assert hostvars["site02-dev01"]["ansible_host"] == "10.2.0.11"


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path):
    """A device's key given twice stops the inventory (ansible.cfg: unparsed_is_failed) instead of a warning."""
    config = write(tmp_path, FLEET)
    text = (tmp_path / "fleet.yml").read_text()
    (tmp_path / "fleet.yml").write_text(text.replace("address: 10.2.0.11",
                                                     "address: 10.2.0.11\n    address: 10.2.0.99"))
    run = ansible("ansible-inventory", "-i", config, "--host", "site02-dev01")
    assert run.rc != 0, run.out
    assert re.search(r"fleet\.yml: line (\d+) column \d+ \(in devices\.site02-dev01\): the key 'address' is given "
                     r"twice, at line \d+ and line \1", run.out), run.out
    assert "10.2.0.99" not in run.out.split("given twice")[0]


def test_awx_example_source(tmp_path):
    """inventories/awx/edge.fleet.yml as AWX runs it: ansible-inventory --list --export, unparsed is failed."""
    os.environ.update(ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_INVENTORY_EXPORT="True")
    try:
        data = inventory("-i", os.path.join(REPO, "inventories", "awx", "edge.fleet.yml"), "--list")
    finally:
        for name in ("ANSIBLE_INVENTORY_UNPARSED_FAILED", "ANSIBLE_INVENTORY_EXPORT"):
            del os.environ[name]
    with open(os.path.join(REPO, "inventories", "awx", "fleet.yml")) as handle:
        source = yaml.safe_load(handle)
    devices = sorted(source["devices"])
    assert len(devices) == 5 and len(source["sites"]) == 2
    assert sorted(data["edge_devices"]["hosts"]) == devices
    for site in source["sites"]:
        assert sorted(data[site]["hosts"]) == sorted(n for n in devices if source["devices"][n]["site"] == site)
    assert data["tag_canary"]["hosts"] == ["berlin-dev01"]
    assert data["wave_0"]["hosts"] == ["berlin-dev01"]  # the canary goes first
    waves = sorted(int(group[len("wave_"):]) for group in data if group.startswith("wave_"))
    assert waves == [0, 1, 2]
    assert sorted(h for w in waves for h in data["wave_%d" % w]["hosts"]) == devices  # each device in one wave
    assert plain(data["berlin"]["vars"])["ansible_ssh_common_args"] == "-o ProxyJump=jump@203.0.113.10:22"
    assert "ansible_ssh_common_args" not in data["lyon"].get("vars", {})
    policy = plain(data["edge_devices"]["vars"])["edgeops_rollout"]
    assert policy == {"wave_plan": [1, "50%", "100%"],
                      "canary_tag": "canary", "site_cap": 0.67, "salt": "awx-example", "soak": 120,
                      "failure_threshold": 20, "min_executed": 2, "unreachable": "pause", "rollback_switched": True,
                      "confirm_timeout": 300, "environment": "staging", "approval_waived": True}
    assert sorted(data["channel_stable"]["hosts"]) == ["berlin-dev01", "berlin-dev02", "lyon-dev01"]


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


def static_inventory(fleet):
    """The same fleet written by hand as a static YAML inventory: every variable a host variable (as the plugin's first
    version set them), the groups listed host by host. Independent of the plugin's layout."""
    sites, profiles = fleet["sites"], fleet.get("profiles", {})
    groups = {"edge_devices": {"hosts": {}}}
    for name, device in sorted(fleet["devices"].items()):
        site = sites[device["site"]]
        profile = profiles.get(device.get("profile") or "", {})
        hostvars = {"edgeops_rollout": POLICY}
        hostvars.update(site.get("vars", {}))
        hostvars.update(profile.get("vars", {}))
        hostvars.update(edgeops_site=device["site"], edgeops_network=site.get("network", {}),
                        edgeops_profile=device.get("profile"), edgeops_gpus=profile.get("gpus", 0),
                        ansible_host=device["address"], ansible_port=device.get("port", 22),
                        edgeops_tags=device.get("tags", []), edgeops_release=device.get("release"),
                        edgeops_channel=device.get("channel"))
        if site.get("registry"):
            hostvars["registry_address"] = hostvars["workloads_registry"] = site["registry"]
        if site.get("bastion"):
            bastion = site["bastion"]
            hostvars["ansible_ssh_common_args"] = "-o ProxyJump=%s@%s:22" % (bastion["user"], bastion["host"])
        hostvars.update(device.get("vars", {}))
        groups["edge_devices"]["hosts"][name] = hostvars
        member_of = [device["site"]] + ["tag_%s" % t.replace("-", "_") for t in device.get("tags", [])]
        if device.get("profile"):
            member_of.append("profile_%s" % device["profile"].replace("-", "_"))
        if device.get("channel"):
            member_of.append("channel_%s" % device["channel"])
        for group in member_of:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = None
    return {"all": {"children": groups}}


def test_the_fleet_inventory_equals_the_same_fleet_written_by_hand(tmp_path):
    """Host by host, ansible-inventory --list of the plugin and of a static inventory of the same fleet: the same
    variables and the same groups (the plugin's wave groups and edgeops_wave aside: they are computed)."""
    fleet = json.loads(json.dumps(FLEET))
    fleet["devices"]["site01-dev02"]["vars"] = {"shared": "device"}
    fleet["sites"]["site02"]["vars"] = {"shared": "site"}
    static = tmp_path / "static.yml"
    static.write_text(yaml.safe_dump(static_inventory(fleet)))
    from_plugin = inventory("-i", write(tmp_path, fleet), "--list")
    by_hand = inventory("-i", str(static), "--list")
    for name in fleet["devices"]:
        got = plain(from_plugin["_meta"]["hostvars"][name])
        assert got.pop("edgeops_wave") in (0, 1)
        for internal in ("inventory_file", "inventory_dir"):
            got.pop(internal, None)
        assert got == plain(by_hand["_meta"]["hostvars"][name]), name

    def members(data):
        return dict((group, sorted(entry.get("hosts", []))) for group, entry in data.items()
                    if group not in ("_meta", "all", "ungrouped") and not group.startswith("wave_"))
    assert members(from_plugin) == members(by_hand)


def test_the_cache_serves_a_fleet_file_only_as_it_was_read(tmp_path):
    """With cache: true the layout is kept under the fleet file's content: a changed file is read again, an
    unchanged one comes from the cache (proved by editing the cached copy). Vaulted files: never cached (unit tests)."""
    config = write(tmp_path, FLEET)
    cache_dir = tmp_path / "cache"
    with open(config, "a") as handle:
        handle.write("cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: %s\n" % cache_dir)
    assert sorted(inventory("-i", config, "--list")["edge_devices"]["hosts"]) == sorted(FLEET["devices"])
    cached = list(cache_dir.iterdir())
    assert len(cached) == 1
    # Served from the cache: a value changed in the cached copy shows (nothing in the file says so).
    text = cached[0].read_text()
    assert "10.2.0.11" in text
    cached[0].write_text(text.replace("10.2.0.11", "10.2.0.77"))
    hostvars = plain(inventory("-i", config, "--list")["_meta"]["hostvars"])
    assert hostvars["site02-dev01"]["ansible_host"] == "10.2.0.77"
    # The file changes: read again (the new device is there, the edited cache entry is not used).
    fleet = json.loads(json.dumps(FLEET))
    fleet["devices"]["site02-dev02"] = {"site": "site02", "address": "10.2.0.12"}
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump(fleet))
    data = inventory("-i", config, "--list")
    assert sorted(data["site02"]["hosts"]) == ["site02-dev01", "site02-dev02"]
    assert plain(data["_meta"]["hostvars"])["site02-dev01"]["ansible_host"] == "10.2.0.11"
    assert len(list(cache_dir.iterdir())) == 2
