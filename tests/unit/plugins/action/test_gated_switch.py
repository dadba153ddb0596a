# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gated_switch action plugin refuses what the device would only meet after it switched, before the switch.

Its steps themselves are tested in tests/unit/plugins/plugin_utils/test_switch.py; here the module runs are
recorded, and none may happen.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.edgeops.fleet.plugins.action import gated_switch


@pytest.mark.parametrize("args, message", [
    # With no attempt the confirm was never tried after the switch: the device reverted by itself.
    ({"confirm_attempts": 0}, "confirm_attempts must be at least 1, got 0"),
    # Without probes the soak was never checked.
    ({"soak": -5}, "soak must be a whole number between 0 and 86400, got -5"),
    ({"confirm_timeout": 5}, "confirm_timeout must be an integer of at least 10 s, got 5"),
    ({"generation": 0}, "generation must be a generation id (an integer of at least 1), got 0"),
    ({"previous": -1}, "previous must be a generation id (an integer of at least 1), got -1"),
])
def test_bad_numbers_are_refused_before_the_device_is_touched(monkeypatch, args, message):
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    task = mock.MagicMock(args=dict({"generation": 2}, **args), check_mode=False)
    plugin = gated_switch.ActionModule(task, mock.MagicMock(transport="ssh"), mock.MagicMock(check_mode=False),
                                       loader=None, templar=None)
    calls = []
    plugin._execute_module = lambda **kwargs: calls.append(kwargs) or {}
    with pytest.raises(AnsibleActionFail) as err:
        plugin.run(task_vars={})
    assert str(err.value).startswith(message) and calls == []
