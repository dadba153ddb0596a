# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables action plugin: its report of a change the device reverted by itself, and its arm-then-confirm flow
run in-process against the real module and module_utils with a stand-in device (nothing on it runs).

The reconnect-and-confirm flow needs a device that locks the controller out: it runs for real in
tests/integration/test_firewall_lockout.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time
from unittest import mock

import pytest
from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.testing import patch_module_args
from ansible.plugins.action import ActionBase

from ansible_collections.edgeops.fleet.plugins.action import nftables as action
from ansible_collections.edgeops.fleet.plugins.action.nftables import revert_message
from ansible_collections.edgeops.fleet.plugins.module_utils import _nftables as n
from ansible_collections.edgeops.fleet.plugins.modules import nftables as module


def test_the_message_says_what_happened_and_when():
    msg = revert_message("inet", "edgeops_firewall", 20, 2, "Connection timed out during banner exchange",
                         {"revert_outcome": "restored", "applied_at": 1000.0, "reverted_at": 1020.4})
    assert msg.startswith("table inet edgeops_firewall: the change was not confirmed over a new connection within "
                          "confirm_timeout=20 s (2 login attempt(s); last error: Connection timed out")
    assert "restored the previous table by itself 20.4 s after it was applied (reverted: true)" in msg
    assert "blocks new SSH logins from this controller" in msg


def test_a_backup_that_did_not_load_is_reported_as_a_removed_table():
    msg = revert_message("inet", "t", 30, 1, None, {"revert_outcome": "deleted"})
    assert "removed the table (the previous one did not load back) by itself (reverted: true)" in msg
    assert "last error: none" in msg


# ---- arm, then confirm over a new connection ---------------------------------------------------

CONTENT = "table inet t { chain input { } }\n"
NEW_LISTING = "table inet t {\n\tchain input {\n\t}\n}\n"
OLD_LISTING = "table inet t {\n}\n"


class Device(object):
    """The module's view of the device: ``nft -s list`` shows ``live``, the content loads as NEW_LISTING, the
    apply timer is run by hand (``run_apply``); systemd-run, systemctl and ``nft -c`` succeed."""

    def __init__(self, tmp_path, monkeypatch, capsys):
        self.state = str(tmp_path / "state")
        self.live = OLD_LISTING
        self.capsys = capsys
        self.calls = []
        self.lose_confirm_answers = 0
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "nft").write_text("#!/bin/sh\nexit 0\n")  # found by get_bin_path, never run
        (bindir / "nft").chmod(0o755)
        monkeypatch.setenv("PATH", "%s:%s" % (bindir, os.environ["PATH"]))
        table_class = n.Table
        monkeypatch.setattr(n, "Table", lambda family, table, nft, run: table_class(
            family, table, nft=nft, run=self.run, state_dir=self.state))

    def run(self, argv, data=None, timeout=60):
        if argv[0] == "unshare":
            return 0, NEW_LISTING, ""
        if argv[1:3] == ["-s", "list"]:
            return 0, self.live, ""
        return 0, "", ""

    def run_apply(self, token):
        with open(n.change_paths(self.state, "inet", "t", token)["applied"], "w") as handle:
            handle.write("applied %f\n" % time.time())
        self.live = NEW_LISTING

    def execute_module(self, module_name, module_args, task_vars):
        """The module, run in-process; the answer of a confirm is lost ``lose_confirm_answers`` times."""
        assert module_name == "edgeops.fleet.nftables"
        self.calls.append(module_args.get("_phase", "run"))
        with patch_module_args(module_args), pytest.raises(SystemExit):
            module.main()
        result = json.loads(self.capsys.readouterr().out)
        if result.get("pending"):
            self.run_apply(result["token"])
        if module_args.get("_phase") == "confirm" and self.lose_confirm_answers:
            self.lose_confirm_answers -= 1
            raise AnsibleConnectionFailure("Failed to connect to the host via ssh: Connection reset by peer")
        return result


def run_task(device, monkeypatch):
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    task = mock.MagicMock(args={"table": "t", "family": "inet", "content": CONTENT, "confirm_timeout": 20})
    plugin = action.ActionModule(task, mock.MagicMock(transport="ssh"), mock.MagicMock(check_mode=False),
                                 loader=None, templar=None)
    plugin._execute_module = device.execute_module
    return plugin.run(task_vars={})


@pytest.fixture
def device(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(action.time, "sleep", lambda seconds: None)
    return Device(tmp_path, monkeypatch, capsys)


def test_a_confirm_whose_answer_was_lost_is_retried_and_reported_confirmed(device, monkeypatch):
    device.lose_confirm_answers = 1
    result = run_task(device, monkeypatch)
    assert device.calls == ["arm", "confirm", "confirm"]
    assert not result.get("failed") and result["changed"] and result["confirmed"] and not result["reverted"]
    assert result["confirm_attempts"] == 2 and result["listing"] == NEW_LISTING


def test_a_rerun_after_an_interrupted_confirm_fails_instead_of_reporting_ok(device, monkeypatch):
    def interrupt(seconds):
        raise KeyboardInterrupt()
    monkeypatch.setattr(action.time, "sleep", interrupt)  # Ctrl-C while waiting to confirm
    with pytest.raises(KeyboardInterrupt):
        run_task(device, monkeypatch)
    monkeypatch.setattr(action.time, "sleep", lambda seconds: None)
    device.calls = []
    # The live table is already the new one: without the pending check this run would report ok.
    result = run_task(device, monkeypatch)
    assert device.calls == ["arm"]
    assert result["failed"] and not result["changed"]
    assert "a commit-confirmed change" in result["msg"] and "is pending until" in result["msg"]


@pytest.mark.parametrize("key", ["confirm_timeout", "recovery_timeout"])
def test_a_timeout_that_is_no_number_is_refused_by_name_before_the_module_runs(device, monkeypatch, key):
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    args = {"table": "t", "family": "inet", "content": CONTENT, "confirm_timeout": 20}
    args[key] = "soon"
    plugin = action.ActionModule(mock.MagicMock(args=args), mock.MagicMock(transport="ssh"),
                                 mock.MagicMock(check_mode=False), loader=None, templar=None)
    plugin._execute_module = device.execute_module
    result = plugin.run(task_vars={})
    assert result["failed"] and result["msg"] == "%s must be a whole number of seconds, got 'soon'" % key
    assert device.calls == []
