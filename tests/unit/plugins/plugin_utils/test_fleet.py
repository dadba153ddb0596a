# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet file's helpers (plugins/plugin_utils/_fleet.py): validation, wave assignment and the rollout policy."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

import pytest

from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import (
    FleetError, assign_waves, device_score, load_fleet, load_rollout_policy, policy_for_json, ssh_common_args)
from conftest import sample_fleet


def test_waves_are_stable_across_runs_and_roughly_follow_the_plan():
    data = sample_fleet()
    first = assign_waves(load_fleet(copy.deepcopy(data)))
    assert first == assign_waves(load_fleet(copy.deepcopy(data)))
    sizes = [sum(1 for w in first.values() if w == i) for i in range(4)]
    assert sizes[0] == 1
    assert 5 <= sizes[1] <= 40 and sum(sizes[:3]) < 200 and sum(sizes) == 200


def test_adding_a_device_moves_no_other_device():
    data = sample_fleet()
    data["devices"]["site01-dev01"]["tags"] = ["canary"]  # a pinned canary
    before = assign_waves(load_fleet(copy.deepcopy(data)))
    for extra in range(20):
        data["devices"]["site0%d-new%02d" % (extra % 4 + 1, extra)] = {"site": "site0%d" % (extra % 4 + 1),
                                                                       "address": "10.9.9.%d" % (extra + 1)}
    after = assign_waves(load_fleet(copy.deepcopy(data)))
    assert dict((n, after[n]) for n in before) == before
    assert before["site01-dev01"] == 0


def test_canary_tag_wins_over_the_hash():
    data = sample_fleet()
    data["devices"]["site03-dev07"]["tags"] = ["canary"]
    waves = assign_waves(load_fleet(data))
    assert [n for n, w in waves.items() if w == 0] == ["site03-dev07"]


def test_site_cap_is_never_exceeded():
    data = sample_fleet(devices_per_site=12, sites=3, waves=[1, "50%", "100%"], site_cap="25%")
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
    data = sample_fleet(devices_per_site=2, sites=1)
    mutate(data)
    with pytest.raises(FleetError) as err:
        load_fleet(data, source="fleet.yml")
    assert str(err.value).startswith(key), str(err.value)


def test_hash_canary_is_the_lowest_score_when_nobody_is_tagged():
    data = sample_fleet(devices_per_site=5, sites=2, waves=[2, "100%"])
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
    data = sample_fleet(devices_per_site=2, sites=1, waves=[2, "100%"], soak=0)
    policy = load_fleet(data)["rollout"]
    assert policy == load_rollout_policy({"waves": [2, "100%"], "soak": 0})
    assert policy["soak"] == 0 and policy["wave_plan"] == [2, "100%"] and policy["waves"] == [("count", 2), ("share", 1.0)]
    assert load_fleet(sample_fleet(devices_per_site=1, sites=1, waves=[1, "100%"]))["rollout"]["failure_threshold"] == 10


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
    data = sample_fleet(devices_per_site=1, sites=1)
    data["rollout"] = rollout
    with pytest.raises(FleetError) as err:
        load_fleet(data, source="fleet.yml")
    assert str(err.value).startswith("fleet.yml: " + message), str(err.value)


def test_published_policy_is_json():
    policy = load_rollout_policy({"waves": [1, "50%", "100%"], "environment": "lab", "approval_waived": True})
    published = policy_for_json(policy)
    assert json.loads(json.dumps(published)) == published
    assert published["wave_plan"] == [1, "50%", "100%"]
    assert set(published) == set(POLICY_DEFAULTS) - {"waves"}  # every host carries it: the plan once
    assert load_rollout_policy({}, base=published) == policy  # what the rollout playbook reads back


@pytest.mark.parametrize("site", ["all", "ungrouped", "edge_devices", "wave_1", "tag_x", "profile_y"])
def test_site_names_that_are_groups_of_their_own_are_refused(site):
    data = sample_fleet(devices_per_site=1, sites=1)
    data["sites"][site] = {}
    with pytest.raises(FleetError) as err:
        load_fleet(data, source="fleet.yml")
    assert str(err.value).startswith("fleet.yml: sites.%s: expected a site name other than" % site), str(err.value)


# --- references inside the file, ssh arguments, values of any type -----------------------------------------

def two_sites():
    data = sample_fleet(devices_per_site=2, sites=2)
    data["sites"]["site02"].pop("bastion")
    return data


