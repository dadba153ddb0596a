# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values a filter receives from templating, turned back into plain Python data (controller side)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def plain(value):
    """Templated data back to plain dict/list/str (tuples become lists, keys strings)."""
    if isinstance(value, dict):
        return dict((str(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
