#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: sysctl_apply
short_description: Set many running kernel parameters in one call
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Reads each key from C(/proc/sys), writes those whose running value differs and reads them back (a value the
    kernel refuses or rewrites is an error naming the key).
  - Changes only the running kernel; the file read at boot is written separately (the role
    M(edgeops.fleet.base_os) templates it). M(ansible.posix.sysctl) does both for one key per call, which costs a
    module run per key on every converge.
  - Values compare as C(sysctl) prints them (whitespace-separated words).
options:
  settings:
    description: Key (dotted, a C(/) standing for a dot inside a name) to value.
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: Reports the keys it would set, read from the running kernel.
  diff_mode:
    support: full
    description: The changed keys' running and new values.
  platform:
    support: full
    platforms: posix
    description: Linux.
  idempotent:
    support: full
    description: Keys that already have their value are not written.
seealso:
  - module: ansible.posix.sysctl
"""

EXAMPLES = r"""
- name: Apply the hardening keys now
  edgeops.fleet.sysctl_apply:
    settings:
      net.ipv4.tcp_syncookies: 1
      net.ipv4.conf.all.accept_redirects: 0
      net.ipv4.ip_local_port_range: "32768 60999"
"""

RETURN = r"""
set:
  description: Keys set (or that would be, in check mode), each with its running value before and its new value.
  returned: always
  type: dict
  sample: {net.ipv4.tcp_syncookies: {before: "0", after: "1"}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeops.fleet.plugins.module_utils import _sysctl as sysctl


def main():
    module = AnsibleModule(argument_spec=dict(settings=dict(type="dict", required=True)), supports_check_mode=True)
    try:
        changes = sysctl.plan(module.params["settings"])
        if not module.check_mode:
            sysctl.apply(changes)
    except sysctl.SysctlError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=bool(changes), set=dict((k, dict(before=o, after=n)) for k, (o, n) in changes.items()))
    if module._diff and changes:
        result["diff"] = sysctl.diff(changes)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
