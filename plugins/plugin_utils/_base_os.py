# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of the base_os role: sysctl settings and what may be applied where, the user list with its
guards, and the PCI passthrough plan.

No I/O: the role probes the device and hands the results in, so every decision is unit-tested. Errors
(BaseOsError) start with the variable's name.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

SYSCTL_APPLY_MODES = ("auto", "all", "namespaced", "none")
# Keys of a network namespace: inside a container only these are the device's own. Every other key
# (kernel.*, fs.*, vm.*, dev.*, and the few global net.core ones, which a container's namespace does not
# even show) belongs to the kernel the container shares with its host.
NAMESPACED_PREFIX = "net."
SYSCTL_STATES = ("writable", "readonly", "missing")
IP_FORWARD_KEY = "net.ipv4.ip_forward"

# A sysctl name: dotted words; "/" stands for a dot inside one word (an interface such as eth0.100).
_SYSCTL_KEY_RE = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_@:/+-]+)+$")
_SYSCTL_VALUE_RE = re.compile(r"^[^\s=#;][^\n=#;]*$")

USER_KEYS = ("name", "state", "uid", "groups", "append", "shell", "comment", "authorized_keys", "sudo",
             "password_lock")
USER_STATES = ("present", "absent")
# Shells that refuse logins: never for the account Ansible logs in as.
NOLOGIN_SHELLS = ("nologin", "false")
_USER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_GROUP_NAME_RE = _USER_NAME_RE
# An authorized_keys line: optional options, then a key type OpenSSH accepts, then base64.
_KEY_TYPE_RE = re.compile(
    r"(^|[\s,])(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com|[a-z0-9-]+-cert-v01@openssh\.com)\s+[A-Za-z0-9+/]+={0,3}(\s|$)")

_PCI_ID_RE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")
_KERNEL_ARG_RE = re.compile(r"^[A-Za-z0-9_.,:/=+-]+$")
_MODULE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# IOMMU kernel arguments per CPU vendor (ansible_facts.processor). AMD's IOMMU is on whenever the firmware
# enables it (amd_iommu=on is not a valid value); ARM boards take theirs from the firmware/device tree.
IOMMU_ARGS = {
    "GenuineIntel": ["intel_iommu=on", "iommu=pt"],
    "AuthenticAMD": ["iommu=pt"],
}


class BaseOsError(ValueError):
    """A base_os variable is refused; the message starts with the variable's name."""


def _fail(key, expected, got):
    raise BaseOsError("%s: expected %s, got %r" % (key, expected, got))


def _sysctl_value(value, key):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = " ".join(value.split())
        if text and _SYSCTL_VALUE_RE.match(text):
            return text
    return _fail(key, "a number or a string of words (no '=', '#', ';' or newline)", value)


def sysctl_settings(settings, extra=None, ip_forward=True):
    """The sysctl file's content as {key: value string}, sorted by key.

    ``settings`` (base_os_sysctl_settings) then ``extra`` (base_os_sysctl_settings_extra, wins on the same key)
    then net.ipv4.ip_forward from ``ip_forward`` (base_os_sysctl_ip_forward), which may not be set in either
    mapping: Docker and libvirt networking need it on, and one variable decides it.
    """
    merged = {}
    for var, mapping in (("base_os_sysctl_settings", settings), ("base_os_sysctl_settings_extra", extra)):
        if mapping is None:
            continue
        if not isinstance(mapping, dict):
            _fail(var, "a mapping of sysctl names to values", mapping)
        for key, value in mapping.items():
            where = "%s.%s" % (var, key)
            if not isinstance(key, str) or not _SYSCTL_KEY_RE.match(key):
                _fail(var, "sysctl names such as net.ipv4.tcp_syncookies", key)
            if key == IP_FORWARD_KEY:
                raise BaseOsError("%s: %s is set by base_os_sysctl_ip_forward (Docker and libvirt need it on)"
                                  % (where, IP_FORWARD_KEY))
            merged[key] = _sysctl_value(value, where)
    if not isinstance(ip_forward, bool):
        _fail("base_os_sysctl_ip_forward", "true or false", ip_forward)
    merged[IP_FORWARD_KEY] = "1" if ip_forward else "0"
    return dict(sorted(merged.items()))


