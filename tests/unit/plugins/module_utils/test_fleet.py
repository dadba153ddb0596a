# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils._fleet import FleetError, assign_waves, device_score, load_fleet


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
