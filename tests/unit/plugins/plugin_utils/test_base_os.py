# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.edgeops.fleet.plugins.plugin_utils._base_os import (
    BaseOsError, parse_sysctl_probe, passthrough_plan, sysctl_plan, sysctl_settings, users_plan)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVz ops@example"
KEY2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 vendor"


# sysctl ---------------------------------------------------------------------------------------------

def test_settings_merge_extra_wins_and_ip_forward_comes_from_its_variable():
    settings = sysctl_settings({"kernel.kptr_restrict": 2, "net.ipv4.tcp_syncookies": True},
                               extra={"kernel.kptr_restrict": 1, "vm.swappiness": "10"}, ip_forward=True)
    assert settings == {"kernel.kptr_restrict": "1", "net.ipv4.ip_forward": "1", "net.ipv4.tcp_syncookies": "1",
                        "vm.swappiness": "10"}
    assert list(settings) == sorted(settings)
    assert sysctl_settings({}, ip_forward=False) == {"net.ipv4.ip_forward": "0"}


def test_multi_word_values_are_normalised():
    assert sysctl_settings({"net.ipv4.tcp_rmem": "4096\t87380   6291456"})["net.ipv4.tcp_rmem"] == "4096 87380 6291456"


@pytest.mark.parametrize("settings, extra, ip_forward, variable", [
    ({"net.ipv4.ip_forward": 0}, None, True, "base_os_sysctl_settings.net.ipv4.ip_forward"),
    ({}, {"net.ipv4.ip_forward": 1}, True, "base_os_sysctl_settings_extra.net.ipv4.ip_forward"),
    ({"Kernel": 1}, None, True, "base_os_sysctl_settings"),
    ({"kernel.x; rm -rf /": 1}, None, True, "base_os_sysctl_settings"),
    ({"kernel.kptr_restrict": "2\nkernel.sysrq=1"}, None, True, "base_os_sysctl_settings.kernel.kptr_restrict"),
    ({"kernel.kptr_restrict": ""}, None, True, "base_os_sysctl_settings.kernel.kptr_restrict"),
    ({"kernel.kptr_restrict": None}, None, True, "base_os_sysctl_settings.kernel.kptr_restrict"),
    ([], None, True, "base_os_sysctl_settings"),
    ({}, None, "yes", "base_os_sysctl_ip_forward"),
])
def test_bad_settings_are_refused_naming_the_variable(settings, extra, ip_forward, variable):
    with pytest.raises(BaseOsError) as err:
        sysctl_settings(settings, extra=extra, ip_forward=ip_forward)
    assert str(err.value).startswith(variable + ":")


SETTINGS = {"kernel.kptr_restrict": "2", "fs.protected_fifos": "2", "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.accept_redirects": "0", "net.core.bpf_jit_harden": "2"}
# What a lab device shows: /proc/sys read-only except net (a stand-in makes net writable), no global net.core keys.
CONTAINER_PROBE = ["kernel.kptr_restrict readonly", "fs.protected_fifos readonly", "net.ipv4.ip_forward writable",
                   "net.ipv4.conf.all.accept_redirects writable", "net.core.bpf_jit_harden missing", "garbage line"]


def test_probe_lines_are_parsed_and_garbage_ignored():
    assert parse_sysctl_probe(CONTAINER_PROBE)["net.core.bpf_jit_harden"] == "missing"
    assert "garbage" not in parse_sysctl_probe(CONTAINER_PROBE)


def test_auto_in_a_container_applies_only_namespaced_keys_even_where_the_kernel_ones_are_writable():
    # A privileged container could write kernel.*: that would change the host, so auto never tries.
    everything_writable = dict((key, "writable") for key in SETTINGS)
    plan = sysctl_plan(SETTINGS, "auto", True, everything_writable)
    assert plan["mode"] == "namespaced"
    assert sorted(plan["apply"]) == ["net.core.bpf_jit_harden", "net.ipv4.conf.all.accept_redirects",
                                     "net.ipv4.ip_forward"]
    assert plan["skipped"]["kernel.kptr_restrict"].startswith("not namespaced")
    assert "container" in plan["skipped"]["fs.protected_fifos"]


def test_auto_on_hardware_applies_everything_writable():
    plan = sysctl_plan(SETTINGS, "auto", False, dict((key, "writable") for key in SETTINGS))
    assert plan["mode"] == "all" and plan["apply"] == SETTINGS and plan["skipped"] == {}


