# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lab over two sites, a resize, and bad input refused before anything starts.

Six devices and two hubs: enough for two sites, their groups and a resize that removes hosts, networks and
volumes. It was 20 devices, then 10; booting 22 systemd containers took 290 s of the suite on 2 CPUs beside the other
labs and slowed them all. Ten devices boot (and roll out) in test_rollout_scale.py; fleet scale is benchmarks/.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from conftest import ansible, docker_names, inventory_hosts

LAB = "edgeops-scaletest"


@pytest.fixture
def lab_vars(tmp_path):
    names = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=43000",
             "-e", "lab_inventory_file=%s" % (tmp_path / "hosts.yml")]
    yield names, str(tmp_path / "hosts.yml")
    ansible("ansible-playbook", "playbooks/lab/down.yml", *names)
    assert docker_names("container", LAB) == []


def test_six_devices_on_two_sites_then_shrink(lab_vars):
    names, inventory = lab_vars
    up = ansible("ansible-playbook", "playbooks/lab/up.yml", *names,
                 "-e", "lab_sites=2", "-e", "lab_devices_per_site=3")
    assert up.rc == 0, up.out
    data = inventory_hosts(inventory)
    assert len(data["edge_devices"]["hosts"]) == 6
    assert len(data["site02"]["hosts"]) == 4
    ping = ansible("ansible", "-i", inventory, "all", "-m", "ansible.builtin.ping")
    assert ping.rc == 0, ping.out
    assert ping.out.count("SUCCESS") == 8

    shrink = ansible("ansible-playbook", "playbooks/lab/up.yml", *names,
                     "-e", "lab_sites=1", "-e", "lab_devices_per_site=2")
    assert shrink.rc == 0, shrink.out
    assert docker_names("container", LAB) == [LAB + "-site01-dev01", LAB + "-site01-dev02", LAB + "-site01-hub"]
    assert docker_names("network", LAB) == [LAB + "-site01"]
    assert len(docker_names("volume", LAB)) == 3


@pytest.mark.parametrize("setting, value", [("lab_devices_per_site", "500"), ("lab_name", "Bad_Name"),
                                            ("lab_sites", "0")])
def test_bad_setting_is_refused_by_name_before_anything_starts(lab_vars, setting, value):
    names, dummy = lab_vars
    up = ansible("ansible-playbook", "playbooks/lab/up.yml", *names, "-e", "%s=%s" % (setting, value))
    assert up.rc != 0
    assert setting in up.out
    assert docker_names("container", LAB) == []
    assert docker_names("network", LAB) == []
