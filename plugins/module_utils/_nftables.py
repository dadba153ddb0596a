# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One nftables table, replaced atomically, with an optional commit-confirmed mode.

The module ``edgeops.fleet.nftables`` and its action plugin are thin; everything they decide is here:

* ``check_content`` refuses anything but the definition of the one managed table (no ``flush ruleset``, no
  ``include``, no other table, no top-level commands);
* ``replace_script`` / ``absent_script`` build the one ``nft -f`` transaction that replaces (or removes) the
  table: create-if-absent, delete, define, as ``_generations.nft_replace_script`` does;
* ``normalise_listing`` makes ``nft -s list table`` output comparable (indentation, blank lines, comments and
  the elements the kernel adds to dynamic sets, such as per-source rate limits, do not count);
* ``Table`` runs ``nft`` on the device: the current listing, the canonical listing of the desired content
  (loaded into an empty network namespace, so nothing live changes, not even in check mode), validation with
  ``nft -c`` against the live ruleset, apply, and the confirm-or-revert protocol below.

Commit-confirmed (``confirm_timeout > 0``), in files under ``STATE_DIR`` (tmpfs: a reboot forgets a pending
change together with the ruleset it applied)::

    <family>-<table>.lock                     flock shared by the module and the two scripts below
    <family>-<table>.pending                  JSON: token, apply_at, revert_at (the change waits for a confirm)
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

import fcntl
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
import uuid

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
STATE_DIR = "/run/edgeops-nftables"
# Seconds between arming and applying: the module's answer reaches the controller first.
APPLY_DELAY = 2
# The smallest confirm timeout: the apply delay plus a login over a new connection must fit in it.
MIN_CONFIRM_TIMEOUT = 10
REVERT_UNIT = "edgeops-nft-revert-%s"
APPLY_UNIT = "edgeops-nft-apply-%s"

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
_TOKEN_RE = re.compile(r"^[0-9a-f]{12}$")
_DEFINE_RE = re.compile(r"^define\s+[A-Za-z_][A-Za-z0-9_]*\s*=", re.S)
_TABLE_RE = re.compile(r"^table\s+(\S+)\s+(\S+?)\s*\{", re.S)
_INCLUDE_RE = re.compile(r"(^|[\s;{])include(\s|\")")


class NftError(Exception):
    """A refusal or failure with a message for the user."""


def check_name(table, family):
    """Refuse a table name or family that could not be put on an nft command line as is."""
    if family not in FAMILIES:
        raise NftError("family must be one of %s, got %r" % (", ".join(FAMILIES), family))
    if not isinstance(table, str) or not _NAME_RE.match(table):
        raise NftError("table must be a name of letters, digits, '_', '.' or '-' (1-63 characters, not starting "
                       "with a digit), got %r" % (table,))


def _strip_comments(text):
    """The text without ``#`` comments (outside double quotes), newlines kept."""
    out = []
    in_string = False
    in_comment = False
    for char in text:
        if in_comment:
            if char == "\n":
                in_comment = False
                out.append(char)
            continue
        if char == '"':
            in_string = not in_string
        elif char == "#" and not in_string:
            in_comment = True
            continue
        elif char == "\n" and in_string:
            raise NftError("content: a string (\"...\") runs past the end of a line")
        out.append(char)
    if in_string:
        raise NftError("content: a string (\"...\") is not closed")
    return "".join(out)


def top_level_statements(text):
    """Split nft text into its top-level statements (newline or ``;`` separated, braces kept together)."""
    text = _strip_comments(text)
    statements = []
    current = []
    depth = 0
    in_string = False
    line = 1
    start_line = 1
    for char in text:
        if char == '"':
            in_string = not in_string
        elif not in_string:
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth < 0:
                    raise NftError("content: unbalanced '}' on line %d" % line)
            elif char in "\n;" and depth == 0:
                stmt = "".join(current).strip()
                if stmt:
                    statements.append((start_line, stmt))
                current = []
                if char == "\n":
                    line += 1
                start_line = line
                continue
        if char == "\n":
            line += 1
        if not current or not "".join(current).strip():
            start_line = line
        current.append(char)
    if depth != 0:
        raise NftError("content: %d '{' not closed at the end" % depth)
    stmt = "".join(current).strip()
    if stmt:
        statements.append((start_line, stmt))
    return statements


