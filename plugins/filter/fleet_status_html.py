# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/fleet_status.yml: the fleet's status from what each device registered, and its HTML page."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.module_utils import _pages
from ansible_collections.edgeops.fleet.plugins.plugin_utils._templated import plain as _plain


def fleet_status_data(names, hostvars, gens="__fleet_status_gens", health="__fleet_status_health", targets="",
                      generated=None):
    """The fleet status document from what each device registered (``gens``: generation_info's result, ``health``:
    ``edgeops-gen health``'s), read once on the controller. A device without a result is reported unreachable."""
    devices = []
    for name in names or []:
        host = hostvars[name] if name in hostvars else {}
        devices.append(_pages.fleet_status_device(name, host.get("edgeops_site") or "default", _plain(host.get(gens)),
                                                  _plain(host.get(health))))
    when = generated or datetime.datetime.now(datetime.timezone.utc).strftime(_pages.TIME_FORMAT)
    return _pages.fleet_status_data(devices, targets=str(targets or ""), generated=when)


def fleet_status_html(data):
    """The fleet status page (a self-contained HTML document) from fleet_status_data's document or its JSON."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise AnsibleFilterError("fleet_status_html: the input is not JSON: %s" % exc)
    try:
        return _pages.fleet_status_html(_plain(data))
    except _pages.PageError as exc:
        raise AnsibleFilterError("fleet_status_html: %s" % exc)


class FilterModule(object):
    """Fleet status filters."""

    def filters(self):
        return {"fleet_status_data": fleet_status_data, "fleet_status_html": fleet_status_html}
