# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nftables action plugin's report of a change the device reverted by itself.

The reconnect-and-confirm flow needs a device that locks the controller out: it runs for real in
tests/integration/test_firewall_lockout.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.edgeops.fleet.plugins.action.nftables import revert_message


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
