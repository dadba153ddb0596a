# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.plugin_utils._secrets import (
    SecretsError, fingerprints as _fingerprints, rotation_plan, stamp_release)


def _secrets_stamp(rendered, fingerprints):
    try:
        return stamp_release(rendered, fingerprints or {})
    except SecretsError as exc:
        raise AnsibleFilterError(str(exc))


def _secrets_fingerprints(stat_results, file_results=None, check_mode=False):
    try:
        return _fingerprints(stat_results, file_results or [], check_mode)
    except SecretsError as exc:
        raise AnsibleFilterError(str(exc))


def _secrets_rotation_plan(compose, names, current_stats, previous_stats):
    try:
        return rotation_plan(compose, names, current_stats, previous_stats)
    except SecretsError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """Secrets filters."""

    def filters(self):
        return {
            "secrets_stamp": _secrets_stamp,
            "secrets_fingerprints": _secrets_fingerprints,
            "secrets_rotation_plan": _secrets_rotation_plan,
        }
