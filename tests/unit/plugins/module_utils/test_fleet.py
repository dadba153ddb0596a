# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

import pytest
import yaml

from ansible_collections.edgeops.fleet.plugins.inventory.fleet import (
    effective_vars, inventory_layout, read_plain_yaml, reference_vars)
from ansible_collections.edgeops.fleet.plugins.module_utils._fleet import (
    FleetError, assign_waves, device_score, load_fleet, load_rollout_policy, policy_for_json)


def fleet(devices_per_site=50, sites=4, **rollout):
    data = {
        "profiles": {"nuc-gpu": {"gpus": 1}},
        "sites": dict(("site%02d" % s, {"bastion": {"host": "10.%d.0.1" % s}, "registry": "site%02d-hub:5000" % s})
                      for s in range(1, sites + 1)),
        "devices": {},
        "rollout": rollout or {"waves": [1, "10%", "50%", "100%"]},
    }
    for s in range(1, sites + 1):
        for d in range(1, devices_per_site + 1):
            data["devices"]["site%02d-dev%02d" % (s, d)] = {
                "site": "site%02d" % s, "address": "10.%d.0.%d" % (s, d + 10), "profile": "nuc-gpu", "tags": ["line-a"]}
    return data


def test_waves_are_stable_across_runs_and_roughly_follow_the_plan():
    data = fleet()
    first = assign_waves(load_fleet(copy.deepcopy(data)))
    assert first == assign_waves(load_fleet(copy.deepcopy(data)))
    sizes = [sum(1 for w in first.values() if w == i) for i in range(4)]
    assert sizes[0] == 1
    assert 5 <= sizes[1] <= 40 and sum(sizes[:3]) < 200 and sum(sizes) == 200


def test_adding_a_device_moves_no_other_device():
    data = fleet()
    data["devices"]["site01-dev01"]["tags"] = ["canary"]  # a pinned canary
    before = assign_waves(load_fleet(copy.deepcopy(data)))
    for extra in range(20):
        data["devices"]["site0%d-new%02d" % (extra % 4 + 1, extra)] = {"site": "site0%d" % (extra % 4 + 1),
                                                                       "address": "10.9.9.%d" % (extra + 1)}
    after = assign_waves(load_fleet(copy.deepcopy(data)))
    assert dict((n, after[n]) for n in before) == before
    assert before["site01-dev01"] == 0


def test_canary_tag_wins_over_the_hash():
    data = fleet()
    data["devices"]["site03-dev07"]["tags"] = ["canary"]
    waves = assign_waves(load_fleet(data))
    assert [n for n, w in waves.items() if w == 0] == ["site03-dev07"]


def test_site_cap_is_never_exceeded():
    data = fleet(devices_per_site=12, sites=3, waves=[1, "50%", "100%"], site_cap="25%")
    waves = assign_waves(load_fleet(data))
    per = {}
    for name, wave in waves.items():
        per[(name[:6], wave)] = per.get((name[:6], wave), 0) + 1
    assert max(per.values()) <= 3
    assert len(waves) == 36


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.update(extra=1), "fleet.yml: extra: expected one of the keys"),
    (lambda d: d["devices"]["site01-dev01"].update(site="site99"), "fleet.yml: devices.site01-dev01.site: expected one of"),
    (lambda d: d["devices"]["site01-dev01"].pop("address"), "fleet.yml: devices.site01-dev01.address: expected a value"),
    (lambda d: d["devices"]["site01-dev01"].update(port=0), "fleet.yml: devices.site01-dev01.port"),
    (lambda d: d["devices"]["site01-dev01"].update(profile="nope"), "fleet.yml: devices.site01-dev01.profile"),
    (lambda d: d["devices"]["site01-dev01"].update(tagz=["x"]), "fleet.yml: devices.site01-dev01.tagz"),
    (lambda d: d["sites"]["site01"].update(bastion={"port": 22}), "fleet.yml: sites.site01.bastion.host"),
    (lambda d: d.update(rollout={"waves": ["10%", "5%", "100%"]}), "fleet.yml: rollout.waves[1]"),
    (lambda d: d.update(rollout={"waves": [1, "50%"]}), "fleet.yml: rollout.waves: expected a last wave of 100%"),
    (lambda d: d.update(rollout={"waves": ["50%", 1, "100%"]}), "fleet.yml: rollout.waves[1]"),
    (lambda d: d.update(rollout={"site_cap": "150%"}), "fleet.yml: rollout.site_cap"),
])
def test_bad_fleet_files_name_file_key_and_expectation(mutate, key):
    data = fleet(devices_per_site=2, sites=1)
    mutate(data)
    with pytest.raises(FleetError) as err:
        load_fleet(data, source="fleet.yml")
    assert str(err.value).startswith(key), str(err.value)


