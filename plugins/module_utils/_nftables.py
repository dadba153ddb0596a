# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One nftables table, replaced atomically, with an optional commit-confirmed mode.

The module ``edgeops.fleet.nftables`` and its action plugin are thin; everything they decide is here:

* ``check_content`` refuses anything but the definition of the one managed table (no ``flush ruleset``, no
  ``include``, no other table, no top-level commands);
* ``replace_script`` / ``absent_script`` (``_generations.nft``, shared with generations) build the one
  ``nft -f`` transaction that replaces (or removes) the table: create-if-absent, delete, define;
* ``normalise_listing`` makes ``nft -s list table`` output comparable (indentation, blank lines, comments and
  the elements the kernel adds to dynamic sets, such as per-source rate limits, do not count);
* ``Table`` runs ``nft`` on the device: the current listing, the canonical listing of the desired content
  (loaded into an empty network namespace, so nothing live changes, not even in check mode), validation with
  ``nft -c`` against the live ruleset, apply, and the confirm-or-revert protocol below.

Commit-confirmed (``confirm_timeout > 0``) is the mechanism of generations' dead-man (``_generations.confirm``:
one minimum timeout, transient systemd timers, one pending-change record), in files under ``STATE_DIR``
(tmpfs: a reboot forgets a pending change together with the ruleset it applied)::

    <family>-<table>.lock                     flock shared by the module and the two scripts below
    <family>-<table>.pending                  the pending-change record (token, unit, now, apply_at, revert_at)
    <family>-<table>.<token>.backup.nft       the table as it was (or its absence), as one nft transaction
    <family>-<table>.<token>.new.nft          the desired table, as one nft transaction
    <family>-<table>.<token>.apply.sh         run APPLY_DELAY s after arming by a transient systemd timer
    <family>-<table>.<token>.revert.sh        run confirm_timeout s after the apply by a transient systemd timer
    <family>-<table>.<token>.applied          "applied <epoch>" or "failed <epoch>" (+ .apply.err)
    <family>-<table>.<token>.reverted         "restored <epoch>" or "deleted <epoch>" after a revert
    <family>-<table>.<token>.confirmed        JSON: the confirm's answer, kept until the next arm, so that a
                                              confirm whose answer was lost is answered again when retried

The apply runs a moment after the module has returned, in a systemd unit, so that even a ruleset that drops
the established SSH session cannot keep the module's answer from the controller or leave the change half
done. The controller then opens a NEW connection and confirms; the revert script restores the backup unless
the confirm removed the pending file first (both under the lock, so exactly one of them wins). While a change
is pending, the module neither changes the table nor reports it as it is (``refuse_pending``): it may revert.

Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shlex
import time
import uuid

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.confirm import (
    arm_timer, disarm_timer, pending_message, pending_record, read_pending, timeout_problem, write_pending)
# FAMILIES and check_content are read here by the nftables module (and the firewall role's tests).
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.nft import (  # pylint: disable=unused-import
    FAMILIES, NftError, absent_script, check_content, check_name, replace_script, with_script)
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.sysio import (
    atomic_write, lock_file, read_text, run)

STATE_DIR = "/run/edgeops-nftables"
# Seconds between arming and applying: the module's answer reaches the controller first.
APPLY_DELAY = 2
REVERT_UNIT = "edgeops-nft-revert-%s"
APPLY_UNIT = "edgeops-nft-apply-%s"

_TOKEN_RE = re.compile(r"^[0-9a-f]{12}$")


