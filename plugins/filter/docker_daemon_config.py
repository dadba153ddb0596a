# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.plugin_utils._docker_engine import DockerEngineConfigError, daemon_config


def _docker_daemon_config(settings):
    try:
        return daemon_config(**settings)
    except (DockerEngineConfigError, TypeError) as exc:
        raise AnsibleFilterError("edgeops.fleet.docker_daemon_config: %s" % exc)


class FilterModule(object):
    """Docker Engine filters."""

    def filters(self):
        return {"docker_daemon_config": _docker_daemon_config}
