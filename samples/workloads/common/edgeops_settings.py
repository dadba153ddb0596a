# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings from the environment, for every sample service and the health check.

Standard library `os` only: the health check imports this on every probe (a process each time), and what it
imports is what every probe of every container pays in CPU.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


class SettingError(ValueError):
    """An environment variable has a bad value; the message names it."""


def _env_number(name, default, low, high, kind, what):
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingError("%s must be %s, got %r" % (name, what, raw))
    if not low <= value <= high:
        raise SettingError("%s must be between %s and %s, got %s" % (name, low, high, value))
    return value


def env_int(name, default, low=0, high=10 ** 9):
    return _env_number(name, default, low, high, int, "an integer")


def env_float(name, default, low=0.0, high=1e9):
    return _env_number(name, default, low, high, float, "a number")