def strip_dynamic_elements(listing):
    """The listing without the elements of dynamic sets (the kernel adds those: meters, rate limit per source).

    Everything else, including indentation, is kept, so the result is still a loadable table.
    """
    lines = listing.splitlines()
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^\s*(set|map)\s+\S+\s*\{\s*$", line):
            block = [line]
            depth = line.count("{") - line.count("}")
            i += 1
            while i < len(lines) and depth > 0:
                block.append(lines[i])
                depth += lines[i].count("{") - lines[i].count("}")
                i += 1
            if any(re.match(r"^\s*flags\s+.*\bdynamic\b", b) for b in block):
                block = _drop_elements(block)
            out.extend(block)
            continue
        out.append(line)
        i += 1
    return "\n".join(out) + ("\n" if listing.endswith("\n") else "")


def _drop_elements(block):
    out = []
    skipping = 0
    for line in block:
        if skipping:
            skipping += line.count("{") - line.count("}")
            continue
        if re.match(r"^\s*elements\s*=\s*\{", line):
            skipping = line.count("{") - line.count("}")
            continue
        out.append(line)
    return out


def normalise_listing(listing):
    """Comparable form of an ``nft -s list table`` output: dynamic set elements, indentation, blank lines and
    comment lines do not count. ``None`` (no table) stays ``None``."""
    if listing is None:
        return None
    lines = [line.strip() for line in strip_dynamic_elements(listing).splitlines()]
    return "\n".join(line for line in lines if line and not line.startswith("#")) + "\n"


def _timer_shell(paths, family, table, comment, body):
    """A timer's script: it runs under the table's lock, and only while the change is still pending."""
    q = dict((k, shlex.quote(v)) for k, v in paths.items())
    return ("#!/bin/sh\n# edgeops.fleet.nftables: %s\nexec 9>%%(lock)s\nflock 9\n[ -e %%(pending)s ] || exit 0\n%s"
            % (comment, body)) % dict(q, family=family, table=table)


def apply_shell(paths, family, table):
    """The script the apply timer runs: load the new table unless the change is gone (confirmed or reverted)."""
    return _timer_shell(paths, family, table, "apply the new table %(family)s %(table)s (commit-confirmed)", (
        "if nft -f %(new)s 2>%(apply_err)s; then\n"
        "  echo \"applied $(date +%%s.%%N)\" >%(applied)s\n"
        "else\n"
        "  echo \"failed $(date +%%s.%%N)\" >%(applied)s\n"
        "fi\n"))


def revert_shell(paths, family, table):
    """The script the revert timer runs: restore the backup unless the change was confirmed.

    If the backup does not load, the table is deleted instead: that reopens whatever it blocked, and no other
    table is touched.
    """
    return _timer_shell(paths, family, table, "no confirm came in time; restore table %(family)s %(table)s as it was", (
        "if nft -f %(backup)s; then\n"
        "  outcome=restored\n"
        "else\n"
        "  nft delete table %(family)s %(table)s\n"
        "  outcome=deleted\n"
        "fi\n"
        "echo \"$outcome $(date +%%s.%%N)\" >%(reverted)s\n"
        "rm -f %(pending)s %(backup)s %(new)s\n"
        "logger -t edgeops-nftables \"table %(family)s %(table)s: change not confirmed in time, $outcome the "
        "previous table\" || true\n"))


def change_paths(state_dir, family, table, token):
    key = os.path.join(state_dir, "%s-%s" % (family, table))
    paths = {"lock": key + ".lock", "pending": key + ".pending"}
    for name, suffix in (("backup", "backup.nft"), ("new", "new.nft"), ("apply_sh", "apply.sh"),
                         ("revert_sh", "revert.sh"), ("applied", "applied"), ("apply_err", "apply.err"),
                         ("reverted", "reverted"), ("confirmed", "confirmed")):
        paths[name] = "%s.%s.%s" % (key, token, suffix)
    return paths


def parse_marker(text):
    """``"<word> <epoch>"`` -> (word, epoch float) or (None, None)."""
    parts = (text or "").split()
    if len(parts) != 2:
        return None, None
    try:
        return parts[0], float(parts[1])
    except ValueError:
        return None, None


class Table(object):
    """One table on this device, driven through the nft program."""

    def __init__(self, family, table, nft="nft", run=run, state_dir=STATE_DIR):
        check_name(table, family)
        self.family, self.table, self.nft = family, table, nft
        self.run = run
        self.state_dir = state_dir

    # ----- reading

    def current(self):
        """``nft -s list table`` output, or None when the table does not exist."""
        rc, out, err = self.run([self.nft, "-s", "list", "table", self.family, self.table], timeout=60)
        if rc == 0:
            return out
        if "No such file or directory" in err or "does not exist" in err:
            return None
        raise NftError("nft list table %s %s failed: %s" % (self.family, self.table, err.strip()))

    def validate(self, content):
        """``nft -c`` of the replacing transaction against the live ruleset (changes nothing)."""
        script = replace_script(self.family, self.table, content)
        rc, _out, err = with_script(script, lambda p: self.run([self.nft, "-c", "-f", p], timeout=60))
        if rc != 0:
            raise NftError("content does not validate (nft -c): %s" % err.strip())

    def canonical(self, content):
        """What ``nft -s list table`` will show once ``content`` is loaded, from an empty network namespace."""
        script = replace_script(self.family, self.table, content)

        def load_and_list(path):
            return self.run(["unshare", "--net", "--", "sh", "-c", 'nft -f "$1" && nft -s list table "$2" "$3"',
                             "sh", path, self.family, self.table], timeout=60)
        rc, out, err = with_script(script, load_and_list)
        if rc != 0:
            raise NftError("content validates against this device's ruleset but does not load into an empty network "
                           "namespace, where it is compared with the live table (rules such as 'iif'/'oif' that "
                           "name an interface need it to exist: use 'iifname'/'oifname'): %s" % err.strip())
        return out

    # ----- changing without confirm

    def apply(self, content):
        """Replace (content) or remove (None) the table in one transaction, under the lock of the commit-confirmed
        scripts; refused while a commit-confirmed change is pending."""
        script = absent_script(self.family, self.table) if content is None else \
            replace_script(self.family, self.table, content)
        lock = self._lock()
        try:
            self.refuse_pending()
            rc, _out, err = with_script(script, lambda p: self.run([self.nft, "-f", p], timeout=60))
        finally:
            os.close(lock)
        if rc != 0:
            raise NftError("nft -f failed: %s" % err.strip())

    # ----- commit-confirmed

    def _lock(self):
        """The lock of the table (shared with the apply and revert scripts); close it to unlock."""
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o700)
        return lock_file(os.path.join(self.state_dir, "%s-%s.lock" % (self.family, self.table)))

    def pending(self):
        return read_pending(os.path.join(self.state_dir, "%s-%s.pending" % (self.family, self.table)))

    def pending_message(self):
        """Why the table must not be changed or reported as it is now (a change still waits for its confirm and
        may revert), or None."""
        waiting = self.pending()
        return pending_message("table %s %s" % (self.family, self.table), waiting) if waiting else None

    def refuse_pending(self):
        message = self.pending_message()
        if message:
            raise NftError(message)

    def _forget_confirmed(self):
        """Remove the answers of changes confirmed earlier (kept for a retried confirm; see ``_outcome``)."""
        marker = re.compile(re.escape("%s-%s." % (self.family, self.table)) + r"[0-9a-f]{12}\.confirmed$")
        for name in os.listdir(self.state_dir):
            if marker.match(name):
                try:
                    os.unlink(os.path.join(self.state_dir, name))
                except OSError:
                    pass

    def arm(self, content, current, timeout, now=None):
        """Save the table as it is, schedule the apply of ``content`` (None: absent) in APPLY_DELAY s and the
        revert ``timeout`` s after that. Returns the change's record (token, apply_at, revert_at, now)."""
        problem = timeout_problem(timeout, zero_disables=True)
        if problem:
            raise NftError(problem)
        lock = self._lock()
        try:
            self.refuse_pending()
            self._forget_confirmed()
            token = uuid.uuid4().hex[:12]
            paths = change_paths(self.state_dir, self.family, self.table, token)
            backup = absent_script(self.family, self.table)
            backup_note = None
            if current is not None:
                backup = replace_script(self.family, self.table, strip_dynamic_elements(current))
                rc, _out, err = with_script(backup, lambda p: self.run([self.nft, "-c", "-f", p], timeout=60))
                if rc != 0:
                    # nft cannot always read back what it lists; removing the table is the safe way back.
                    backup = absent_script(self.family, self.table)
                    backup_note = ("the current table does not load back (nft -c: %s); an unconfirmed change "
                                   "removes the table instead of restoring it" % err.strip())
            new = absent_script(self.family, self.table) if content is None else \
                replace_script(self.family, self.table, content)
            atomic_write(paths["backup"], backup, 0o600)
            atomic_write(paths["new"], new, 0o600)
            atomic_write(paths["apply_sh"], apply_shell(paths, self.family, self.table), 0o700)
            atomic_write(paths["revert_sh"], revert_shell(paths, self.family, self.table), 0o700)
            record = pending_record(token, REVERT_UNIT % token, timeout, now, APPLY_DELAY)
            write_pending(paths["pending"], record)
            try:
                self._timer(REVERT_UNIT % token, APPLY_DELAY + timeout, paths["revert_sh"],
                            "edgeops nftables: restore table %s %s unless confirmed" % (self.family, self.table))
                self._timer(APPLY_UNIT % token, APPLY_DELAY, paths["apply_sh"],
                            "edgeops nftables: apply table %s %s (commit-confirmed)" % (self.family, self.table))
            except NftError:
                self._cancel(token, paths)
                raise
            if backup_note:
                record["warning"] = backup_note
            return record
        finally:
            os.close(lock)

    def _timer(self, unit, delay, script, description):
        error = arm_timer(self.run, unit, delay, description, ["/bin/sh", script])
        if error:
            raise NftError("could not arm %s (systemd-run; commit-confirmed needs systemd on the device): %s"
                           % (unit, error))

    def _cancel(self, token, paths, keep=()):
        for unit in (REVERT_UNIT % token, APPLY_UNIT % token):
            disarm_timer(self.run, unit)
        for name, path in paths.items():
            if name not in ("lock",) + tuple(keep):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def confirm(self, token, wait_apply=15.0):
        """Confirm the change ``token`` (over the controller's NEW connection).

        Returns a dict: ``confirmed`` True, or ``reverted`` True with ``outcome`` and ``reverted_at``, or raises
        NftError when the apply itself failed (the table is then unchanged and the change cancelled).
        """
        if not _TOKEN_RE.match(token or ""):
            raise NftError("malformed confirm token %r" % (token,))
        paths = change_paths(self.state_dir, self.family, self.table, token)
        deadline = time.monotonic() + wait_apply
        while True:
            lock = self._lock()
            try:
                waiting = self.pending()
                if not waiting or waiting.get("token") != token:
                    return self._outcome(token, paths)
                applied, applied_at = parse_marker(read_text(paths["applied"]))
                if applied is not None or time.monotonic() >= deadline:
                    return self._settle(token, paths, waiting, applied, applied_at, wait_apply)
            finally:
                os.close(lock)
            time.sleep(0.5)

    def _settle(self, token, paths, waiting, applied, applied_at, wait_apply):
        """Under the lock, with the change still pending: confirm it, or cancel it when its apply failed."""
        error = (read_text(paths["apply_err"]) or "").strip()
        if applied == "applied":
            answer = {"confirmed": True, "applied_at": applied_at, "revert_at": waiting["revert_at"]}
            # Written before the pending file goes: a retry whose first answer was lost gets the same answer.
            atomic_write(paths["confirmed"], json.dumps(answer), 0o600)
            self._cancel(token, paths, keep=("confirmed",))
            return answer
        self._cancel(token, paths)
        if applied is None:
            raise NftError("the scheduled apply of table %s %s did not run within %d s of its time (systemd timer "
                           "%s); nothing changed" % (self.family, self.table, int(wait_apply), APPLY_UNIT % token))
        raise NftError("nft -f failed when the change was applied (the table is unchanged): %s" % error)

    def _outcome(self, token, paths):
        outcome, reverted_at = parse_marker(read_text(paths["reverted"]))
        applied, applied_at = parse_marker(read_text(paths["applied"]))
        if outcome is None:
            answer = read_text(paths["confirmed"])
            if answer:
                return json.loads(answer)  # confirmed by an earlier call whose answer did not reach the controller
            raise NftError("no pending change of table %s %s with token %s (confirmed earlier, or the device "
                           "rebooted)" % (self.family, self.table, token))
        self._cancel(token, paths)
        return {"reverted": True, "outcome": outcome, "reverted_at": reverted_at,
                "applied": applied, "applied_at": applied_at}
