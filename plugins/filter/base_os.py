# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.plugin_utils._base_os import (
    BaseOsError, parse_sysctl_probe, passthrough_plan, sysctl_plan, sysctl_settings, users_plan)


def _wrap(name, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except BaseOsError as exc:
        raise AnsibleFilterError("edgeops.fleet.%s: %s" % (name, exc))


def _sysctl_settings(settings, extra=None, ip_forward=True):
    return _wrap("sysctl_settings", sysctl_settings, settings, extra=extra, ip_forward=ip_forward)


def _sysctl_plan(settings, mode="auto", in_container=False, probe=None):
    return _wrap("sysctl_plan", sysctl_plan, settings, mode=mode, in_container=bool(in_container),
                 states=parse_sysctl_probe(probe or []))


def _users_plan(users, site=None, device=None, login_user=None):
    return _wrap("users_plan", users_plan, users, site=site, device=device, login_user=login_user)


def _passthrough_plan(pci_ids, processor=None, kernel_args_extra=None, softdep_drivers=None):
    return _wrap("passthrough_plan", passthrough_plan, pci_ids, processor=processor,
                 kernel_args_extra=kernel_args_extra, softdep_drivers=softdep_drivers)


class FilterModule(object):
    """base_os filters."""

    def filters(self):
        return {
            "sysctl_settings": _sysctl_settings,
            "sysctl_plan": _sysctl_plan,
            "users_plan": _users_plan,
            "passthrough_plan": _passthrough_plan,
        }
