# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running kernel parameters, read and set through /proc/sys: what edgeops.fleet.sysctl_apply plans and applies.

Private to this collection. Values are compared as sysctl(8) prints them: whitespace-separated words, so
"32768 60999" equals the kernel's "32768\t60999".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

PROC_SYS = "/proc/sys"
# A key as sysctl(8) takes it: dotted words; a "/" stands for a dot inside one word (eth0/100 for eth0.100).
KEY = re.compile(r"^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)*$")


class SysctlError(Exception):
    pass


def proc_path(key, root=PROC_SYS):
    """/proc/sys path of a key: dots become slashes and slashes dots (as `tr ./ /.` would)."""
    return os.path.join(root, key.translate(str.maketrans("./", "/.")))


def normalise(value):
    return " ".join(str(value).split())


def check_settings(settings):
    """Refuse a malformed key or an empty value before anything is read."""
    for key, value in settings.items():
        if not KEY.match(str(key)):
            raise SysctlError("settings: %r is not a sysctl key (dotted names like net.ipv4.tcp_syncookies)" % key)
        if isinstance(value, (dict, list)) or normalise(value) == "":
            raise SysctlError("settings.%s: expected a value such as 1 or '32768 60999', got %r" % (key, value))


def read(key, root=PROC_SYS):
    try:
        with open(proc_path(key, root)) as handle:
            return normalise(handle.read())
    except FileNotFoundError:
        raise SysctlError("%s: no such kernel parameter on this device (%s)" % (key, proc_path(key, root)))


def plan(settings, root=PROC_SYS):
    """{key: (running value, wanted value)} of the keys whose running value differs, in key order."""
    check_settings(settings)
    changes = {}
    for key in sorted(settings):
        old, new = read(key, root), normalise(settings[key])
        if old != new:
            changes[key] = (old, new)
    return changes


def apply(changes, root=PROC_SYS):
    """Write each changed key, then read it back: a value the kernel refused or rewrote is an error."""
    for key, (_old, new) in changes.items():
        try:
            with open(proc_path(key, root), "w") as handle:
                handle.write(new + "\n")
        except OSError as exc:
            raise SysctlError("%s: the kernel refused %r: %s" % (key, new, exc.strerror or exc))
        got = read(key, root)
        if got != new:
            raise SysctlError("%s: set to %r, the kernel kept %r" % (key, new, got))


def diff(changes):
    return {
        "before": "".join("%s = %s\n" % (key, old) for key, (old, _new) in changes.items()),
        "after": "".join("%s = %s\n" % (key, new) for key, (_old, new) in changes.items()),
    }
