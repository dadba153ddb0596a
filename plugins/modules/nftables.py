#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nftables
short_description: Manage one nftables table atomically, with an optional commit-confirmed mode
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Manages exactly one table (O(family) + O(table)) from the text of its definition. Every other table of the
    ruleset (Docker's, libvirt's, a release's C(inet edgeops)) is left as it is; the module never runs
    C(flush ruleset).
  - The content is checked first. At the top level it may only hold C(define) and C(table <family> <table> { ... })
    blocks; C(flush ruleset), C(include) and any other table or command are refused naming the line.
  - It is then validated with C(nft -c -f) against the live ruleset, and loaded into an empty network namespace to
    get nft's own listing of it. The task is changed only when that listing differs from the live table's
    (C(nft -s list table); indentation, comments and the elements the kernel adds to dynamic sets do not count),
    so a re-run changes nothing.
  - A change is applied in one C(nft -f) transaction (create-if-absent, delete, define), so the table is either
    the old one or the new one, never a mix.
  - With O(confirm_timeout) above 0 the change is commit-confirmed (the idea of Junos' C(commit confirmed) and
    C(netplan try)). The module saves the table as it is and arms two transient systemd timers that do not
    depend on the SSH session, one applying the change 2 s later and one restoring the saved table
    O(confirm_timeout) s after that. The action plugin of the same name then drops the connection, logs in again over a
    NEW connection and confirms, which cancels the restore. If no new login gets through in time, the device
    restores the previous table by itself; the action plugin waits for that, checks that it can log in again,
    and fails with RV(reverted=true) and a message saying so.
  - While a commit-confirmed change is pending on the device (say an earlier run was interrupted before its
    confirm), the module fails naming it and the time it reverts, rather than report or change a table that may
    still revert; in check mode too, as the real run would.
  - Every option is checked before anything is written, in check mode as well (O(confirm_timeout), O(content)
    with O(state=absent)), so that check mode fails where the real run fails.
  - O(state=absent) removes the table (also commit-confirmed when O(confirm_timeout) is set).
options:
  table:
    description: Name of the table.
    type: str
    required: true
  family:
    description: Family of the table.
    type: str
    default: inet
    choices: [ip, ip6, inet, arp, bridge, netdev]
  content:
    description:
      - The table's definition, nft syntax, such as C(table inet edgeops_firewall { chain input { ... } }).
      - Required with O(state=present) unless O(src) is given; refused with O(state=absent). Mutually exclusive
        with O(src).
    type: str
  src:
    description:
      - A file on the controller holding the table's definition (looked up like C(copy)'s O(src), in the role's
        or playbook's C(files/)). The action plugin reads it and passes it as O(content).
    type: path
  state:
    description: Whether the table should exist with O(content), or not at all.
    type: str
    default: present
    choices: [present, absent]
  confirm_timeout:
    description:
      - Seconds the device waits, from the moment the change is applied, for the confirm over a new connection
        before it restores the previous table by itself. V(0) applies the change at once, without confirm.
      - At least 10 s when not 0. Keep it above the SSH connection timeout (C(timeout) in C(ansible.cfg)) plus
        the time a login takes.
    type: int
    default: 0
  recovery_timeout:
    description:
      - Used by the action plugin only. After a change was not confirmed, how many seconds past O(confirm_timeout)
        it keeps trying to log in again, to report whether the device restored its table. V(0) or more.
    type: int
    default: 60
  _phase:
    description: Internal, set by the action plugin (C(arm), then C(confirm) over a new connection). Do not set.
    type: str
    default: run
    choices: [run, arm, confirm]
  _change:
    description: Internal, set by the action plugin - the token of the change to confirm. Do not set.
    type: str
attributes:
  check_mode:
    support: full
    description: Validates the options and the content (C(nft -c)) and reports whether the table would change; nothing
      is changed. Fails where the real run fails (a pending change, a confirm timeout below 10 s).
  diff_mode:
    support: full
    description: The live table's listing before and the listing nft makes of the content after.
  action:
    support: full
    description: The action plugin reads O(src) and drives the commit-confirmed protocol over a new connection.
  async:
    support: none
    description: The commit-confirmed protocol needs several module runs and a reconnection.
  platform:
    support: full
    platforms: posix
    description: Linux with the nft program and C(unshare) (util-linux); systemd for O(confirm_timeout).
  idempotent:
    support: full
    description: Compares nft's listings, not the text given.
notes:
  - Run as root. The device needs C(nft) (Debian package C(nftables)), C(unshare) and, for O(confirm_timeout),
    C(systemd-run) and C(flock).
  - Rules that name an interface with C(iif)/C(oif) cannot be loaded into the empty network namespace used for
    the comparison; use C(iifname)/C(oifname).
  - The module does not make the table persistent across reboots; the M(edgeops.fleet.firewall) role writes it to
    a file a boot unit loads, once it is confirmed.
  - "A packet must pass every base chain of a hook: a default-deny policy in this table drops what it does not
    accept even if another table accepts it, and another table can still drop what this one accepts."
seealso:
  - name: community.general.iptables_state
    description: The commit-confirmed pattern this module follows, for iptables.
    link: https://docs.ansible.com/ansible/latest/collections/community/general/iptables_state_module.html
  - name: nft(8)
    description: The nft program.
    link: https://www.netfilter.org/projects/nftables/manpage.html
"""

EXAMPLES = r"""
- name: Our firewall table; the device restores the previous one unless a new SSH login confirms within 60 s
  edgeops.fleet.nftables:
    table: edgeops_firewall
    family: inet
    content: |
      table inet edgeops_firewall {
        chain input {
          type filter hook input priority filter; policy drop;
          ct state established,related accept
          iif "lo" accept
          ip saddr 10.10.0.0/24 tcp dport 22 accept
        }
      }
    confirm_timeout: 60

- name: The same from a file next to the playbook (files/edgeops_firewall.nft)
  edgeops.fleet.nftables:
    table: edgeops_firewall
    src: edgeops_firewall.nft

- name: Remove the table
  edgeops.fleet.nftables:
    table: edgeops_firewall
    state: absent
"""

RETURN = r"""
listing:
  description: The table's listing (C(nft -s list table)) after the task; empty when it is absent.
  returned: success
  type: str
confirmed:
  description: Whether a commit-confirmed change was confirmed over a new connection.
  returned: when a change was made with O(confirm_timeout)
  type: bool
reverted:
  description: Whether the device restored the previous table because no confirm came in time.
  returned: when a change was made with O(confirm_timeout)
  type: bool
revert_outcome:
  description: C(restored) (the saved table was loaded back) or C(deleted) (it did not load, the table was removed).
  returned: when RV(reverted) is true
  type: str
applied_at:
  description: Device time (seconds since the epoch) at which the change was applied.
  returned: when a change was made with O(confirm_timeout)
  type: float
reverted_at:
  description: Device time (seconds since the epoch) at which the device restored the previous table.
  returned: when RV(reverted) is true
  type: float
revert_at:
  description: Device time (seconds since the epoch) at which an unconfirmed change is restored.
  returned: when a change was made with O(confirm_timeout)
  type: float
fresh_connection:
  description: Whether the confirm ran over a new connection (false for connections that have none to drop).
  returned: when a change was made with O(confirm_timeout)
  type: bool
token:
  description: Identifier of a commit-confirmed change (names its systemd units, C(edgeops-nft-revert-<token>)).
  returned: when a change was made with O(confirm_timeout)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeops.fleet.plugins.module_utils import _nftables as nft_utils


def _run_with(module):
    def run(argv, data=None, timeout=60):
        del timeout  # run_command has no timeout; nft and systemd-run return promptly
        return module.run_command(argv, data=data, binary_data=True)
    return run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            table=dict(type="str", required=True),
            family=dict(type="str", default="inet", choices=list(nft_utils.FAMILIES)),
            content=dict(type="str"),
            src=dict(type="path"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            confirm_timeout=dict(type="int", default=0),
            recovery_timeout=dict(type="int", default=60),
            # Set by the action plugin only: arm (save + schedule), confirm (over a new connection).
            _phase=dict(type="str", default="run", choices=["run", "arm", "confirm"]),
            _change=dict(type="str", no_log=False),
        ),
        mutually_exclusive=[("content", "src")],
        supports_check_mode=True,
    )
    params = module.params
    family, name, state = params["family"], params["table"], params["state"]
    result = {"changed": False}
    try:
        table = nft_utils.Table(family, name, nft=module.get_bin_path("nft", required=True), run=_run_with(module))
        if params["_phase"] == "confirm":
            outcome = table.confirm(params["_change"])
            listing = table.current()
            result.update(changed=True, listing=listing or "", token=params["_change"])
            if outcome.get("reverted"):
                result.update(reverted=True, confirmed=False, revert_outcome=outcome["outcome"],
                              reverted_at=outcome["reverted_at"], applied_at=outcome["applied_at"])
            else:
                result.update(reverted=False, confirmed=True, applied_at=outcome["applied_at"],
                              revert_at=outcome["revert_at"])
            module.exit_json(**result)

        if params["src"] is not None:
            module.fail_json(msg="src is read on the controller by the action plugin; call the module as "
                                 "edgeops.fleet.nftables", **result)
        # Checked here, not only when the change is armed: an unchanged table or check mode would accept it.
        problem = nft_utils.timeout_problem(params["confirm_timeout"], zero_disables=True)
        if problem:
            module.fail_json(msg=problem, **result)
        if params["recovery_timeout"] < 0:
            module.fail_json(msg="recovery_timeout must be 0 or more seconds, got %d" % params["recovery_timeout"],
                             **result)
        if state == "absent" and params["content"] is not None:
            module.fail_json(msg="content is used only with state=present; state=absent removes the table", **result)
        if params["confirm_timeout"] and params["_phase"] != "arm" and not module.check_mode:
            module.fail_json(msg="confirm_timeout needs the collection's action plugin (call the module as "
                                 "edgeops.fleet.nftables)", **result)
        # A change armed earlier (by a run interrupted before its confirm, say) still reverts by itself: reporting
        # the live table as it is, or changing it, now would be undone by that revert (or persist an unconfirmed
        # ruleset). Only this change's own confirm phase (above) may go on.
        waiting = table.pending_message()
        if waiting:
            module.fail_json(msg=waiting, **result)
        content = None
        desired = None
        if state == "present":
            if params["content"] is None:
                module.fail_json(msg="state=present needs content or src", **result)
            content = nft_utils.check_content(params["content"], family, name)
            table.validate(content)
            desired = table.canonical(content)
        current = table.current()
        result["changed"] = nft_utils.normalise_listing(current) != nft_utils.normalise_listing(desired)
        if module._diff:
            result["diff"] = {
                "before": nft_utils.strip_dynamic_elements(current) if current else "",
                "after": desired or "",
                "before_header": "table %s %s (live)" % (family, name),
                "after_header": "table %s %s (%s)" % (family, name, "content" if state == "present" else "absent"),
            }
        if not result["changed"] or module.check_mode:
            result["listing"] = current or ""
            module.exit_json(**result)
        if params["_phase"] == "arm":
            record = table.arm(content, current, params["confirm_timeout"])
            if record.get("warning"):
                module.warn(record["warning"])
            result.update(pending=True, token=record["token"], now=record["now"], apply_at=record["apply_at"],
                          revert_at=record["revert_at"], listing=current or "")
            module.exit_json(**result)
        table.apply(content)
        after = table.current()
        result["listing"] = after or ""
        if nft_utils.normalise_listing(after) != nft_utils.normalise_listing(desired):
            module.warn("after the change nft lists table %s %s differently from what the content loads as in an "
                        "empty network namespace; the next run will report a change again" % (family, name))
    except nft_utils.NftError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
