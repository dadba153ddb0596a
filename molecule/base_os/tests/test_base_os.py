# -*- coding: utf-8 -*-
"""Verify base_os on a real lab device (values from converge.yml)."""

import pytest


@pytest.mark.parametrize("name", ["ca-certificates", "curl", "tzdata", "systemd-timesyncd", "jq"])
def test_packages_installed(host, name):
    assert host.package(name).is_installed


def test_hostname_is_the_inventory_name(host):
    assert host.check_output("hostname") == "site01-dev01"
    assert host.file("/etc/hostname").content_string.strip() == "site01-dev01"


def test_timezone(host):
    assert host.check_output("timedatectl show -p Timezone --value") == "Europe/Paris"
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Europe/Paris"


def test_timesyncd_configured_and_enabled(host):
    conf = host.file("/etc/systemd/timesyncd.conf.d/50-edgeops.conf")
    assert conf.contains("^NTP=ntp1.site.invalid ntp2.site.invalid$")
    assert host.service("systemd-timesyncd").is_enabled


def test_journal_is_persistent_and_capped(host):
    # journald writes to /var/log/journal only when Storage=persistent took effect, and
    # reports the cap it applies when it starts.
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file("/var/log/journal/%s/system.journal" % machine_id).is_file
    started = host.check_output("journalctl -u systemd-journald -o cat --no-pager | grep 'System Journal' | tail -n 1")
    assert "max 150M" in started


def test_workload_user(host):
    user = host.user("edgeops")
    assert user.uid == 2000 and user.gid == 2000
    assert user.shell == "/usr/sbin/nologin"
    assert user.password in ("!", "!*", "*")
    home = host.file("/var/lib/edgeops-workloads")
    assert home.is_directory and home.user == "edgeops" and home.mode == 0o750
