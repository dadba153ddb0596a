# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The generation action plugin: a confirm it could never try is refused before the device is asked.

The confirm over a new connection runs for real in molecule/generations.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from unittest import mock

import pytest
from ansible.plugins.action import ActionBase

from ansible_collections.edgeops.fleet.plugins.action import generation


@pytest.mark.parametrize("attempts", [0, -1, "thrice"])
def test_confirm_attempts_below_one_are_refused_by_name(monkeypatch, attempts):
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    task = mock.MagicMock(args={"state": "confirmed", "generation": 2, "confirm_attempts": attempts})
    plugin = generation.ActionModule(task, mock.MagicMock(transport="ssh"), mock.MagicMock(check_mode=False),
                                     loader=None, templar=None)
    calls = []
    plugin._execute_module = lambda **kwargs: calls.append(kwargs) or {}
    result = plugin.run(task_vars={})
    assert result["failed"] and calls == []
    assert result["msg"] == "confirm_attempts must be an integer of at least 1, got %r" % (attempts,)
