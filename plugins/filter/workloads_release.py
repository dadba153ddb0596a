# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.module_utils._workloads import (
    DEFAULT_SECRETS_DIR, WorkloadError, render_release, secret_owners)


def _workloads_release(manifest, registry=None, secrets_dir=DEFAULT_SECRETS_DIR, source="release manifest"):
    try:
        release, secrets, images = render_release(manifest, registry=registry, secrets_dir=secrets_dir, source=source)
        owners = secret_owners(manifest)
    except WorkloadError as exc:
        raise AnsibleFilterError(str(exc))
    return {"release": release, "secrets": secrets, "secret_owners": owners, "images": images}


class FilterModule(object):
    """Workload filters."""

    def filters(self):
        return {"workloads_release": _workloads_release}
