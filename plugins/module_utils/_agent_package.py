# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A directory that holds exactly the given Python modules: what edgeops.fleet.agent_package plans and applies.

Private to this collection. The plan is read from the directory alone, so check mode reports exactly what the run
writes and removes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.sysio import atomic_write

MODE = 0o644
# A module's file name: no directory part, nothing a path could be built from.
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.py$")


class PackageError(Exception):
    pass


def check_modules(modules):
    """Refuse a name that is not a plain module file name, before anything is read or written."""
    if not modules:
        raise PackageError("modules: expected at least one module, got none")
    bad = sorted(name for name in modules if not MODULE_NAME.match(str(name)))
    if bad:
        raise PackageError("modules: %s: expected file names like cli.py (letters, digits, '_', ending in .py)"
                           % ", ".join(repr(name) for name in bad))
    not_text = sorted(name for name in modules if not isinstance(modules[name], str))
    if not_text:
        raise PackageError("modules: %s: expected the module's text, got %s"
                           % (not_text[0], type(modules[not_text[0]]).__name__))


def _current(path, content, owner):
    """Whether ``path`` has exactly ``content`` with mode 0644 and ``owner`` (uid, gid)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    if (info.st_mode & 0o7777, (info.st_uid, info.st_gid)) != (MODE, owner):
        return False
    with open(path, "rb") as handle:
        return handle.read() == content.encode("utf-8")


def plan(directory, modules, absent=(), owner=None):
    """What to change so that ``directory`` holds exactly ``modules`` ({file name: text}).

    Returns {"create_directory": bool, "write": [names], "remove": [paths]}: the modules missing or different
    (content, mode 0644, owner), the other ``*.py`` of the directory, and the paths of ``absent`` that exist.
    """
    check_modules(modules)
    owner = tuple(owner) if owner is not None else (os.geteuid(), os.getegid())
    exists = os.path.isdir(directory)
    write = sorted(name for name in modules
                   if not exists or not _current(os.path.join(directory, name), modules[name], owner))
    stale = [] if not exists else sorted(
        path for path in glob.glob(os.path.join(directory, "*.py")) if os.path.basename(path) not in modules)
    gone = sorted(path for path in absent if os.path.lexists(path))
    return {"create_directory": not exists, "write": write, "remove": stale + gone}


def apply(directory, modules, changes, owner=None):
    """Carry out a plan: each module written atomically (never half a file, even at a power loss)."""
    if changes["create_directory"]:
        os.makedirs(directory, 0o755)
    for name in changes["write"]:
        atomic_write(os.path.join(directory, name), modules[name], mode=MODE, owner=owner)
    for path in changes["remove"]:
        os.unlink(path)


def diff(directory, modules, changes):
    """Ansible's diff of a plan: one entry per module written or file removed."""
    out = []
    for name in changes["write"]:
        path = os.path.join(directory, name)
        before = ""
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                before = handle.read().decode("utf-8", "replace")
        out.append({"before_header": path, "after_header": path, "before": before, "after": modules[name]})
    for path in changes["remove"]:
        out.append({"before_header": path, "after_header": path + " (removed)", "before": "present\n", "after": ""})
    return out
