# -*- coding: utf-8 -*-
"""Verify base_os on a real lab device (values from converge.yml; stand-ins from prepare.yml)."""

import re

import pytest

OPS_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9wc0tleU9wc0tleU9wc0tleU9wc0tleU9wc0tleU9w ops@example"


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


def test_device_is_running_not_degraded(host):
    # auditd skipped (not failed) in the container, the masked service, the reloaded sshd: nothing failed.
    state = host.run("systemctl is-system-running")
    assert state.stdout.strip() == "running", host.check_output("systemctl --failed --no-legend")


# SSH ------------------------------------------------------------------------------------------------

def _sshd_effective(host):
    return dict(line.split(" ", 1) for line in host.check_output("/usr/sbin/sshd -T").splitlines() if " " in line)


def test_sshd_effective_configuration(host):
    conf = _sshd_effective(host)
    assert conf["passwordauthentication"] == "no"
    assert conf["kbdinteractiveauthentication"] == "no"
    assert conf["permitemptypasswords"] == "no"
    assert conf["authenticationmethods"] == "publickey"
    assert conf["permitrootlogin"] in ("prohibit-password", "without-password")
    assert conf["x11forwarding"] == "no" and conf["allowtcpforwarding"] == "no" and conf["allowagentforwarding"] == "no"
    assert conf["maxauthtries"] == "3"
    assert conf["clientaliveinterval"] == "300" and conf["clientalivecountmax"] == "2"
    assert conf["loglevel"] == "VERBOSE"
    assert conf["channeltimeout"] == "session:shell=30m"
    assert conf["unusedconnectiontimeout"] == "1800"
    assert conf["kexalgorithms"].split(",")[0] in ("mlkem768x25519-sha256", "sntrup761x25519-sha512")
    assert not any("sha1" in kex or "nistp" in kex for kex in conf["kexalgorithms"].split(","))
    assert conf["ciphers"].split(",") == ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
                                          "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"]
    assert all(mac.endswith("-etm@openssh.com") for mac in conf["macs"].split(","))


def _ssh_from_the_device(host, options):
    """ssh from the device to its own sshd; returns (exit status, output). ssh's own 255 would look like a
    failed connection to testinfra, hence the exit status in the output."""
    out = host.check_output("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                            "%s nobody@127.0.0.1 true 2>&1; echo exit=$?" % options)
    return int(out.rsplit("exit=", 1)[1]), out


def test_running_sshd_offers_public_keys_only(host):
    # Asks the live daemon (so the reload took effect), not the files.
    status, out = _ssh_from_the_device(
        host, "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive")
    assert status == 255
    assert "Permission denied (publickey)." in out


@pytest.mark.parametrize("option, refused, keyword", [
    ("-c 3des-cbc", "no matching cipher found", "ciphers"),
    ("-c aes128-cbc", "no matching cipher found", "ciphers"),
    ("-c aes128-ctr -m hmac-sha1", "no matching MAC found", "macs"),  # a cipher with a separate MAC
    ("-o KexAlgorithms=diffie-hellman-group14-sha1", "no matching key exchange method found", "kexalgorithms"),
    ("-o KexAlgorithms=ecdh-sha2-nistp256", "no matching key exchange method found", "kexalgorithms"),
])
def test_running_sshd_refuses_weak_algorithms_and_offers_ours(host, option, refused, keyword):
    # The live daemon's offer, in order, is the configured list: it was reloaded with the drop-in.
    status, out = _ssh_from_the_device(host, option)
    assert status == 255
    assert refused in out
    offer = re.search(r"Their offer: (\S+)", out).group(1).split(",")
    # Key exchange offers end with protocol markers (ext-info-s, kex-strict-s-v00@openssh.com).
    offer = [name for name in offer if not name.startswith(("ext-info-", "kex-strict-"))]
    assert offer == _sshd_effective(host)[keyword].split(",")


def test_sshd_drop_in_sorts_first(host):
    drop_ins = sorted(host.file("/etc/ssh/sshd_config.d").listdir())
    assert drop_ins[0] == "00-edgeops.conf"
    assert host.file("/etc/ssh/sshd_config.d/00-edgeops.conf").mode == 0o644


# Users ----------------------------------------------------------------------------------------------

def test_authorized_keys_are_exclusive(host):
    keys = host.file("/home/ops/.ssh/authorized_keys")
    assert [line for line in keys.content_string.splitlines() if line and not line.startswith("#")] == [OPS_KEY]
    assert "stale@old-laptop" not in keys.content_string
    assert keys.user == "ops" and keys.mode == 0o600


def test_users_from_every_list(host):
    ops, tech = host.user("ops"), host.user("tech")
    assert "adm" in ops.groups
    assert tech.uid == 1500 and {"dialout", "plugdev"} <= set(tech.groups)
    assert host.file("/home/tech/.ssh/authorized_keys").contains("tech@site01")
    assert not host.user("leaver").exists


def test_passwords_locked_and_sudo_passwordless(host):
    shadow = host.check_output("getent shadow ops tech")
    assert all(line.split(":")[1].startswith("!") for line in shadow.splitlines())
    assert host.run("visudo -cf /etc/sudoers.d/edgeops-ops").rc == 0
    assert "NOPASSWD: ALL" in host.check_output("sudo -l -U ops")
    assert not host.file("/etc/sudoers.d/edgeops-tech").exists


# sysctl ---------------------------------------------------------------------------------------------

def _sysctl(host, key):
    return host.check_output("sysctl -n %s" % key).strip()


def test_sysctl_file_has_every_key_for_boot(host):
    conf = host.file("/etc/sysctl.d/60-edgeops-hardening.conf").content_string
    for line in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.accept_redirects=0", "kernel.kptr_restrict=2",
                 "fs.protected_fifos=2", "net.ipv4.tcp_fin_timeout=20"):
        assert line in conf.splitlines()