def check_content(text, family, table):
    """Refuse content that would do anything but define ``table <family> <table>``.

    Allowed at the top level: ``define`` and ``table <family> <table> { ... }`` blocks (at least one).
    Refused anywhere: ``include``. Returns the text unchanged.
    """
    check_name(table, family)
    if not isinstance(text, str) or not text.strip():
        raise NftError("content is empty: it must define table %s %s { ... }" % (family, table))
    stripped = _strip_comments(text)
    if re.search(r"(^|[\s;])flush\s+ruleset", stripped):
        raise NftError("content must not contain 'flush ruleset': it may only define table %s %s" % (family, table))
    if _INCLUDE_RE.search(stripped):
        raise NftError("content must not contain 'include': give the whole table %s %s" % (family, table))
    tables = 0
    for line, stmt in top_level_statements(text):
        if _DEFINE_RE.match(stmt):
            continue
        match = _TABLE_RE.match(stmt)
        if match and stmt.endswith("}"):
            found = (match.group(1), match.group(2))
            if found != (family, table):
                raise NftError("content may only define table %s %s, found table %s %s (line %d)"
                               % (family, table, found[0], found[1], line))
            tables += 1
            continue
        first = stmt.split(None, 1)[0] if stmt.split() else stmt
        hint = " (give the table's family: table %s %s { ... })" % (family, table) if first == "table" else ""
        raise NftError("content may only hold 'define' and 'table %s %s { ... }' at the top level; line %d "
                       "starts with %r%s" % (family, table, line, stmt[:60], hint))
    if not tables:
        raise NftError("content does not define table %s %s { ... }" % (family, table))
    return text


def absent_script(family, table):
    """One transaction that leaves the table absent, whether or not it exists."""
    return "table %s %s {}\ndelete table %s %s\n" % (family, table, family, table)


def replace_script(family, table, content):
    """One transaction that replaces the table by ``content`` (create-if-absent, delete, define)."""
    return absent_script(family, table) + content.rstrip() + "\n"


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


def apply_shell(paths, family, table):
    """The script the apply timer runs: load the new table unless the change is gone (confirmed or reverted)."""
    q = dict((k, shlex.quote(v)) for k, v in paths.items())
    return (
        "#!/bin/sh\n"
        "# edgeops.fleet.nftables: apply the new table %(family)s %(table)s (commit-confirmed)\n"
        "exec 9>%(lock)s\n"
        "flock 9\n"
        "[ -e %(pending)s ] || exit 0\n"
        "if nft -f %(new)s 2>%(apply_err)s; then\n"
        "  echo \"applied $(date +%%s.%%N)\" >%(applied)s\n"
        "else\n"
        "  echo \"failed $(date +%%s.%%N)\" >%(applied)s\n"
        "fi\n"
    ) % dict(q, family=family, table=table)


def revert_shell(paths, family, table):
    """The script the revert timer runs: restore the backup unless the change was confirmed.

    If the backup does not load, the table is deleted instead: that reopens whatever it blocked, and no other
    table is touched.
    """
    q = dict((k, shlex.quote(v)) for k, v in paths.items())
    return (
        "#!/bin/sh\n"
        "# edgeops.fleet.nftables: no confirm came in time; restore table %(family)s %(table)s as it was\n"
        "exec 9>%(lock)s\n"
        "flock 9\n"
        "[ -e %(pending)s ] || exit 0\n"
        "if nft -f %(backup)s; then\n"
        "  outcome=restored\n"
        "else\n"
        "  nft delete table %(family)s %(table)s\n"
        "  outcome=deleted\n"
        "fi\n"
        "echo \"$outcome $(date +%%s.%%N)\" >%(reverted)s\n"
        "rm -f %(pending)s %(backup)s %(new)s\n"
        "logger -t edgeops-nftables \"table %(family)s %(table)s: change not confirmed in time, $outcome the "
        "previous table\" || true\n"
    ) % dict(q, family=family, table=table)


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