def test_read_only_and_missing_keys_are_written_for_boot_only():
    plan = sysctl_plan(SETTINGS, "namespaced", True, parse_sysctl_probe(CONTAINER_PROBE))
    assert plan["apply"] == {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.accept_redirects": "0"}
    assert plan["skipped"]["net.core.bpf_jit_harden"] == "not in this kernel or network namespace"
    read_only = parse_sysctl_probe(["net.ipv4.ip_forward readonly"])
    assert sysctl_plan({"net.ipv4.ip_forward": "1"}, "all", False, read_only)["skipped"] == {
        "net.ipv4.ip_forward": "read-only here (/proc/sys mounted read-only)"}
    assert sysctl_plan(SETTINGS, "all", False, None)["apply"] == {}


def test_none_applies_nothing_and_bad_modes_are_refused():
    plan = sysctl_plan(SETTINGS, "none", False, dict((key, "writable") for key in SETTINGS))
    assert plan["apply"] == {} and set(plan["skipped"]) == set(SETTINGS)
    with pytest.raises(BaseOsError, match="^base_os_sysctl_apply:"):
        sysctl_plan(SETTINGS, "some")


# users ----------------------------------------------------------------------------------------------

def test_users_get_defaults_and_later_lists_replace_by_name():
    users = users_plan([{"name": "ops", "authorized_keys": [KEY], "sudo": True}, {"name": "tech"}],
                       site=[{"name": "tech", "authorized_keys": [KEY2], "groups": ["dialout"]}],
                       device=[{"name": "vendor", "state": "absent"}], login_user="root")
    assert [u["name"] for u in users] == ["ops", "tech", "vendor"]
    ops, tech, vendor = users
    assert ops == {"name": "ops", "state": "present", "uid": None, "groups": [], "append": True, "shell": "/bin/bash",
                   "comment": "", "authorized_keys": [KEY], "sudo": True, "password_lock": True}
    assert tech["authorized_keys"] == [KEY2] and tech["groups"] == ["dialout"]
    assert vendor["state"] == "absent"


def test_key_lines_with_options_are_accepted():
    line = 'from="10.0.0.0/8",no-agent-forwarding ' + KEY
    assert users_plan([{"name": "ops", "authorized_keys": [line + "  "]}])[0]["authorized_keys"] == [line]


@pytest.mark.parametrize("users, login_user, variable", [
    ([{"name": "admin", "state": "absent"}], "admin", "base_os_users[0].state"),
    ([{"name": "root", "state": "absent"}], "admin", "base_os_users[0].state"),
    ([{"name": "admin", "authorized_keys": []}], "admin", "base_os_users[0].authorized_keys"),
    ([{"name": "admin", "authorized_keys": [KEY]}], "admin", "base_os_users[0].password_lock"),
    ([{"name": "Admin"}], None, "base_os_users[0].name"),
    ([{"name": "ops", "keys": [KEY]}], None, "base_os_users[0].keys"),
    ([{"name": "ops", "authorized_keys": ["AAAAC3NzaC1lZDI1NTE5 no type"]}], None,
     "base_os_users[0].authorized_keys[0]"),
    ([{"name": "ops", "authorized_keys": [KEY + "\n" + KEY2]}], None, "base_os_users[0].authorized_keys[0]"),
    ([{"name": "ops", "authorized_keys": KEY}], None, "base_os_users[0].authorized_keys"),
    ([{"name": "ops", "uid": "1001"}], None, "base_os_users[0].uid"),
    ([{"name": "ops", "state": "locked"}], None, "base_os_users[0].state"),
    ([{"name": "ops", "sudo": "yes"}], None, "base_os_users[0].sudo"),
    ([{"name": "ops", "groups": "sudo"}], None, "base_os_users[0].groups"),
    ([{"name": "ops", "shell": "bash"}], None, "base_os_users[0].shell"),
    ([{"name": "ops"}, {"name": "ops"}], None, "base_os_users[1].name"),
    ({"name": "ops"}, None, "base_os_users"),
])
def test_bad_or_dangerous_users_are_refused_naming_the_entry(users, login_user, variable):
    with pytest.raises(BaseOsError) as err:
        users_plan(users, login_user=login_user)
    assert str(err.value).startswith(variable + ":")


def test_the_login_account_is_guarded_in_the_site_and_device_lists_too():
    with pytest.raises(BaseOsError, match=r"^base_os_users_device\[0\]\.state: refusing to remove admin"):
        users_plan([], device=[{"name": "admin", "state": "absent"}], login_user="admin")
    # The same name in two lists is a replacement, not a duplicate.
    assert users_plan([{"name": "admin", "authorized_keys": [KEY], "sudo": True}],
                      site=[{"name": "admin", "authorized_keys": [KEY2], "sudo": True}],
                      login_user="admin")[0]["authorized_keys"] == [KEY2]


def test_the_login_account_may_keep_a_password_with_passwordless_sudo_or_unlocked():
    assert users_plan([{"name": "admin", "authorized_keys": [KEY], "sudo": True}], login_user="admin")
    assert users_plan([{"name": "admin", "authorized_keys": [KEY], "password_lock": False}], login_user="admin")
    assert users_plan([{"name": "root", "authorized_keys": [KEY]}], login_user="root")


@pytest.mark.parametrize("shell", ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"])
def test_the_login_account_keeps_a_shell_that_allows_logins(shell):
    admin = {"name": "admin", "authorized_keys": [KEY], "sudo": True, "shell": shell}
    with pytest.raises(BaseOsError) as err:
        users_plan([], site=[admin], login_user="admin")
    assert str(err.value).startswith("base_os_users_site[0].shell: admin is the account Ansible logs in as")
    # Another account may have one.
    assert users_plan([dict(admin, name="svc")], login_user="admin")[0]["shell"] == shell


def test_append_false_may_not_take_the_login_account_out_of_its_groups():
    admin = {"name": "admin", "authorized_keys": [KEY], "sudo": True, "append": False, "groups": ["docker"]}
    with pytest.raises(BaseOsError) as err:
        users_plan([admin], login_user="admin", login_groups="admin sudo docker sshusers")
    assert str(err.value).startswith("base_os_users[0].append: admin is the account Ansible logs in as")
    assert "of sudo, sshusers (" in str(err.value)
    # The primary group (first) is not a supplementary one; every other group listed: accepted.
    assert users_plan([dict(admin, groups=["sudo", "docker", "sshusers"])], login_user="admin",
                      login_groups=["admin", "sudo", "docker", "sshusers"])[0]["append"] is False
    # append: true, another account, or groups not known: nothing is dropped.
    assert users_plan([dict(admin, append=True)], login_user="admin", login_groups="admin sudo")
    assert users_plan([dict(admin, name="ops")], login_user="admin", login_groups="admin sudo")
    assert users_plan([admin], login_user="admin")


# passthrough ----------------------------------------------------------------------------------------

def test_passthrough_ids_and_iommu_arguments_per_cpu_vendor():
    intel = passthrough_plan(["10DE:1EB8", "10de:10f8", "10de:1eb8"], ["0", "GenuineIntel", "Intel(R) Xeon(R)"],
                             softdep_drivers=["nouveau", "nvidia"])
    assert intel == {"ids": ["10de:1eb8", "10de:10f8"], "kernel_args": ["intel_iommu=on", "iommu=pt"],
                     "softdep_drivers": ["nouveau", "nvidia"]}
    assert passthrough_plan(["1002:73bf"], ["0", "AuthenticAMD", "AMD Ryzen"])["kernel_args"] == ["iommu=pt"]
    arm = passthrough_plan(["10de:2206"], ["0", "ARMv8 Processor rev 1 (v8l)"], kernel_args_extra=["vfio_iommu_type1.allow_unsafe_interrupts=1"])
    assert arm["kernel_args"] == ["vfio_iommu_type1.allow_unsafe_interrupts=1"]


def test_no_declared_device_means_no_kernel_argument():
    assert passthrough_plan([], ["0", "GenuineIntel"], kernel_args_extra=["iommu=pt"])["kernel_args"] == []


@pytest.mark.parametrize("kwargs, variable", [
    (dict(pci_ids=["10de-1eb8"]), "base_os_passthrough_pci_ids[0]"),
    (dict(pci_ids=["10de:1eb"]), "base_os_passthrough_pci_ids[0]"),
    (dict(pci_ids="10de:1eb8"), "base_os_passthrough_pci_ids"),
    (dict(pci_ids=["10de:1eb8"], kernel_args_extra=["iommu=pt quiet"]), "base_os_passthrough_kernel_args_extra"),
    (dict(pci_ids=["10de:1eb8"], kernel_args_extra=['x="y"']), "base_os_passthrough_kernel_args_extra"),
    (dict(pci_ids=["10de:1eb8"], softdep_drivers=["nvidia drm"]), "base_os_passthrough_softdep_drivers"),
])
def test_bad_passthrough_values_are_refused_naming_the_variable(kwargs, variable):
    with pytest.raises(BaseOsError) as err:
        passthrough_plan(**kwargs)
    assert str(err.value).startswith(variable + ":")
