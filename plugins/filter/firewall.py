# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.plugin_utils._firewall import FirewallConfigError, firewall_spec


def _firewall_spec(settings, ssh_common_args="", controller_address=""):
    try:
        return firewall_spec(settings, ssh_common_args=ssh_common_args, controller_address=controller_address)
    except (FirewallConfigError, TypeError) as exc:
        raise AnsibleFilterError("edgeops.fleet.firewall_spec: %s" % exc)


class FilterModule(object):
    """Firewall filters."""

    def filters(self):
        return {"firewall_spec": _firewall_spec}