def default_run(argv, data=None, timeout=60):
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(data.encode("utf-8") if data is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return 124, "", "%s timed out after %d s" % (argv[0], timeout)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _write(path, text, mode=0o600):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


class Table(object):
    """One table on this device, driven through the nft program."""

    def __init__(self, family, table, nft="nft", run=default_run, state_dir=STATE_DIR):
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

    def _with_script(self, script, action):
        fd, path = tempfile.mkstemp(prefix="edgeops-nft-", suffix=".nft")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(script)
            return action(path)
        finally:
            os.unlink(path)

    def validate(self, content):
        """``nft -c`` of the replacing transaction against the live ruleset (changes nothing)."""
        script = replace_script(self.family, self.table, content)
        rc, _out, err = self._with_script(script, lambda p: self.run([self.nft, "-c", "-f", p], timeout=60))
        if rc != 0:
            raise NftError("content does not validate (nft -c): %s" % err.strip())

    def canonical(self, content):
        """What ``nft -s list table`` will show once ``content`` is loaded, from an empty network namespace."""
        script = replace_script(self.family, self.table, content)

        def load_and_list(path):
            return self.run(["unshare", "--net", "--", "sh", "-c", 'nft -f "$1" && nft -s list table "$2" "$3"',
                             "sh", path, self.family, self.table], timeout=60)
        rc, out, err = self._with_script(script, load_and_list)
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
            rc, _out, err = self._with_script(script, lambda p: self.run([self.nft, "-f", p], timeout=60))
        finally:
            lock.close()
        if rc != 0:
            raise NftError("nft -f failed: %s" % err.strip())

    # ----- commit-confirmed

    def _lock(self):
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o700)
        handle = open(os.path.join(self.state_dir, "%s-%s.lock" % (self.family, self.table)), "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    def pending(self):
        text = _read(os.path.join(self.state_dir, "%s-%s.pending" % (self.family, self.table)))
        return json.loads(text) if text else None

    def pending_message(self):
        """Why the table must not be changed or reported as it is now (a change still waits for its confirm and
        may revert), or None."""
        waiting = self.pending()
        if not waiting:
            return None
        token = waiting.get("token")
        return ("table %s %s: a commit-confirmed change (token %s, systemd timer %s) is pending until %s (it reverts "
                "by itself unless confirmed); re-run after it has reverted or been confirmed"
                % (self.family, self.table, token, REVERT_UNIT % token,
                   time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(waiting.get("revert_at", 0)))))

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
        if timeout < MIN_CONFIRM_TIMEOUT:
            raise NftError("confirm_timeout must be 0 (no confirm) or at least %d s, got %d" % (MIN_CONFIRM_TIMEOUT, timeout))
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
                rc, _out, err = self._with_script(backup, lambda p: self.run([self.nft, "-c", "-f", p], timeout=60))
                if rc != 0:
                    # nft cannot always read back what it lists; removing the table is the safe way back.
                    backup = absent_script(self.family, self.table)
                    backup_note = ("the current table does not load back (nft -c: %s); an unconfirmed change "
                                   "removes the table instead of restoring it" % err.strip())
            new = absent_script(self.family, self.table) if content is None else \
                replace_script(self.family, self.table, content)
            _write(paths["backup"], backup)
            _write(paths["new"], new)
            _write(paths["apply_sh"], apply_shell(paths, self.family, self.table), 0o700)
            _write(paths["revert_sh"], revert_shell(paths, self.family, self.table), 0o700)
            now = time.time() if now is None else now
            record = {"token": token, "now": now, "apply_at": now + APPLY_DELAY, "revert_at": now + APPLY_DELAY + timeout}
            _write(paths["pending"], json.dumps(record))
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
            lock.close()

    def _timer(self, unit, delay, script, description):
        rc, out, err = self.run(["systemd-run", "--unit=%s" % unit, "--on-active=%ds" % delay,
                                 "--timer-property=AccuracySec=100ms", "--collect",
                                 "--description=%s" % description, "/bin/sh", script], timeout=30)
        if rc != 0:
            raise NftError("could not arm %s (systemd-run; commit-confirmed needs systemd on the device): %s"
                           % (unit, (err or out).strip()))

    def _cancel(self, token, paths, keep=()):
        for unit in (REVERT_UNIT % token, APPLY_UNIT % token):
            self.run(["systemctl", "stop", unit + ".timer"], timeout=30)
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
        deadline = time.time() + wait_apply
        while True:
            lock = self._lock()
            try:
                waiting = self.pending()
                if not waiting or waiting.get("token") != token:
                    return self._outcome(token, paths)
                applied, applied_at = parse_marker(_read(paths["applied"]))
                if applied is not None or time.time() >= deadline:
                    return self._settle(token, paths, waiting, applied, applied_at, wait_apply)
            finally:
                lock.close()
            time.sleep(0.5)

    def _settle(self, token, paths, waiting, applied, applied_at, wait_apply):
        """Under the lock, with the change still pending: confirm it, or cancel it when its apply failed."""
        error = (_read(paths["apply_err"]) or "").strip()
        if applied == "applied":
            answer = {"confirmed": True, "applied_at": applied_at, "revert_at": waiting["revert_at"]}
            # Written before the pending file goes: a retry whose first answer was lost gets the same answer.
            _write(paths["confirmed"], json.dumps(answer))
            self._cancel(token, paths, keep=("confirmed",))
            return answer
        self._cancel(token, paths)
        if applied is None:
            raise NftError("the scheduled apply of table %s %s did not run within %d s of its time (systemd timer "
                           "%s); nothing changed" % (self.family, self.table, int(wait_apply), APPLY_UNIT % token))
        raise NftError("nft -f failed when the change was applied (the table is unchanged): %s" % error)

    def _outcome(self, token, paths):
        outcome, reverted_at = parse_marker(_read(paths["reverted"]))
        applied, applied_at = parse_marker(_read(paths["applied"]))
        if outcome is None:
            answer = _read(paths["confirmed"])
            if answer:
                return json.loads(answer)  # confirmed by an earlier call whose answer did not reach the controller
            raise NftError("no pending change of table %s %s with token %s (confirmed earlier, or the device "
                           "rebooted)" % (self.family, self.table, token))
        self._cancel(token, paths)
        return {"reverted": True, "outcome": outcome, "reverted_at": reverted_at,
                "applied": applied, "applied_at": applied_at}