def test_hash_canary_is_the_lowest_score_when_nobody_is_tagged():
    data = fleet(devices_per_site=5, sites=2, waves=[2, "100%"])
    loaded = load_fleet(data)
    waves = assign_waves(loaded)
    lowest = sorted(loaded["devices"], key=lambda n: device_score("edgeops", n))[:2]
    assert sorted(n for n, w in waves.items() if w == 0) == sorted(lowest)


# --- rollout policy -------------------------------------------------------------------------------------------

POLICY_DEFAULTS = {
    "waves": [("count", 1), ("share", 0.1), ("share", 0.5), ("share", 1.0)],
    "wave_plan": [1, "10%", "50%", "100%"],
    "canary_tag": "canary",
    "site_cap": 1.0,
    "salt": "edgeops",
    "soak": 60,
    "failure_threshold": 10,
    "min_executed": 1,
    "unreachable": "fail",
    "rollback_switched": True,
    "confirm_timeout": 300,
    "environment": "production",
    "approval_waived": False,
}


@pytest.mark.parametrize("data", [None, {}])
def test_rollout_policy_defaults_every_key(data):
    assert load_rollout_policy(data) == POLICY_DEFAULTS


def test_load_fleet_uses_the_rollout_policy():
    data = fleet(devices_per_site=2, sites=1, waves=[2, "100%"], soak=0)
    policy = load_fleet(data)["rollout"]
    assert policy == load_rollout_policy({"waves": [2, "100%"], "soak": 0})
    assert policy["soak"] == 0 and policy["wave_plan"] == [2, "100%"] and policy["waves"] == [("count", 2), ("share", 1.0)]
    assert load_fleet(fleet(devices_per_site=1, sites=1, waves=[1, "100%"]))["rollout"]["failure_threshold"] == 10


@pytest.mark.parametrize("key, value", [
    ("soak", 0), ("soak", 3600),
    ("failure_threshold", 0), ("failure_threshold", 100), ("failure_threshold", 12.5),
    ("min_executed", 1), ("min_executed", 25),
    ("unreachable", "fail"), ("unreachable", "pause"),
    ("rollback_switched", True), ("rollback_switched", False),
    ("confirm_timeout", 15), ("confirm_timeout", 900),
    ("environment", "staging"), ("environment", "production"),
    ("approval_waived", False),
])
def test_rollout_policy_accepts_each_key(key, value):
    policy = load_rollout_policy({key: value})
    assert policy[key] == value
    assert dict((k, v) for k, v in policy.items() if k != key) == dict((k, v) for k, v in POLICY_DEFAULTS.items() if k != key)


def test_rollout_policy_wave_plan_is_the_plan_as_written():
    policy = load_rollout_policy({"waves": [1, "25%", "100%"], "site_cap": "50%"})
    assert policy["wave_plan"] == [1, "25%", "100%"]
    assert policy["waves"] == [("count", 1), ("share", 0.25), ("share", 1.0)]
    assert policy["site_cap"] == 0.5


def test_approval_may_be_waived_outside_production():
    policy = load_rollout_policy({"environment": "staging", "approval_waived": True})
    assert policy["approval_waived"] is True and policy["environment"] == "staging"