def parse_sysctl_probe(lines):
    """Lines '<key> <writable|readonly|missing>' (the role's probe of /proc/sys) -> {key: state}."""
    states = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1] in SYSCTL_STATES:
            states[parts[0]] = parts[1]
    return states


def sysctl_plan(settings, mode="auto", in_container=False, states=None):
    """Which keys of ``settings`` to apply now, and why each other key is only written for the next boot.

    ``mode`` (base_os_sysctl_apply): ``all`` applies every key, ``namespaced`` only net.* keys, ``none``
    nothing; ``auto`` is ``namespaced`` in a container (kernel.*, fs.*, vm.* there are the host's kernel) and
    ``all`` elsewhere. A key is applied only where the probe found it writable: in a container /proc/sys is
    usually mounted read-only, and a namespace shows only its own net.* keys.
    Returns {"mode": effective mode, "apply": {key: value}, "skipped": {key: reason}}.
    """
    if mode not in SYSCTL_APPLY_MODES:
        _fail("base_os_sysctl_apply", "one of %s" % ", ".join(SYSCTL_APPLY_MODES), mode)
    effective = ("namespaced" if in_container else "all") if mode == "auto" else mode
    states = states or {}
    apply, skipped = {}, {}
    for key, value in sorted(settings.items()):
        state = states.get(key, "missing")
        if effective == "none":
            skipped[key] = "base_os_sysctl_apply is none"
        elif effective == "namespaced" and not key.startswith(NAMESPACED_PREFIX):
            skipped[key] = "not namespaced: the host's kernel%s" % (" (this is a container)" if in_container else "")
        elif state == "missing":
            skipped[key] = "not in this kernel or network namespace"
        elif state == "readonly":
            skipped[key] = "read-only here (/proc/sys mounted read-only)"
        else:
            apply[key] = value
    return {"mode": effective, "apply": apply, "skipped": skipped}


def _str_list(value, key, pattern=None, expected="a list of strings"):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and (pattern is None or pattern.match(v))
                                              for v in value):
        _fail(key, expected, value)
    return list(value)


def _user(spec, key):
    if not isinstance(spec, dict):
        _fail(key, "a mapping with at least a name", spec)
    unknown = sorted(str(k) for k in spec if k not in USER_KEYS)
    if unknown:
        raise BaseOsError("%s.%s: unknown key (allowed: %s)" % (key, unknown[0], ", ".join(USER_KEYS)))
    name = spec.get("name")
    if not isinstance(name, str) or not _USER_NAME_RE.match(name):
        _fail(key + ".name", "a user name (lowercase letters, digits, '_' or '-', at most 32)", name)
    state = spec.get("state", "present")
    if state not in USER_STATES:
        _fail(key + ".state", "present or absent", state)
    uid = spec.get("uid")
    if uid is not None and (isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid < 65534):
        _fail(key + ".uid", "a number 0-65533", uid)
    keys = _str_list(spec.get("authorized_keys"), key + ".authorized_keys",
                     expected="a list of public keys, one authorized_keys line each")
    for index, line in enumerate(keys):
        if "\n" in line.strip() or not _KEY_TYPE_RE.search(line.strip()):
            _fail("%s.authorized_keys[%d]" % (key, index), "one authorized_keys line such as 'ssh-ed25519 AAAA... "
                  "comment'", line)
    for flag in ("append", "sudo", "password_lock"):
        if flag in spec and not isinstance(spec[flag], bool):
            _fail("%s.%s" % (key, flag), "true or false", spec[flag])
    shell = spec.get("shell", "/bin/bash")
    if not isinstance(shell, str) or not shell.startswith("/"):
        _fail(key + ".shell", "an absolute path", shell)
    comment = spec.get("comment", "")
    if not isinstance(comment, str) or ":" in comment or "\n" in comment:
        _fail(key + ".comment", "a string without ':' or newline", comment)
    return {
        "name": name,
        "state": state,
        "uid": uid,
        "groups": _str_list(spec.get("groups"), key + ".groups", _GROUP_NAME_RE, "a list of group names"),
        "append": spec.get("append", True),
        "shell": shell,
        "comment": comment,
        "authorized_keys": [line.strip() for line in keys],
        "sudo": spec.get("sudo", False),
        "password_lock": spec.get("password_lock", True),
    }


