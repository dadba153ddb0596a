#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: agent_package
short_description: Make a directory hold exactly the given Python modules (the device side of generations)
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Writes each module whose content, mode (0644) or owner (the user the module runs as) differs, atomically
    (a power loss leaves the old or the new file, never half of one), removes every other C(*.py) of the directory
    and the paths given in O(absent), and creates the directory when it is missing.
  - One call for the whole package, where a copy per file costs a module run per file on every converge. The
    role M(edgeops.fleet.agent) gives it the modules of the collection's generations package.
  - Leaves everything else in the directory alone (C(__pycache__) included).
options:
  path:
    description: The package directory.
    type: path
    required: true
  modules:
    description:
      - File name (for example C(cli.py); letters, digits and C(_), ending in C(.py)) to text of each module.
      - Any other name is refused before anything is read or written.
    type: dict
    required: true
  absent:
    description: Other files to remove when they exist (for example what an earlier version installed elsewhere).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reports the modules it would write and the files it would remove, read from the directory itself.
  diff_mode:
    support: full
    description: One entry per module written (old and new text) and per file removed.
  platform:
    support: full
    platforms: posix
    description: Any POSIX system with Python 3.
  idempotent:
    support: full
    description: A directory that already holds exactly the modules is not changed.
seealso:
  - module: edgeops.fleet.generation
"""

EXAMPLES = r"""
- name: Install the generations package
  edgeops.fleet.agent_package:
    path: /usr/local/lib/edgeops/edgeops_generations
    modules: "{{ dict(package_files | map('basename') | zip(query('ansible.builtin.file', *package_files, rstrip=false))) }}"
    absent: [/usr/local/lib/edgeops/edgeops_generations.py]
"""

RETURN = r"""
written:
  description: File names of the modules written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [cli.py, store.py]
removed:
  description: Paths removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeops.fleet.plugins.module_utils import _agent_package as package


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            modules=dict(type="dict", required=True),
            absent=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    path, modules = module.params["path"], module.params["modules"]
    try:
        changes = package.plan(path, modules, module.params["absent"])
        if not module.check_mode:
            package.apply(path, modules, changes)
    except (package.PackageError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (path, exc))
    changed = bool(changes["create_directory"] or changes["write"] or changes["remove"])
    result = dict(changed=changed, written=changes["write"], removed=changes["remove"])
    if module._diff and changed:
        result["diff"] = package.diff(path, modules, changes)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
