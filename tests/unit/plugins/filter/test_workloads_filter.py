# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.filter.workloads_release import FilterModule

FILTERS = FilterModule().filters()


def test_probes_in_role_variables_are_normalised_with_the_device_defaults():
    out = FILTERS["workloads_probes"]([{"type": "tcp", "port": 8080}], "workloads_gate_probes")
    assert out == [{"name": "tcp-0", "type": "tcp", "port": 8080, "host": "127.0.0.1", "retries": 3, "interval": 2,
                    "timeout": 5}]
    assert FILTERS["workloads_probes"](None, "workloads_health_checks") == []


@pytest.mark.parametrize("probes, named, message", [
    ([{"type": "tcp", "port": 8080, "retries": -1}], False, "workloads_gate_probes[0].retries"),
    ([{"type": "dns", "host": "x"}], False, "workloads_gate_probes[0].type must be one of"),
    ([{"type": "tcp", "port": 1}], True, "workloads_gate_probes[0].name is required"),
    ({"type": "tcp"}, False, "workloads_gate_probes must be a list"),
])
def test_a_bad_probe_in_a_role_variable_is_named(probes, named, message):
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS["workloads_probes"](probes, "workloads_gate_probes", named)
    assert str(err.value).startswith(message), str(err.value)


def test_published_images_filter_names_a_bad_reference():
    with pytest.raises(AnsibleFilterError, match="'busybox' is not registry/repository@digest"):
        FILTERS["workloads_published_images"]([{"device": "d", "images": {"cache": "busybox"}}])


class _HostVars(dict):
    """hostvars as a filter sees it: host name -> that host's variables (a mapping with .get)."""


def test_site_problems_names_each_site_that_cannot_take_the_release_and_never_a_secret_value():
    hostvars = _HostVars({
        "s1-d": {"workloads_secrets": {"token": "s3cret-one", "key": "k"}},
        "s2-d": {"workloads_secrets": {"key": "s3cret-two"}},
        "s3-d": {"workloads_secrets": "not-a-mapping"},
        "s4-d": {},
        "s7-d": {"workloads_secrets": None},
        "s5-d": {"workloads_secrets": {"token": "t", "key": "k"}},
    })
    sites = [{"site": "s1", "registry": "s1-hub:5000", "device": "s1-d"},
             {"site": "s2", "registry": "s2-hub:5000", "device": "s2-d"},
             {"site": "s3", "registry": "", "device": "s3-d"},
             {"site": "s4", "registry": "s4-hub:5000", "device": "s4-d"},
             {"site": "s5", "registry": "bad registry!", "device": "s5-d"},
             {"site": "s6", "registry": "s6-hub:5000", "device": "gone"},
             {"site": "s7", "registry": "s7-hub:5000", "device": "s7-d"}]
    out = FILTERS["workloads_site_problems"](sites, hostvars, ["token", "key"], {"registry": "central:5000"})
    assert out == [
        "site s2 (device s2-d): secret(s) token are read by workloads but have no value in workloads_secrets",
        "site s3 (device s3-d): workloads_secrets must be a mapping of secret names to values",
        "site s4 (device s4-d): secret(s) token, key are read by workloads but have no value in workloads_secrets",
        "site s5 (device s5-d): registry: must be a registry address such as site01-hub:5000, got 'bad registry!'",
        "site s6 (device gone): the device is not in the inventory",
        "site s7 (device s7-d): workloads_secrets must be a mapping of secret names to values"]
    assert "s3cret" not in " ".join(out)
    # A site without a registry of its own pulls from the manifest's; without that either, it is named.
    assert FILTERS["workloads_site_problems"]([{"site": "s1", "registry": "", "device": "s1-d"}], hostvars,
                                              ["token"], {}) == [
        "site s1 (device s1-d): registry: no site registry: set workloads_registry (the site's registry address) or "
        "registry in the manifest"]
    assert FILTERS["workloads_site_problems"]([], hostvars, ["token"], {}) == []
