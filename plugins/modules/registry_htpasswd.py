#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: registry_htpasswd
short_description: Manage the whole htpasswd file of a Docker registry (CNCF Distribution), bcrypt at a chosen cost
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Makes the htpasswd file at O(path) hold exactly O(users), one C(name:hash) line each, bcrypt being the only
    scheme Distribution accepts. The file is exclusive - entries of users not listed are removed.
  - Distribution checks the password of every authenticated request against this file, so the bcrypt cost is paid
    on every API call of a pull or push. O(bcrypt_cost) sets it for the entries this module writes.
  - An existing entry whose hash verifies the given password is kept as it is, whatever its cost. An entry is
    hashed again (at O(bcrypt_cost), with a random salt) only when its password changed, when it is not a bcrypt
    hash, or, with O(rehash_on_cost_change=true), when its cost differs from O(bcrypt_cost). So a new cost reaches
    existing files as passwords are rotated, not all hosts at once, unless asked for.
  - The file is read as Distribution 2.8 reads it (lines trimmed, blank lines and C(#) comments skipped, the last
    entry of a name counts). It is written again only when an entry is added, changed or removed, or when it holds
    a line Distribution cannot read or a name twice (a warning names the line); another order of the entries or
    comments alone change nothing.
  - The file is replaced atomically - a temp file in the same directory, with the owner, group and mode already
    set, renamed over it.
  - Distribution 2.8 reads the file when it starts - restart it (a handler) when the task reports a change.
options:
  path:
    description: The htpasswd file. Its directory must exist.
    type: path
    required: true
  users:
    description:
      - The accounts, each C(name) and C(password). Users not listed are removed from the file.
      - A name may not contain C(:), whitespace or a control character, nor start with C(#); a password may not be
        empty. The error names the key, such as C(users[1].name).
      - bcrypt uses the first 72 bytes of a password; a longer one gets a warning.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: User name.
        type: str
        required: true
      password:
        description: The password, in clear (from ansible-vault); only its bcrypt hash is written.
        type: str
        required: true
  bcrypt_cost:
    description:
      - bcrypt cost (log2 of the rounds) of the hashes this module writes, from 4 to 31. Each step up doubles the
        CPU time of every verification, so of every authenticated request to the registry.
      - V(10) is Go's C(bcrypt.DefaultCost); Distribution's documentation makes entries with C(htpasswd -Bbn),
        cost 5. For machine accounts with long random passwords a low cost loses nothing; a high cost only slows
        down guessing weak passwords from a stolen file.
    type: int
    default: 10
  rehash_on_cost_change:
    description:
      - Also hash an entry again when its password verifies but its cost (C($2b$NN$)) is not O(bcrypt_cost).
      - Off by default, so that a new cost does not change every host's file (and restart every registry) at once.
    type: bool
    default: false
  owner:
    description: Owner of the file (name or uid). Default - the file's own, or for a new file the user running the module.
    type: str
  group:
    description: Group of the file (name or gid). Default - the file's own, or for a new file the user's group.
    type: str
  mode:
    description:
      - Mode of the file, octal, such as C('0640') (quote it in YAML). No symbolic modes.
      - Default - the file's own, or V(0600) for a new file.
    type: raw
attributes:
  check_mode:
    support: full
    description: Passwords are verified against the file; nothing is hashed or written.
  diff_mode:
    support: full
    description: The user names before and after, and the file's owner, group and mode; never a hash or a password.
  platform:
    support: full
    platforms: posix
    description: Any POSIX host with passlib and a bcrypt backend; the file's directory must exist.
requirements:
  - On the host - passlib with a bcrypt backend (Debian C(python3-passlib) and C(python3-bcrypt); from PyPI
    C(passlib) and C(bcrypt<5)). The module fails naming them when they are missing.
notes:
  - The result and the diff hold user names only. Still run the task with C(no_log=true) - its arguments carry the
    passwords.
  - Changes of owner, group or mode alone are made in place (no new file).
seealso:
  - name: Distribution's htpasswd auth
    description: The file format and the native basic auth of the registry.
    link: https://distribution.github.io/distribution/about/configuration/#htpasswd
  - module: community.general.htpasswd
    description: One entry at a time, at passlib's default cost (bcrypt 12).
"""

EXAMPLES = r"""
- name: The registry's accounts, bcrypt cost 10, users not listed removed
  edgeops.fleet.registry_htpasswd:
    path: /etc/docker/registry/htpasswd
    users:
      - {name: publisher, password: "{{ vault_registry_publisher_password }}"}
      - {name: puller, password: "{{ vault_registry_puller_password }}"}
    bcrypt_cost: 10
    owner: root
    group: docker-registry
    mode: "0640"
  no_log: true
  notify: Restart docker-registry

- name: Bring every entry to cost 5 now, not only as passwords change
  edgeops.fleet.registry_htpasswd:
    path: /etc/docker/registry/htpasswd
    users: "{{ registry_users }}"
    bcrypt_cost: 5
    rehash_on_cost_change: true
  no_log: true
"""

RETURN = r"""
path:
  description: The htpasswd file.
  returned: always
  type: str
added:
  description: Users that had no entry and got one.
  returned: always
  type: list
  elements: str
  sample: [puller]
updated:
  description: Users whose entry was hashed again (password changed, not bcrypt, or cost with O(rehash_on_cost_change)).
  returned: always
  type: list
  elements: str
  sample: [publisher]
removed:
  description: Users not in O(users) whose entries were removed.
  returned: always
  type: list
  elements: str
  sample: [old-ci]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeops.fleet.plugins.module_utils import _htpasswd as htpasswd_utils


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            users=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                password=dict(type="str", required=True, no_log=True),
            )),
            bcrypt_cost=dict(type="int", default=10),
            rehash_on_cost_change=dict(type="bool", default=False),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = {"changed": False, "path": params["path"]}
    try:
        result = htpasswd_utils.manage(
            params["path"], params["users"], params["bcrypt_cost"], owner=params["owner"], group=params["group"],
            mode=params["mode"], rehash_on_cost_change=params["rehash_on_cost_change"],
            check_mode=module.check_mode, want_diff=module._diff)
    except htpasswd_utils.HtpasswdError as exc:
        module.fail_json(msg=str(exc), **result)
    except (IOError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (params["path"], exc), **result)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