def test_namespaced_sysctls_are_applied(host):
    assert _sysctl(host, "net.ipv4.conf.all.accept_redirects") == "0"
    assert _sysctl(host, "net.ipv4.conf.all.send_redirects") == "0"
    assert _sysctl(host, "net.ipv4.tcp_syncookies") == "1"
    assert _sysctl(host, "net.ipv4.tcp_fin_timeout") == "20"


def test_ip_forward_kept_on_for_docker_and_libvirt(host):
    assert _sysctl(host, "net.ipv4.ip_forward") == "1"


def test_stand_in_left_the_host_kernel_keys_read_only(host):
    # prepare.yml made only the device's network namespace writable: kernel.* is the host's kernel and
    # stays read-only, so the converge (auto: namespaced keys only) could not have touched it either way.
    assert host.run("test -w /proc/sys/kernel/kptr_restrict").rc != 0
    assert host.run("test -w /proc/sys/net/ipv4/tcp_syncookies").rc == 0


# Automatic security updates -------------------------------------------------------------------------

def test_security_updates_only(host):
    dump = host.check_output("apt-config dump")
    patterns = re.findall(r'^Unattended-Upgrade::Origins-Pattern:: "(.*)";$', dump, re.M)
    assert patterns == ["origin=Debian,codename=${distro_codename}-security,label=Debian-Security"]
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in dump
    assert re.search(r'^Unattended-Upgrade::Package-Blacklist:: "docker.io";$', dump, re.M)


def test_unattended_upgrade_sees_only_the_security_archive(host):
    run = host.run("unattended-upgrade --dry-run --debug 2>&1 | grep -m1 'Allowed origins are'")
    assert "codename=trixie-security" in run.stdout
    assert "codename=trixie," not in run.stdout


def test_update_window(host):
    timer = host.check_output("systemctl show apt-daily-upgrade.timer -p TimersCalendar --value")
    assert "02:00:00" in timer and "06:00" not in timer
    assert host.check_output("systemctl show apt-daily-upgrade.timer -p RandomizedDelayUSec --value") == "1h"


# Watchdog, auditd, minimize -------------------------------------------------------------------------

def test_watchdog_configured_for_pid1(host):
    conf = host.file("/etc/systemd/system.conf.d/50-edgeops-watchdog.conf")
    assert conf.contains("^RuntimeWatchdogSec=30s$") and conf.contains("^RebootWatchdogSec=10min$")
    # systemd re-executed and read it (there is no /dev/watchdog in the lab, so nothing is petted).
    assert host.check_output("systemctl show -p RuntimeWatchdogUSec --value") == "30s"


def test_audit_rules_written_and_auditd_skipped_in_a_container(host):
    rules = host.file("/etc/audit/rules.d/50-edgeops.rules")
    for key in ("identity", "privilege", "sshd", "time-change", "modules", "root-commands", "edgeops"):
        assert rules.contains("-k %s$" % key)
    assert host.package("auditd").is_installed
    assert host.service("auditd").is_enabled
    assert host.check_output("systemctl show auditd -p ConditionResult --value") == "no"
    assert host.check_output("systemctl show auditd -p ActiveState --value") == "inactive"


def test_unneeded_packages_and_services_gone(host):
    assert not host.package("inetutils-telnet").is_installed
    unit = "edgeops-unneeded.service"
    assert host.check_output("systemctl is-enabled %s || true" % unit) == "masked"
    assert host.check_output("systemctl show %s -p ActiveState --value" % unit) == "inactive"


# PCI passthrough ------------------------------------------------------------------------------------

def test_vfio_binds_the_declared_devices(host):
    conf = host.file("/etc/modprobe.d/vfio.conf")
    assert conf.contains("^options vfio-pci ids=10de:1eb8,10de:10f8$")
    assert conf.contains("^softdep nouveau pre: vfio-pci$") and conf.contains("^softdep nvidia pre: vfio-pci$")
    assert host.file("/etc/modules-load.d/vfio.conf").contains("^vfio_pci$")


def test_iommu_kernel_arguments_through_grub(host):
    cpuinfo = host.file("/proc/cpuinfo").content_string
    expected = "intel_iommu=on iommu=pt" if "GenuineIntel" in cpuinfo else "iommu=pt"
    cfg = host.file("/etc/default/grub.d/edgeops-passthrough.cfg")
    assert cfg.contains('^GRUB_CMDLINE_LINUX_DEFAULT="\\$GRUB_CMDLINE_LINUX_DEFAULT %s"$' % expected)
    # update-grub (the stand-in) ran once: at the converge, not at the idempotence run.
    assert len(host.file("/var/log/update-grub-stand-in.log").content_string.split()) == 1


def test_reboot_required_but_not_done(host):
    # /run is a tmpfs: a reboot would have removed the marker.
    assert host.file("/run/reboot-required").exists
    assert "edgeops-passthrough" in host.file("/run/reboot-required.pkgs").content_string.split()
