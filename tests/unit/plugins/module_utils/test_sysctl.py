# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""edgeops.fleet.sysctl_apply's plan and apply against a /proc/sys laid out in a temporary directory."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _sysctl as sysctl


@pytest.fixture
def proc(tmp_path):
    for key, value in {"net/ipv4/tcp_syncookies": "0\n", "net/ipv4/ip_local_port_range": "32768\t60999\n",
                       "net/ipv4/conf/eth0.100/rp_filter": "0\n", "kernel/kptr_restrict": "2\n"}.items():
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    return tmp_path


def test_only_differing_keys_are_set_and_whitespace_does_not_count(proc):
    settings = {"net.ipv4.tcp_syncookies": 1, "net.ipv4.ip_local_port_range": "32768 60999",
                "net.ipv4.conf.eth0/100.rp_filter": "1", "kernel.kptr_restrict": "2"}
    changes = sysctl.plan(settings, root=str(proc))
    assert changes == {"net.ipv4.conf.eth0/100.rp_filter": ("0", "1"), "net.ipv4.tcp_syncookies": ("0", "1")}
    assert sysctl.diff(changes) == {
        "before": "net.ipv4.conf.eth0/100.rp_filter = 0\nnet.ipv4.tcp_syncookies = 0\n",
        "after": "net.ipv4.conf.eth0/100.rp_filter = 1\nnet.ipv4.tcp_syncookies = 1\n"}
    sysctl.apply(changes, root=str(proc))
    assert (proc / "net/ipv4/conf/eth0.100/rp_filter").read_text() == "1\n"
    assert (proc / "net/ipv4/tcp_syncookies").read_text() == "1\n"
    assert sysctl.plan(settings, root=str(proc)) == {}


@pytest.mark.parametrize("settings, message", [
    ({"net.ipv4.no_such_key": 1}, "net.ipv4.no_such_key: no such kernel parameter"),
    ({"../../etc/passwd": 1}, "'../../etc/passwd' is not a sysctl key"),
    ({"net..ipv4": 1}, "'net..ipv4' is not a sysctl key"),
    ({"net.ipv4.tcp_syncookies": ""}, "settings.net.ipv4.tcp_syncookies: expected a value"),
    ({"net.ipv4.tcp_syncookies": [1]}, "settings.net.ipv4.tcp_syncookies: expected a value"),
])
def test_bad_keys_and_values_are_refused_before_anything_is_written(proc, settings, message):
    with pytest.raises(sysctl.SysctlError) as caught:
        sysctl.plan(dict(settings, **{"net.ipv4.tcp_syncookies": settings.get("net.ipv4.tcp_syncookies", 1)}),
                    root=str(proc))
    assert message in str(caught.value)
    assert (proc / "net/ipv4/tcp_syncookies").read_text() == "0\n"


def test_a_value_the_kernel_rewrites_is_an_error(proc, monkeypatch):
    real_read = sysctl.read
    monkeypatch.setattr(sysctl, "read", lambda key, root: "0" if key.endswith("syncookies") else real_read(key, root))
    with pytest.raises(sysctl.SysctlError, match="set to '1', the kernel kept '0'"):
        sysctl.apply({"net.ipv4.tcp_syncookies": ("0", "1")}, root=str(proc))
