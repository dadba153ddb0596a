# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The htpasswd file of the site registry (CNCF Distribution), managed whole.

The module ``edgeops.fleet.registry_htpasswd`` is thin; everything it decides is here:

* ``check_users`` / ``check_cost`` / ``check_mode_value`` refuse bad input naming the key (``users[1].name``);
* ``parse`` reads a file the way Distribution 2.8 does (``registry/auth/htpasswd``: lines trimmed, blank lines and
  lines starting with ``#`` skipped, ``name:hash`` split at the first ``:``, the last of two entries of a name
  wins) and reports what it could not read;
* ``plan`` decides, per user, whether the entry is kept (its hash verifies the given password, whatever its
  cost), added, updated (the password changed, or the hash is not bcrypt, or with ``rehash_on_cost_change`` its
  cost is not the one asked for) or removed (not listed: the file is exclusive);
* ``entries_after`` hashes what is added or updated (bcrypt at the given cost, random salt) and ``render`` writes
  the file's text; ``write_atomic`` replaces the file with rename(2), owner, group and mode set on the temp file;
* ``manage`` puts it together for one file (check mode: nothing is hashed or written).

The bcrypt functions are passed in (``load_bcrypt`` gives passlib's), so the plan can be tested on its own.
Nothing returned or raised here ever holds a password or a hash: only user names.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import logging
import os
import pwd
import re
import stat

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.sysio import atomic_write

MIN_COST = 4
MAX_COST = 31
# What Go's bcrypt (Distribution) reads: $2$, $2a$, $2b$, $2x$, $2y$, a two-digit cost, 22 + 31 characters.
_BCRYPT_RE = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
# bcrypt uses the first 72 bytes of a password; the rest does not count (Go and passlib alike).
BCRYPT_MAX_BYTES = 72
MISSING_LIBRARY = ("bcrypt hashing on this host needs the Python library passlib with its bcrypt backend "
                   "(Debian: apt-get install python3-passlib python3-bcrypt; pip: passlib bcrypt<5)")


class HtpasswdError(ValueError):
    """Bad input or an unusable file; the message names the key or the path, never a password or a hash."""


# ---- input --------------------------------------------------------------------------------

def check_name(name, key):
    """A user name Distribution reads back as it is, and basic auth can carry."""
    if not isinstance(name, str) or not name:
        raise HtpasswdError("%s: a user name is required" % key)
    if ":" in name:
        raise HtpasswdError("%s: %r contains ':' (it separates the name from the hash)" % (key, name))
    if re.search(r"[\s\x00-\x1f\x7f]", name):
        raise HtpasswdError("%s: %r contains whitespace or a control character (a newline would split the entry)"
                            % (key, name))
    if name.startswith("#"):
        raise HtpasswdError("%s: %r starts with '#' (Distribution reads that line as a comment)" % (key, name))
    return name


def check_users(users):
    """``[{name, password}]`` -> ``[(name, password)]``; refuses missing, duplicate or unusable values."""
    if users is None:
        users = []
    if not isinstance(users, list):
        raise HtpasswdError("users: a list of {name, password} is required")
    checked, seen = [], {}
    for index, user in enumerate(users):
        key = "users[%d]" % index
        if not isinstance(user, dict):
            raise HtpasswdError("%s: a dict with name and password is required" % key)
        unknown = sorted(set(user) - set(("name", "password")))
        if unknown:
            raise HtpasswdError("%s: unknown key(s) %s (only name and password)" % (key, ", ".join(unknown)))
        name = check_name(user.get("name"), key + ".name")
        if name in seen:
            raise HtpasswdError("%s.name: %r is listed twice (also users[%d])" % (key, name, seen[name]))
        seen[name] = index
        password = user.get("password")
        if password is None or password == "":
            raise HtpasswdError("%s.password: must not be empty (user %r)" % (key, name))
        if not isinstance(password, str):
            raise HtpasswdError("%s.password: must be a string (user %r)" % (key, name))
        if "\x00" in password:
            raise HtpasswdError("%s.password: contains a NUL character, which bcrypt cannot hash (user %r)"
                                % (key, name))
        checked.append((name, password))
    return checked


def long_password_warnings(users):
    """Users whose password is longer than bcrypt reads (only the first 72 bytes count)."""
    return ["users[%d].password: longer than %d bytes; bcrypt uses only the first %d (user %r)"
            % (index, BCRYPT_MAX_BYTES, BCRYPT_MAX_BYTES, name)
            for index, (name, password) in enumerate(users) if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES]


def check_cost(cost):
    if isinstance(cost, bool) or not isinstance(cost, int) or not MIN_COST <= cost <= MAX_COST:
        raise HtpasswdError("bcrypt_cost: an integer from %d to %d is required, got %r" % (MIN_COST, MAX_COST, cost))
    return cost


def check_mode_value(mode):
    """``"0640"``/``"640"`` (octal text) or an int (YAML's 0640) -> int; None stays None. No symbolic modes."""
    if mode is None:
        return None
    if isinstance(mode, bool):
        raise HtpasswdError("mode: octal digits such as '0640' are required, got %r" % (mode,))
    if isinstance(mode, int):
        value = mode
    elif isinstance(mode, str) and re.match(r"^0?[0-7]{3,4}$", mode.strip()):
        value = int(mode.strip(), 8)
    else:
        raise HtpasswdError("mode: octal digits such as '0640' are required (no symbolic modes), got %r" % (mode,))
    if not 0 <= value <= 0o7777:
        raise HtpasswdError("mode: %r is not a file mode" % (mode,))
    return value


def _resolve_id(key, value, lookup, what):
    """Name or numeric id -> id (None stays None); HtpasswdError naming the key when the name is unknown."""
    if value is None or value == "":
        return None
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return lookup(value)
    except KeyError:
        raise HtpasswdError("%s: no %s %r on this host" % (key, what, value))


def resolve_owner(owner):
    """User name or numeric id -> uid (None stays None)."""
    return _resolve_id("owner", owner, lambda name: pwd.getpwnam(name).pw_uid, "user")


def resolve_group(group):
    """Group name or numeric id -> gid (None stays None)."""
    return _resolve_id("group", group, lambda name: grp.getgrnam(name).gr_gid, "group")


# ---- the file -----------------------------------------------------------------------------

def bcrypt_cost(hashed):
    """The cost of a bcrypt hash (``$2b$NN$...``), or None when it is not one Distribution can check."""
    match = _BCRYPT_RE.match(hashed or "")
    return int(match.group(1)) if match else None


def parse(text):
    """The entries of an htpasswd file as Distribution reads them.

    Returns ``(entries, problems)``: ``entries`` a list of ``(name, hash)`` in file order (for a name listed twice,
    the last entry, as Distribution does), ``problems`` a list of messages (line numbers and names only) about
    lines that make the file differ from what ``render`` writes for the same entries: unreadable lines, names
    listed twice.
    """
    entries, where, problems = [], {}, []
    for number, raw in enumerate((text or "").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not name:
            problems.append("line %d is not name:hash (Distribution refuses to start with it)" % number)
            continue
        if name in where:
            problems.append("user %r is listed on lines %d and %d (the last one counts)"
                            % (name, where[name][1], number))
            entries[where[name][0]] = None
        where[name] = (len(entries), number)
        entries.append((name, hashed))
    return [entry for entry in entries if entry is not None], problems


def render(entries):
    """``[(name, hash)]`` -> the file's text, one ``name:hash`` line each."""
    return "".join("%s:%s\n" % (name, hashed) for name, hashed in entries)


class Plan(object):
    """What becomes of each entry. Names only; hashes of kept entries are in ``kept``."""

    def __init__(self, kept, added, updated, removed, reasons):
        self.kept = kept          # {name: existing hash} of entries left as they are
        self.added = added        # names, in the order of users
        self.updated = updated    # names, in the order of users
        self.removed = removed    # names, in the order of the file
        self.reasons = reasons    # {name: why it is re-hashed} for updated entries

    @property
    def changes_entries(self):
        return bool(self.added or self.updated or self.removed)


def plan(current, users, cost, verify, rehash_on_cost_change=False):
    """Decide per user: keep, add, update; and what to remove.

    ``current``: ``[(name, hash)]`` of the file; ``users``: ``[(name, password)]`` (``check_users``);
    ``verify(password, hash) -> bool`` (bcrypt). An entry is kept as it is when its hash verifies the password,
    whatever its cost, unless ``rehash_on_cost_change`` and its cost is not ``cost``.
    """
    existing = dict(current)
    wanted = set(name for name, _password in users)
    kept, added, updated, reasons = {}, [], [], {}
    for name, password in users:
        hashed = existing.get(name)
        if hashed is None:
            added.append(name)
            continue
        has_cost = bcrypt_cost(hashed)
        if has_cost is None:
            updated.append(name)
            reasons[name] = "not a bcrypt hash"
        elif not verify(password, hashed):
            updated.append(name)
            reasons[name] = "password changed"
        elif rehash_on_cost_change and has_cost != cost:
            updated.append(name)
            reasons[name] = "cost %d -> %d" % (has_cost, cost)
        else:
            kept[name] = hashed
    removed = [name for name, _hash in current if name not in wanted]
    return Plan(kept, added, updated, removed, reasons)


def entries_after(the_plan, users, cost, hash_password):
    """The file's entries in the order of ``users``: kept hashes as they are, the others hashed now at ``cost``."""
    entries = []
    for name, password in users:
        if name in the_plan.kept:
            entries.append((name, the_plan.kept[name]))
        else:
            entries.append((name, hash_password(password, cost)))
    return entries


def load_bcrypt():
    """passlib's bcrypt as ``(hash_password(password, cost), verify(password, hash))``.

    Raises HtpasswdError naming the library when passlib or its bcrypt backend is missing or unusable.
    """
    # passlib 1.7.4 reads bcrypt.__about__, which bcrypt >= 4.1 no longer has: it logs a harmless traceback
    # ("(trapped) error reading bcrypt version") and goes on. Keep it out of the module's output.
    logging.getLogger("passlib.handlers.bcrypt").setLevel(logging.ERROR)
    try:
        from passlib.hash import bcrypt as passlib_bcrypt
    except ImportError as exc:
        raise HtpasswdError("%s: %s" % (MISSING_LIBRARY, exc))
    try:
        passlib_bcrypt.get_backend()
    except Exception as exc:  # MissingBackendError, or a backend passlib cannot use (bcrypt >= 5)
        raise HtpasswdError("%s: passlib has no usable bcrypt backend (%s: %s)"
                            % (MISSING_LIBRARY, type(exc).__name__, exc))

    def hash_password(password, cost):
        return passlib_bcrypt.using(rounds=cost, ident="2b").hash(password)

    def verify(password, hashed):
        try:
            return bool(passlib_bcrypt.verify(password, hashed))
        except (ValueError, TypeError):
            return False  # a malformed hash verifies nothing: the entry is re-hashed

    return hash_password, verify


def read_file(path):
    """``(text, attributes)`` of the file, ``(None, None)`` when it does not exist."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            info = os.fstat(handle.fileno())
    except (IOError, OSError) as exc:
        if not os.path.lexists(path):
            return None, None
        raise HtpasswdError("%s: cannot read it: %s" % (path, exc.strerror or exc))
    if not stat.S_ISREG(info.st_mode):
        raise HtpasswdError("%s: not a regular file" % path)
    return data.decode("utf-8", "replace"), attributes_of(info)


def attributes_of(info):
    return {"uid": info.st_uid, "gid": info.st_gid, "mode": stat.S_IMODE(info.st_mode)}


def wanted_attributes(current, uid, gid, mode):
    """What the file's owner, group and mode must be: those given, else the file's own, else (a new file) this
    process's user and group and mode 0600."""
    current = current or {"uid": os.geteuid(), "gid": os.getegid(), "mode": 0o600}
    return {"uid": current["uid"] if uid is None else uid,
            "gid": current["gid"] if gid is None else gid,
            "mode": current["mode"] if mode is None else mode}


def write_atomic(path, text, attributes):
    """Replace ``path`` with ``text`` (the generations' atomic write: temp file in the same directory, owner, group
    and mode set on it before rename(2), fsynced), so readers see the old file or the new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise HtpasswdError("%s: directory %s does not exist" % (path, directory))
    atomic_write(path, text.encode("utf-8"), mode=attributes["mode"], owner=(attributes["uid"], attributes["gid"]))


def set_attributes(path, current, attributes):
    if (current["uid"], current["gid"]) != (attributes["uid"], attributes["gid"]):
        os.chown(path, attributes["uid"], attributes["gid"])
    if current["mode"] != attributes["mode"]:
        os.chmod(path, attributes["mode"])


def describe_attributes(attributes):
    if attributes is None:
        return "absent"
    return "owner %s, group %s, mode %04o" % (
        _user_name(attributes["uid"]), _group_name(attributes["gid"]), attributes["mode"])


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def diff(path, current, current_attributes, users, the_plan, attributes):
    """Before/after for diff mode: user names and the file's owner, group and mode; no hash, no password."""
    before = ""
    if current_attributes is not None:
        before = "# %s\n" % describe_attributes(current_attributes) + "".join(
            "%s\n" % name for name, _hash in current)
    after = "# %s\n" % describe_attributes(attributes) + "".join(
        "%s%s\n" % (name, " (new hash: %s)" % the_plan.reasons[name] if name in the_plan.reasons else "")
        for name, _password in users)
    return {"before": before, "after": after, "before_header": "%s (users)" % path,
            "after_header": "%s (users)" % path}


# ---- one file, put together -----------------------------------------------------------------

def manage(path, users, cost, owner=None, group=None, mode=None, rehash_on_cost_change=False,
           check_mode=False, want_diff=False, bcrypt=None):
    """Make the htpasswd file at ``path`` hold exactly ``users`` (``[{name, password}]``).

    ``bcrypt``: ``(hash_password, verify)``; passlib's (``load_bcrypt``) when None, loaded only when a hash is to
    be checked or made. Returns the module's result: changed, path, added, updated, removed (names), warnings, and
    diff when ``want_diff``. In check mode nothing is hashed or written.
    """
    checked = check_users(users)
    cost = check_cost(cost)
    mode = check_mode_value(mode)
    uid, gid = resolve_owner(owner), resolve_group(group)
    text, current_attributes = read_file(path)
    current, problems = parse(text)
    warnings = ["%s: %s; the file is written again without it" % (path, problem) for problem in problems]
    warnings.extend(long_password_warnings(checked))

    # passlib is loaded when a hash is to be checked or made, not before: an empty list, or check mode on a new
    # file (a first check-mode run, before apt has installed it), does without.
    loaded = [bcrypt]

    def functions():
        if loaded[0] is None:
            loaded[0] = load_bcrypt()
        return loaded[0]

    def verify(password, hashed):
        return functions()[1](password, hashed)

    def hash_password(password, cost):
        return functions()[0](password, cost)

    the_plan = plan(current, checked, cost, verify, rehash_on_cost_change)
    attributes = wanted_attributes(current_attributes, uid, gid, mode)

    # Only a change of the entries (or an unreadable line, or a name listed twice) rewrites the file: order or
    # comments alone do not, so a reordered users list does not restart the registry.
    rewrite = text is None or the_plan.changes_entries or bool(problems)
    reattribute = current_attributes is not None and current_attributes != attributes
    result = {
        "changed": rewrite or reattribute,
        "path": path,
        "added": list(the_plan.added),
        "updated": list(the_plan.updated),
        "removed": list(the_plan.removed),
        "warnings": warnings,
    }
    if want_diff:
        result["diff"] = diff(path, current, current_attributes, checked, the_plan, attributes)
    if check_mode or not result["changed"]:
        return result
    if rewrite:
        write_atomic(path, render(entries_after(the_plan, checked, cost, hash_password)), attributes)
    else:
        set_attributes(path, current_attributes, attributes)
    return result
