# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.filter.lab import FilterModule


def test_filter_is_registered_and_plans():
    lab_plan = FilterModule().filters()["lab_plan"]
    assert len(lab_plan("lab", 2, 3)["hosts"]) == 8


def test_filter_turns_plan_errors_into_filter_errors():
    lab_plan = FilterModule().filters()["lab_plan"]
    with pytest.raises(AnsibleFilterError, match="lab_devices_per_site"):
        lab_plan("lab", devices_per_site=500)


def test_filter_passes_publish_device_ssh():
    lab_plan = FilterModule().filters()["lab_plan"]
    hosts = lab_plan("lab", 1, 2, 42200, True, False)["hosts"]
    assert [h["ssh_port"] for h in hosts] == [42200, None, None]