@pytest.mark.parametrize("rollout, message", [
    ({"soak": -1}, "rollout.soak: expected a number of seconds >= 0, got -1"),
    ({"soak": "60"}, "rollout.soak: expected a number of seconds >= 0, got '60'"),
    ({"soak": True}, "rollout.soak: expected a number of seconds >= 0, got True"),
    ({"soak": None}, "rollout.soak: expected a number of seconds >= 0, got None"),
    ({"failure_threshold": -0.5}, "rollout.failure_threshold: expected a percentage number 0-100"),
    ({"failure_threshold": 101}, "rollout.failure_threshold: expected a percentage number 0-100"),
    ({"failure_threshold": "10%"}, "rollout.failure_threshold: expected a percentage number 0-100"),
    ({"failure_threshold": False}, "rollout.failure_threshold: expected a percentage number 0-100"),
    ({"failure_threshold": float("nan")}, "rollout.failure_threshold: expected a percentage number 0-100"),
    ({"min_executed": 0}, "rollout.min_executed: expected a number of devices >= 1, got 0"),
    ({"min_executed": 1.5}, "rollout.min_executed: expected a number of devices >= 1, got 1.5"),
    ({"unreachable": "ignore"}, "rollout.unreachable: expected one of fail, pause, got 'ignore'"),
    ({"unreachable": True}, "rollout.unreachable: expected one of fail, pause, got True"),
    ({"rollback_switched": "yes"}, "rollout.rollback_switched: expected true or false, got 'yes'"),
    ({"rollback_switched": 1}, "rollout.rollback_switched: expected true or false, got 1"),
    ({"confirm_timeout": 14}, "rollout.confirm_timeout: expected a number of seconds >= 15, got 14"),
    ({"confirm_timeout": "300"}, "rollout.confirm_timeout: expected a number of seconds >= 15, got '300'"),
    ({"environment": ""}, "rollout.environment: expected a non-empty string"),
    ({"environment": 3}, "rollout.environment: expected a non-empty string"),
    ({"approval_waived": "false"}, "rollout.approval_waived: expected true or false, got 'false'"),
    ({"approval_waived": True}, "rollout.approval_waived: cannot be true when rollout.environment is production"),
    ({"approval_waived": True, "environment": "production"},
     "rollout.approval_waived: cannot be true when rollout.environment is production"),
    ({"approval_waived": True, "environment": "Production"},
     "rollout.approval_waived: cannot be true when rollout.environment is production"),
    ({"abort_at": 5}, "rollout.abort_at: expected one of the keys"),
    ({"waves": "1,100%"}, "rollout.waves: expected a non-empty list"),
    ([1, "100%"], "rollout: expected a mapping"),
])
def test_rollout_policy_errors_name_source_key_and_expectation(rollout, message):
    with pytest.raises(FleetError) as err:
        load_rollout_policy(rollout, source="vars: edgeops_rollout")
    assert str(err.value).startswith("vars: edgeops_rollout: " + message), str(err.value)
    data = fleet(devices_per_site=1, sites=1)
    data["rollout"] = rollout
    with pytest.raises(FleetError) as err:
        load_fleet(data, source="fleet.yml")
    assert str(err.value).startswith("fleet.yml: " + message), str(err.value)


def test_published_policy_is_json():
    policy = load_rollout_policy({"waves": [1, "50%", "100%"], "environment": "lab", "approval_waived": True})
    published = policy_for_json(policy)
    assert json.loads(json.dumps(published)) == published
    assert published["waves"] == [["count", 1], ["share", 0.5], ["share", 1.0]]
    assert published["wave_plan"] == [1, "50%", "100%"]
    assert set(published) == set(POLICY_DEFAULTS)


@pytest.mark.parametrize("site", ["all", "ungrouped", "edge_devices", "wave_1", "tag_x", "profile_y"])
def test_site_names_that_are_groups_of_their_own_are_refused(site):
    data = fleet(devices_per_site=1, sites=1)
    data["sites"][site] = {}
    with pytest.raises(FleetError) as err:
        load_fleet(data, source="fleet.yml")
    assert str(err.value).startswith("fleet.yml: sites.%s: expected a site name other than" % site), str(err.value)


# --- the inventory plugin's layout and its YAML reader -----------------------------------------------------------

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


@pytest.mark.parametrize("make", [tricky_fleet, lambda: fleet(devices_per_site=5, sites=3)])
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
    data = fleet(devices_per_site=3, sites=2)
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