def users_plan(users, site=None, device=None, login_user=None, login_groups=None):
    """The accounts to manage: base_os_users, then base_os_users_site, then base_os_users_device (a later entry
    of the same name replaces an earlier one), normalised with their defaults.

    Guards against locking Ansible out: the account the connection logs in as (``login_user``) and root can
    never be removed, and the login account may not end up with no key (authorized_keys are exclusive), with
    a locked password it may need for become (unless sudo: true gives it passwordless sudo), nor with a shell
    that refuses logins (nologin, false). ``login_groups``, when given, are its groups as ``id -Gn`` prints
    them (the primary one first, which ``append: false`` leaves alone): ``append: false`` may not drop any
    of the others (sudo for become, a group of AllowGroups ...).
    """
    if isinstance(login_groups, str):
        login_groups = login_groups.split()
    merged = {}
    order = []
    for var, entries in (("base_os_users", users), ("base_os_users_site", site), ("base_os_users_device", device)):
        if entries is None:
            continue
        if not isinstance(entries, list):
            _fail(var, "a list of users", entries)
        seen = set()
        for index, spec in enumerate(entries):
            key = "%s[%d]" % (var, index)
            user = _user(spec, key)
            if user["name"] in seen:
                raise BaseOsError("%s.name: %s is listed twice in %s" % (key, user["name"], var))
            seen.add(user["name"])
            if user["name"] not in merged:
                order.append(user["name"])
            merged[user["name"]] = (key, user)
    out = []
    for name in order:
        key, user = merged[name]
        if user["state"] == "absent" and name in ("root", login_user):
            raise BaseOsError("%s.state: refusing to remove %s, the account %s" % (
                key, name, "Ansible logs in as" if name == login_user else "of the superuser"))
        if name == login_user and user["state"] == "present":
            if not user["authorized_keys"]:
                raise BaseOsError("%s.authorized_keys: %s is the account Ansible logs in as; authorized keys are "
                                  "exclusive, so an empty list would lock Ansible out" % (key, name))
            if user["password_lock"] and not user["sudo"] and name != "root":
                raise BaseOsError("%s.password_lock: %s is the account Ansible logs in as and may need its password "
                                  "for become; set sudo: true (passwordless sudo) or password_lock: false" % (key, name))
            if user["shell"].rstrip("/").rsplit("/", 1)[-1] in NOLOGIN_SHELLS:
                raise BaseOsError("%s.shell: %s is the account Ansible logs in as; the shell %s refuses its logins"
                                  % (key, name, user["shell"]))
            dropped = [group for group in (login_groups or [])[1:] if group not in user["groups"]]
            if not user["append"] and dropped:
                raise BaseOsError("%s.append: %s is the account Ansible logs in as; append: false would take it out "
                                  "of %s (sudo, AllowGroups ...): list them in groups or drop append: false"
                                  % (key, name, ", ".join(dropped)))
        out.append(user)
    return out


def passthrough_plan(pci_ids, processor=None, kernel_args_extra=None, softdep_drivers=None):
    """What PCI passthrough needs: vfio-pci ids, the kernel arguments for this CPU, the drivers vfio-pci must
    load before. {"ids": [...], "kernel_args": [...], "softdep_drivers": [...]}; ids lowercased, duplicates
    dropped, order kept."""
    ids = []
    for index, pci_id in enumerate(_str_list(pci_ids, "base_os_passthrough_pci_ids", expected="a list of strings")):
        if not _PCI_ID_RE.match(pci_id):
            _fail("base_os_passthrough_pci_ids[%d]" % index, "vendor:device in hexadecimal such as 10de:1eb8", pci_id)
        if pci_id.lower() not in ids:
            ids.append(pci_id.lower())
    vendors = [v for v in (processor or []) if isinstance(v, str) and v in IOMMU_ARGS]
    args = list(IOMMU_ARGS[vendors[0]]) if vendors else []
    for arg in _str_list(kernel_args_extra, "base_os_passthrough_kernel_args_extra", _KERNEL_ARG_RE,
                         "a list of kernel arguments (no spaces or quotes)"):
        if arg not in args:
            args.append(arg)
    drivers = _str_list(softdep_drivers, "base_os_passthrough_softdep_drivers", _MODULE_RE,
                        "a list of kernel module names")
    return {"ids": ids, "kernel_args": args if ids else [], "softdep_drivers": drivers}
