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
