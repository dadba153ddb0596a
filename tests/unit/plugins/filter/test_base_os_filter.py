# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.filter.base_os import FilterModule

FILTERS = FilterModule().filters()


def test_filters_are_registered_and_chain_like_the_role_does():
    settings = FILTERS["sysctl_settings"]({"kernel.kptr_restrict": 2}, extra={}, ip_forward=True)
    plan = FILTERS["sysctl_plan"](settings, mode="auto", in_container=True,
                                  probe=["kernel.kptr_restrict writable", "net.ipv4.ip_forward writable"])
    assert plan["apply"] == {"net.ipv4.ip_forward": "1"}
    assert FILTERS["users_plan"]([{"name": "ops"}])[0]["state"] == "present"
    assert FILTERS["passthrough_plan"](["10de:1eb8"], processor=["GenuineIntel"])["ids"] == ["10de:1eb8"]


@pytest.mark.parametrize("name, args, kwargs, variable", [
    ("sysctl_settings", ({"net.ipv4.ip_forward": 0},), {}, "base_os_sysctl_settings"),
    ("sysctl_plan", ({},), {"mode": "bad"}, "base_os_sysctl_apply"),
    ("users_plan", ([{"name": "admin", "state": "absent"}],), {"login_user": "admin"}, "base_os_users"),
    ("passthrough_plan", (["nope"],), {}, "base_os_passthrough_pci_ids"),
])
def test_errors_become_filter_errors_naming_filter_and_variable(name, args, kwargs, variable):
    with pytest.raises(AnsibleFilterError, match="^edgeops.fleet.%s: %s" % (name, variable)):
        FILTERS[name](*args, **kwargs)
