#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: secrets_deliver
short_description: Put workload secrets on a device in one step - tmpfs files, encrypted copies, restore at boot
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - The device side of the C(edgeops.fleet.secrets) role's C(deliver) entry point (the workloads role calls it at
    every staging of a release). One module run per device instead of a task per step, each an SSH round trip.
  - Writes each secret of O(owners) to O(secrets_dir)/<name> (tmpfs), mode 0400, owned by the uid of the workloads that
    read it, group root; replaced atomically (a temp file renamed over it), so a running container keeps the file it
    mounted until it is recreated.
  - Keeps an encrypted copy at rest, O(credentials_dir)/<name>.cred (C(systemd-creds encrypt), the device's host
    key), made again when the value, its owner or its mode changed or the copy is missing, and the owner in
    <name>.owner; creates O(credentials_dir)/previous for rotations.
  - Installs C(/usr/local/sbin/edgeops-secrets-restore) and C(edgeops-secrets.service), which restores every secret
    at boot before Docker and the generations' boot recovery start containers, and enables it.
  - Returns RV(renewed) - which secrets were written or encrypted again. No value is ever logged, returned or put on
    a command line.
  - Ansible masks every occurrence of a C(no_log) value inside the strings of a result. So that a short value occurring
    in a name or a path does not show there as stars (telling where it occurs), such a string is replaced whole by a
    note that it was withheld, error messages included. RV(renewed) is never affected (names as keys, booleans as
    values). For the same reason the module returns no digest - the C(deliver) entry point of the
    C(edgeops.fleet.secrets) role reads the fingerprints of the encrypted copies with C(ansible.builtin.stat) and the
    C(edgeops.fleet.secrets_fingerprints) filter, given RV(renewed).
options:
  values:
    description: Secret name to value (from ansible-vault or the C(secrets_resolve) action), a non-empty string or a
      number (a mapping, a list or a boolean is refused, naming the secret). Only the names in O(owners) are delivered.
    type: dict
    required: true
  owners:
    description: Secret name to the uid of the workloads that read it. Names are letters, digits, C(_), C(.) and C(-).
      A name without a value in O(values) is refused before anything is written.
    type: dict
    required: true
  secrets_dir:
    description: Directory on tmpfs with one file per secret (mode 0711, root).
    type: path
    default: /run/edgeops/secrets
  credentials_dir:
    description: Encrypted copies, owners and C(previous/) (mode 0700, root).
    type: path
    default: /etc/edgeops/credentials
attributes:
  check_mode:
    support: full
    description: Nothing is written or encrypted; RV(renewed) says which secrets would be.
  diff_mode:
    support: none
    description: Secret files are never shown; RV(changes) names what changed.
  idempotent:
    support: full
    description: A second run with the same values changes nothing (the encrypted copies are kept).
notes:
  - Needs root, systemd and C(systemd-creds) (systemd 250 or later) on the device.
"""

EXAMPLES = r"""
- name: Deliver the predictor's API token
  edgeops.fleet.secrets_deliver:
    values: "{{ workloads_secrets }}"
    owners: {api_token: 10001}
  register: delivered

- name: Which secrets were written or encrypted again
  ansible.builtin.debug:
    var: delivered.renewed
"""

RETURN = r"""
renewed:
  description: Secret name to whether its file was written or its encrypted copy made again (in check mode - would
    be). Never masked by Ansible.
  returned: always
  type: dict
  sample: {api_token: false}
changes:
  description: What changed, by path or secret name (never a value).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeops.fleet.plugins.module_utils._secrets_device import DeliverError, deliver, withhold


def main():
    module = AnsibleModule(
        argument_spec=dict(
            values=dict(type="dict", required=True, no_log=True),
            owners=dict(type="dict", required=True),
            secrets_dir=dict(type="path", default="/run/edgeops/secrets"),
            credentials_dir=dict(type="path", default="/etc/edgeops/credentials"),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        return module.run_command(argv)

    values = list(module.params["values"].values())
    try:
        result = deliver(module.params["values"], module.params["owners"], module.params["secrets_dir"],
                         module.params["credentials_dir"], run, module.check_mode)
    except (DeliverError, OSError) as exc:
        module.fail_json(msg=withhold("secrets_deliver: %s" % exc, values))
    module.exit_json(**withhold(result, values))


if __name__ == "__main__":
    main()