@pytest.mark.parametrize("mutate, message", [
    # a bastion or registry that is a device of another site
    (lambda d: d["sites"]["site01"]["bastion"].update(host="site02-dev01"),
     "fleet.yml: sites.site01.bastion.host: expected a host of site site01 (or outside the fleet): it is device "
     "site02-dev01 of site site02, got 'site02-dev01'"),
    (lambda d: d["sites"]["site01"]["bastion"].update(host="10.2.0.11"),
     "fleet.yml: sites.site01.bastion.host: expected a host of site site01 (or outside the fleet): it is device "
     "site02-dev01 of site site02"),
    (lambda d: d["sites"]["site02"].update(registry="site01-dev02:5000"),
     "fleet.yml: sites.site02.registry: expected a registry of site site02 (or outside the fleet): site01-dev02 is "
     "device site01-dev02 of site site01"),
    (lambda d: d["sites"]["site02"].update(registry="hub:70000"),
     "fleet.yml: sites.site02.registry: expected a registry address host[:port] (port 1-65535), got 'hub:70000'"),
    (lambda d: d["sites"]["site02"].update(registry="hub:5000/x"), "fleet.yml: sites.site02.registry: expected"),
    # what would reach ssh's command line as more options
    (lambda d: d["sites"]["site01"]["bastion"].update(user="x -oProxyCommand=touch /tmp/p"),
     "fleet.yml: sites.site01.bastion.user: expected a user name"),
    (lambda d: d["sites"]["site01"]["bastion"].update(user=["jump"]), "fleet.yml: sites.site01.bastion.user"),
    (lambda d: d["devices"]["site01-dev01"].update(user="-oProxyCommand=x"), "fleet.yml: devices.site01-dev01.user"),
    # a jump host of its own beside the bastion's
    (lambda d: d["sites"]["site01"].update(vars={"ansible_ssh_common_args": "-o ProxyJump=other"}),
     "fleet.yml: sites.site01.vars.ansible_ssh_common_args: expected no jump host (-J, ProxyJump, ProxyCommand): "
     "site site01 has a bastion"),
    (lambda d: d["sites"]["site01"].update(vars={"ansible_ssh_common_args": "-oProxyCommand='nc %h %p'"}),
     "fleet.yml: sites.site01.vars.ansible_ssh_common_args: expected no jump host"),
    (lambda d: d["devices"]["site01-dev01"].update(vars={"ansible_ssh_common_args": "-J other"}),
     "fleet.yml: devices.site01-dev01.vars.ansible_ssh_common_args: expected no jump host"),
    (lambda d: d["profiles"]["nuc-gpu"].update(vars={"ansible_ssh_common_args": "-o 'proxyjump other'"}),
     "fleet.yml: profiles.nuc-gpu.vars.ansible_ssh_common_args: expected no jump host (-J, ProxyJump, ProxyCommand): "
     "site site01 has a bastion"),
    (lambda d: d["sites"]["site02"].update(vars={"ansible_ssh_common_args": ["-o", "X=y"]}),
     "fleet.yml: sites.site02.vars.ansible_ssh_common_args: expected ssh arguments as a string"),
    (lambda d: d["sites"]["site02"].update(vars={"ansible_ssh_common_args": "-o 'open"}),
     "fleet.yml: sites.site02.vars.ansible_ssh_common_args: expected ssh arguments a shell can split"),
    # values of types the checks did not expect (each was a TypeError or AttributeError before)
    (lambda d: d["sites"].update({1: {}}), "fleet.yml: sites.1: expected a name of lowercase letters"),
    (lambda d: d["devices"].update({None: {}}), "fleet.yml: devices.None: expected a name of lowercase letters"),
    (lambda d: d["devices"]["site01-dev01"].update(site=["site01"]),
     "fleet.yml: devices.site01-dev01.site: expected one"),
    (lambda d: d["devices"]["site01-dev01"].update(profile={"a": 1}), "fleet.yml: devices.site01-dev01.profile"),
    (lambda d: d.update(profiles=["nuc-gpu"]), "fleet.yml: profiles: expected a mapping of profile name"),
    (lambda d: d.update(version=True), "fleet.yml: version: expected 1, got True"),
    (lambda d: d["devices"]["site01-dev01"].update(release=2024.10),
     "fleet.yml: devices.site01-dev01.release: expected a release name as a string (letters, digits, '.', '_', '+', "
     "'-'; quote a version such as \"2024.10\", which unquoted is a number), got 2024.1"),
    (lambda d: d["devices"]["site01-dev01"].update(channel={"x": 1}), "fleet.yml: devices.site01-dev01.channel"),
    (lambda d: d["devices"]["site01-dev01"].update(tags=list(range(1000))),
     "fleet.yml: devices.site01-dev01.tags: expected a list of names"),
])
def test_bad_references_and_values_are_refused_naming_file_and_key(mutate, message):
    data = two_sites()
    mutate(data)
    with pytest.raises(FleetError) as err:
        load_fleet(data, source="fleet.yml")
    assert str(err.value).startswith(message), str(err.value)
    assert len(str(err.value)) < 500  # what the file held is cut short in the message


def test_a_bastion_or_registry_outside_the_fleet_or_in_its_site_is_fine():
    data = two_sites()
    data["sites"]["site01"]["bastion"] = {"host": "site01-dev02", "user": "jump"}  # a device of its own site
    data["sites"]["site02"]["registry"] = "site02-dev01:5000"
    data["sites"]["site02"]["bastion"] = {"host": "10.2.0.11", "port": 2222}  # the address, another port: not it
    fleet = load_fleet(data)
    assert fleet["sites"]["site01"]["bastion"]["device"] == "site01-dev02"
    assert fleet["sites"]["site02"]["bastion"]["device"] is None
    data["sites"]["site02"]["bastion"]["port"] = 22
    assert load_fleet(data)["sites"]["site02"]["bastion"]["device"] == "site02-dev01"


@pytest.mark.parametrize("own, expected", [
    (None, "-o ProxyJump=jump@10.0.0.1:2222"),
    ("", "-o ProxyJump=jump@10.0.0.1:2222"),
    ("-o UserKnownHostsFile=/k -o IdentitiesOnly=yes ",
     "-o UserKnownHostsFile=/k -o IdentitiesOnly=yes -o ProxyJump=jump@10.0.0.1:2222"),
])
def test_ssh_common_args_adds_the_proxyjump_to_the_own_arguments(own, expected):
    assert ssh_common_args(own, {"host": "10.0.0.1", "port": 2222, "user": "jump"}) == expected
    assert ssh_common_args(own, None) == own
