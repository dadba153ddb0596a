# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.module_utils._lab import LabPlanError, lab_plan


def _lab_plan(lab_name, sites=1, devices_per_site=3, ssh_port_base=42200, hubs=True, publish_device_ssh=True):
    try:
        return lab_plan(lab_name, sites=sites, devices_per_site=devices_per_site,
                        ssh_port_base=ssh_port_base, hubs=hubs, publish_device_ssh=publish_device_ssh)
    except LabPlanError as exc:
        raise AnsibleFilterError("edgeops.fleet.lab_plan: %s" % exc)


class FilterModule(object):
    """Lab filters."""

    def filters(self):
        return {"lab_plan": _lab_plan}
