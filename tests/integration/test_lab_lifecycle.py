# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab and site.yml end to end, as a user runs them: up, converge, again, status, down.

Uses its own lab name and ports so it never touches the user's lab.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from conftest import ansible, docker_names, inventory_hosts

LAB = "edgeops-citest"
PORT_BASE = "42500"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    inventory = str(tmp_path_factory.mktemp("lab") / "hosts.yml")
    lab_vars = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=" + PORT_BASE, "-e", "lab_inventory_file=" + inventory]
    first = ansible("ansible-playbook", "playbooks/lab/up.yml", *lab_vars)
    yield {"vars": lab_vars, "inventory": inventory, "first_up": first}
    ansible("ansible-playbook", "playbooks/lab/down.yml", *lab_vars)


def test_up_starts_three_devices_and_a_hub_reachable_over_ssh(lab):
    assert lab["first_up"].rc == 0, lab["first_up"].out
    data = inventory_hosts(lab["inventory"])
    assert sorted(data["edge_devices"]["hosts"]) == ["site01-dev01", "site01-dev02", "site01-dev03"]
    assert data["site_hubs"]["hosts"] == ["site01-hub"]
    ping = ansible("ansible", "-i", lab["inventory"], "all", "-m", "ansible.builtin.ping")
    assert ping.rc == 0, ping.out
    assert ping.out.count("SUCCESS") == 4
    assert docker_names("container", LAB) == [
        LAB + "-site01-dev01", LAB + "-site01-dev02", LAB + "-site01-dev03", LAB + "-site01-hub"]
    # each container has its own /var/lib/docker volume
    assert len(docker_names("volume", LAB)) == 4


def test_host_keys_are_pinned_and_differ_per_device(lab):
    run = ansible("ansible", "-i", lab["inventory"], "edge_devices", "-m", "ansible.builtin.command",
                  "-a", "cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert run.rc == 0, run.out
    keys = {line.split()[1] for line in run.out.splitlines() if line.startswith("ssh-ed25519")}
    assert len(keys) == 3


def test_up_again_changes_nothing(lab):
    again = ansible("ansible-playbook", "playbooks/lab/up.yml", *lab["vars"])
    assert again.rc == 0, again.out
    assert again.recap["localhost"]["changed"] == 0, again.out


def test_site_converges_then_reports_no_change(lab):
    first = ansible("ansible-playbook", "-i", lab["inventory"], "site.yml")
    assert first.rc == 0, first.out
    assert set(first.recap) == {"site01-hub", "site01-dev01", "site01-dev02", "site01-dev03"}
    assert all(r["changed"] > 0 for r in first.recap.values()), first.recap
    second = ansible("ansible-playbook", "-i", lab["inventory"], "site.yml")
    assert second.rc == 0, second.out
    assert {h: r["changed"] for h, r in second.recap.items()} == {h: 0 for h in first.recap}, second.out


def test_site_check_mode_reports_no_change_on_a_converged_lab(lab):
    check = ansible("ansible-playbook", "-i", lab["inventory"], "site.yml", "--check", "--diff")
    assert check.rc == 0, check.out
    assert all(r["changed"] == 0 for r in check.recap.values()), check.out


def test_status_shows_every_container_running(lab):
    status = ansible("ansible-playbook", "playbooks/lab/status.yml", "-e", "lab_name=" + LAB)
    assert status.rc == 0, status.out
    assert "%s: 4 container(s)" % LAB in status.out
    assert status.out.count("systemd running") == 4, status.out


def test_down_leaves_no_container_volume_network_or_inventory(lab):
    down = ansible("ansible-playbook", "playbooks/lab/down.yml", *lab["vars"])
    assert down.rc == 0, down.out
    assert docker_names("container", LAB) == []
    assert docker_names("volume", LAB) == []
    assert docker_names("network", LAB) == []
    assert not os.path.exists(lab["inventory"])
