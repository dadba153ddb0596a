# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.filter.secrets import FilterModule

FILTERS = FilterModule().filters()


def test_filters_are_registered():
    assert sorted(FILTERS) == ["secrets_fingerprints", "secrets_rotation_plan", "secrets_stamp"]


def test_filter_errors_become_filter_errors_naming_the_secret():
    with pytest.raises(AnsibleFilterError, match="secret api_token has no encrypted copy"):
        FILTERS["secrets_fingerprints"]([{"item": "api_token", "stat": {"exists": False}}])
    with pytest.raises(AnsibleFilterError, match="expects the output of edgeops.fleet.workloads_release"):
        FILTERS["secrets_stamp"]({}, {})
    with pytest.raises(AnsibleFilterError, match="secret x is not mounted"):
        FILTERS["secrets_rotation_plan"]({"services": {}}, ["x"], [], [])


def test_fingerprints_filter_defaults_to_no_file_results():
    stats = [{"item": "a", "stat": {"exists": True, "checksum": "c" * 64}}]
    assert FILTERS["secrets_fingerprints"](stats) == {"a": "c" * 16}
