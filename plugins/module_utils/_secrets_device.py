# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets on the device, in one pass (the secrets_deliver module): files on tmpfs, encrypted copies, boot restore.

One module run instead of a dozen tasks: the delivery is part of every staging of a release, and each task was an SSH
round trip per device (about 60 % of a rollout's staging time on the lab). Commands run through an injected runner
(``run(argv) -> (rc, out, err)``), so the unit tests use real files and a stand-in for systemd-creds and systemctl.
No value ever reaches a command line: values go from memory to a 0400 file, and from that file to
``systemd-creds encrypt``. Ansible masks every occurrence of a no_log value inside the strings of a result, so a short
value that happens to occur in a name, a path or a fingerprint would show there as stars, telling where it occurs:
``withhold`` replaces such a string whole before Ansible sees it, and the module returns no digest: the role reads the
fingerprints with ``stat`` (``renewed`` - names as keys, booleans as values - is never masked).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.sysio import atomic_write

SCRIPT_PATH = "/usr/local/sbin/edgeops-secrets-restore"
UNIT_PATH = "/etc/systemd/system/edgeops-secrets.service"
UNIT_NAME = "edgeops-secrets.service"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DeliverError(Exception):
    """A refusal, naming the secret or path; never a value."""


def restore_script(secrets_dir, credentials_dir):
    """The boot (and rotation) restore script: decrypt the named credentials, or all, into the tmpfs directory."""
    return """#!/bin/sh
# Managed by edgeops.fleet.secrets.
# Restore secrets into {dst} (tmpfs, empty after every boot) from the credentials encrypted at
# rest with the device's systemd-creds host key: all of them at boot (before Docker starts containers), or
# the ones named as arguments (a rotation putting an old value back).
set -eu
src={src}
dst={dst}
umask 077
mkdir -p "$dst"
chmod 0711 "$dst"
if [ "$#" -gt 0 ]; then
  names="$*"
else
  names=""
  for cred in "$src"/*.cred; do
    [ -e "$cred" ] || continue
    names="$names $(basename "$cred" .cred)"
  done
fi
for name in $names; do
  owner=$(cat "$src/$name.owner")
  systemd-creds decrypt --name="$name" "$src/$name.cred" "$dst/.$name.tmp"
  chown "$owner:0" "$dst/.$name.tmp"
  chmod 0400 "$dst/.$name.tmp"
  mv -f "$dst/.$name.tmp" "$dst/$name"
done
""".format(src=credentials_dir, dst=secrets_dir)


def restore_unit(secrets_dir, credentials_dir, script_path=SCRIPT_PATH):
    """The unit that runs the restore script at boot, before Docker and the generations' boot recovery."""
    return """# Managed by edgeops.fleet.secrets.
# /run is empty after a boot: the secrets workloads read must be back before Docker and the generation's
# boot recovery start their containers.
[Unit]
Description=edgeops: restore workload secrets to {dst}
After=local-fs.target
Before=docker.service edgeops-boot.service
ConditionDirectoryNotEmpty={src}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={script}

[Install]
WantedBy=multi-user.target
""".format(src=credentials_dir, dst=secrets_dir, script=script_path)


def check_request(values, owners):
    """Names and owners checked before anything is touched; returns {name: uid} of the secrets to deliver."""
    uids = {}
    for name in sorted(owners):
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise DeliverError("owners: %r is not a usable secret name (letters, digits, '_', '.', '-')" % (name,))
        if name not in values or values[name] is None:
            raise DeliverError("owners.%s: this secret is read by workloads but has no value" % name)
        # What secrets_resolve refuses on the controller, refused here too for values given directly (a mapping
        # would be written as its Python repr, a YAML boolean as True). The message never holds the value.
        value = values[name]
        if isinstance(value, (dict, list, tuple, bool)) or not isinstance(value, (str, int, float)):
            raise DeliverError("values.%s: a secret's value must be a string (or a number), got a %s"
                               % (name, type(value).__name__))
        if value == "":
            raise DeliverError("values.%s: the secret's value is empty" % name)
        uids[name] = resolve_uid(name, owners[name])
    return uids


def resolve_uid(name, owner):
    """The uid the workloads role gives (an integer, or its digits)."""
    if isinstance(owner, bool) or not (isinstance(owner, int) or (isinstance(owner, str) and owner.isdigit())):
        raise DeliverError("owners.%s: expected a uid (a non-negative integer), got %r" % (name, owner))
    if int(owner) >= 2 ** 32 - 1:
        raise DeliverError("owners.%s: uid %s is out of range" % (name, owner))
    return int(owner)


WITHHELD = "(withheld: contains the value of a secret)"


def withhold(data, values):
    """``data`` (the module's result) with every string that contains one of ``values`` replaced whole by WITHHELD.

    Mapping keys are kept (Ansible does not mask them either); booleans pass (Ansible does not mask them).
    """
    needles = [v for v in (_value_bytes(x).decode("utf-8", "replace") for x in values if x is not None) if v]
    if isinstance(data, dict):
        return dict((key, withhold(item, values)) for key, item in data.items())
    if isinstance(data, (list, tuple)):
        return [withhold(item, values) for item in data]
    if isinstance(data, bool) or data is None:
        return data
    text = data if isinstance(data, str) else str(data)
    return WITHHELD if any(needle in text for needle in needles) else data


def _value_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else str(value).encode("utf-8")


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


class Delivery(object):
    """One delivery. ``changes`` lists what changed (paths and secret names, never values)."""

    def __init__(self, run, check_mode=False):
        self.run = run
        self.check_mode = check_mode
        self.changes = []

    def command(self, argv, what):
        rc, _out, err = self.run(argv)
        if rc != 0:
            raise DeliverError("%s failed (%s, rc %d): %s" % (what, argv[0], rc, (err or "").strip()[-500:]))

    def directory(self, path, mode):
        """A root-owned directory of this mode (its parents as they are, made when missing)."""
        try:
            info = os.lstat(path)
        except OSError:
            info = None
        if info is not None and not stat.S_ISDIR(info.st_mode):
            raise DeliverError("%s exists and is not a directory" % path)
        if info is not None and stat.S_IMODE(info.st_mode) == mode and (info.st_uid, info.st_gid) == (0, 0):
            return
        self.changes.append("directory %s" % path)
        if self.check_mode:
            return
        if info is None:
            os.makedirs(path, mode)
        os.chown(path, 0, 0)
        os.chmod(path, mode)

    def file(self, path, data, mode, uid=0):
        """``path`` holds ``data`` with this owner (group root) and mode; True when it had to change."""
        try:
            info = os.lstat(path)
        except OSError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == mode \
                and (info.st_uid, info.st_gid) == (uid, 0) and _read(path) == data:
            return False
        if not self.check_mode:
            atomic_write(path, data, mode, owner=(uid, 0))
        return True

    def unit(self, path, text):
        if self.file(path, text.encode("utf-8"), 0o644):
            self.changes.append("file %s" % path)
            if not self.check_mode:
                self.command(["systemctl", "daemon-reload"], "reloading systemd units")
        rc, out, _err = self.run(["systemctl", "is-enabled", UNIT_NAME])
        if rc == 0 and out.strip() == "enabled":
            return
        self.changes.append("enabled %s" % UNIT_NAME)
        if not self.check_mode:
            self.command(["systemctl", "enable", UNIT_NAME], "enabling %s" % UNIT_NAME)


def encrypt(work, name, path, cred, written):
    """From the tmpfs file to the encrypted copy (the value never on a command line), through a temp file renamed into
    place, so an encryption cut off leaves the old copy whole. When it fails, a plaintext file just written is removed:
    the next delivery writes it again, hence encrypts it again, instead of finding it current beside a stale copy."""
    tmp = os.path.join(os.path.dirname(cred), ".%s.cred.tmp" % name)
    try:
        work.command(["systemd-creds", "encrypt", "--name=%s" % name, path, tmp], "encrypting secret %s" % name)
        os.chmod(tmp, 0o600)
        os.rename(tmp, cred)
    except BaseException:
        for leftover in (tmp, path) if written else (tmp,):
            if os.path.lexists(leftover):
                os.unlink(leftover)
        raise


def deliver(values, owners, secrets_dir, credentials_dir, run, check_mode=False, script_path=SCRIPT_PATH,
            unit_path=UNIT_PATH):
    """Deliver every secret in ``owners``; returns the module's result: changed, renewed, changes.

    ``renewed``: secret name -> whether its file was written or its copy encrypted again (in check mode: would be).
    The fingerprints come from a stat of the encrypted copies and the secrets_fingerprints filter (``renewed`` makes
    them ``pending`` in check mode), not from here: Ansible would mask a short value occurring in a digest.
    """
    uids = check_request(values, owners)
    result = {"changed": False, "renewed": {}, "changes": []}
    if not uids:
        return result
    work = Delivery(run, check_mode)
    work.directory(secrets_dir, 0o711)
    work.directory(credentials_dir, 0o700)
    work.directory(os.path.join(credentials_dir, "previous"), 0o700)
    if work.file(script_path, restore_script(secrets_dir, credentials_dir).encode("utf-8"), 0o755):
        work.changes.append("file %s" % script_path)
    for name in sorted(uids):
        path = os.path.join(secrets_dir, name)
        cred = os.path.join(credentials_dir, name + ".cred")
        # Written to a new file and renamed over the old one: a running container keeps the file it mounted until
        # the next generation recreates it (the fingerprint label changes).
        written = work.file(path, _value_bytes(values[name]), 0o400, uids[name])
        if written:
            work.changes.append("secret %s" % name)
        if work.file(os.path.join(credentials_dir, name + ".owner"), ("%d\n" % uids[name]).encode("ascii"), 0o600):
            work.changes.append("owner of %s" % name)
        result["renewed"][name] = written or not os.path.exists(cred)
        if result["renewed"][name]:
            work.changes.append("encrypted %s" % name)
            if not check_mode:
                encrypt(work, name, path, cred, written)
    work.unit(unit_path, restore_unit(secrets_dir, credentials_dir, script_path))
    result["changes"] = work.changes
    result["changed"] = bool(work.changes)
    return result
