# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet file (sites, devices, hardware profiles, rollout policy): validation and wave assignment.

Pure functions, shared by the inventory plugin and the unit tests. Every error names the file, the key and
what was expected; unknown keys are errors. load_rollout_policy() validates the ``rollout`` section on its own
(also a policy given as a playbook variable) and fills in every default. The file itself is read by
_yaml_input (duplicate keys, alias bombs, size and encoding are refused there); load_fleet() takes any parsed
value and either returns a fleet or raises FleetError, whatever the types inside.

References inside the file are checked: a device's site and profile exist; a site's bastion and registry, when
they name a device of the fleet (by name, or by address and port for the bastion), name one of that site (the
bastion device itself is then reached directly, not through itself); ``ansible_ssh_common_args`` in the vars of
a site, profile or device behind a bastion may not set a jump host of its own (the bastion's ProxyJump is added
to those arguments, see ssh_common_args()).

Waves are assigned without state: each device gets a score in [0, 1) from sha256(salt, name). Percentage
waves are score thresholds, so adding a device never moves another one, except where a per-site cap is
binding (a cap is never exceeded: the device with the highest score in that site and wave moves to the next
wave). A count wave (the canary, ``1``) takes devices with the canary tag, or, without tagged devices, the
lowest scores; tag canaries to pin them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
import shlex

TOP_KEYS = ("version", "profiles", "sites", "devices", "rollout")
SITE_KEYS = ("bastion", "registry", "network", "vars")
BASTION_KEYS = ("host", "port", "user")
PROFILE_KEYS = ("description", "gpus", "vars")
DEVICE_KEYS = ("site", "address", "port", "user", "profile", "tags", "release", "channel", "vars")
ROLLOUT_KEYS = ("waves", "canary_tag", "site_cap", "salt", "soak", "failure_threshold", "min_executed", "unreachable",
                "rollback_switched", "confirm_timeout", "environment", "approval_waived")
DEFAULT_WAVES = (1, "10%", "50%", "100%")
UNREACHABLE_CHOICES = ("fail", "pause")
# A site is a group carrying the site's variables: it must not be, or look like, a group of Ansible or the plugin.
RESERVED_GROUPS = ("all", "ungrouped", "edge_devices")
GROUP_PREFIXES = ("wave_", "tag_", "profile_")
# Defaults of the rollout policy keys that are plain values (waves, canary_tag, site_cap and salt have their own).
ROLLOUT_DEFAULTS = {
    "soak": 60,
    "failure_threshold": 10,
    "min_executed": 1,
    "unreachable": "fail",
    "rollback_switched": True,
    "confirm_timeout": 300,
    "environment": "production",
    "approval_waived": False,
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$")
# A login name: it ends up in ssh's ProxyJump=user@host, so nothing an ssh command line would read as more.
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
# As the workloads role checks workloads_registry (plugins/plugin_utils/_workloads.py).
_REGISTRY_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9.-]*)(?::([0-9]{1,5}))?$")
_RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# ssh options that pick a jump host: with a bastion, the plugin's ProxyJump must be the only one.
_JUMP_OPTIONS = ("proxyjump", "proxycommand")
SSH_ARGS = "ansible_ssh_common_args"
_PERCENT_RE = re.compile(r"^([0-9]{1,3}(?:\.[0-9]+)?)%$")


class FleetError(ValueError):
    """The fleet file is refused; the message names the file and key."""


class _Checker(object):
    def __init__(self, source):
        self.source = source

    def fail(self, key, expected, got=None, show_got=True):
        message = "%s: %s: expected %s" % (self.source, key, expected)
        if show_got:
            got = repr(got)
            message += ", got %s" % (got if len(got) <= 200 else got[:200] + "...")
        raise FleetError(message)

    def named(self, value, key, expected):
        """The items of a mapping of names to settings, sorted; every name checked first (they may be any type)."""
        if not isinstance(value, dict):
            self.fail(key, expected, value)
        for name in value:
            self.name(name, "%s.%s" % (key, name))
        return sorted(value.items())

    def mapping(self, value, key, allowed, required=()):
        if not isinstance(value, dict):
            self.fail(key, "a mapping", value)
        if not all(k in allowed for k in value):  # the common case first: a device has a handful of keys
            unknown = sorted(str(k) for k in value if k not in allowed)
            self.fail("%s.%s" % (key, unknown[0]) if key else unknown[0],
                      "one of the keys %s (unknown keys are errors)" % ", ".join(allowed), show_got=False)
        for name in required:
            if value.get(name) in (None, ""):
                self.fail("%s.%s" % (key, name) if key else name, "a value (required)", show_got=False)
        return value

    def name(self, value, key):
        if not isinstance(value, str) or not _NAME_RE.match(value):
            self.fail(key, "a name of lowercase letters, digits, '-' or '_'", value)
        return value

    def port(self, value, key):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.fail(key, "a port number 1-65535", value)
        return value

    def host(self, value, key):
        if not isinstance(value, str) or not _HOST_RE.match(value):
            self.fail(key, "a host name or IP address", value)
        return value

    def pattern(self, value, key, regex, expected, optional=True):
        if value is None and optional:
            return None
        if not isinstance(value, str) or not regex.match(value):
            self.fail(key, expected, value)
        return value

    def user(self, value, key):
        return self.pattern(value, key, _USER_RE, "a user name (letters, digits, '_', '.', '-'; at most 32)")

    def registry(self, value, key):
        match = _REGISTRY_RE.match(value) if isinstance(value, str) else None
        if not match or (match.group(2) is not None and not 1 <= int(match.group(2)) <= 65535):
            self.fail(key, "a registry address host[:port] (port 1-65535)", value)
        return value

    def ssh_args(self, vars_, key, bastion_of=None):
        """The ssh arguments in vars (a string); with a bastion (``bastion_of``, the site) no jump host of their own."""
        args = vars_.get(SSH_ARGS)
        if args is None:
            return None
        key = "%s.%s" % (key, SSH_ARGS)
        if not isinstance(args, str):
            self.fail(key, "ssh arguments as a string", args)
        try:
            words = shlex.split(args)
        except ValueError as exc:
            self.fail(key, "ssh arguments a shell can split (%s)" % exc, args)
        if bastion_of is not None:
            for index, word in enumerate(words):
                option = words[index + 1] if word == "-o" and index + 1 < len(words) else word[2:] \
                    if word.startswith("-o") else ""
                if word.startswith("-J") or option.lower().replace(" ", "=").split("=", 1)[0] in _JUMP_OPTIONS:
                    self.fail(key, "no jump host (-J, ProxyJump, ProxyCommand): site %s has a bastion, whose "
                              "ProxyJump the plugin adds to these arguments" % bastion_of, args)
        return args

    def str_list(self, value, key):
        if not isinstance(value, list) or not all(isinstance(v, str) and _NAME_RE.match(v) for v in value):
            self.fail(key, "a list of names (lowercase letters, digits, '-' or '_')", value)
        return list(value)

    def integer(self, value, key, minimum, expected):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, expected, value)
        return int(value)

    def boolean(self, value, key):
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def vars(self, value, key):
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self.fail(key, "a mapping of variable names to values", value)
        return dict(value)


def parse_waves(waves, checker, key="rollout.waves"):
    """[1, '10%', '50%', '100%'] -> [('count', 1), ('share', 0.1), ...]; strictly growing, ending at 100%."""
    if not isinstance(waves, list) or not waves:
        checker.fail(key, "a non-empty list such as [1, '10%', '50%', '100%']", waves)
    out = []
    last_share = 0.0
    for index, wave in enumerate(waves):
        where = "%s[%d]" % (key, index)
        if isinstance(wave, int) and not isinstance(wave, bool):
            if wave < 1 or any(kind == "share" for kind, _v in out):
                checker.fail(where, "a device count >= 1, before every percentage", wave)
            out.append(("count", wave))
            continue
        match = _PERCENT_RE.match(str(wave)) if isinstance(wave, str) else None
        share = float(match.group(1)) / 100.0 if match else -1.0
        if not 0.0 < share <= 1.0 or share <= last_share:
            checker.fail(where, "a percentage above the previous wave's, at most 100%", wave)
        last_share = share
        out.append(("share", share))
    if last_share != 1.0:
        checker.fail(key, "a last wave of 100% (every device gets the release)", waves)
    return out


def parse_share(value, checker, key):
    match = _PERCENT_RE.match(str(value)) if isinstance(value, str) else None
    share = float(match.group(1)) / 100.0 if match else -1.0
    if not 0.0 < share <= 1.0:
        checker.fail(key, "a percentage such as 50%", value)
    return share


def load_fleet(data, source="fleet file"):
    """Validate a parsed fleet file; return a normalised dict (raises FleetError naming file and key)."""
    check = _Checker(source)
    check.mapping(data, "", TOP_KEYS, required=("sites", "devices"))
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version != 1:  # not true, not 1.0
        check.fail("version", "1", version)
    profiles = {}
    for name, spec in check.named(data.get("profiles") or {}, "profiles", "a mapping of profile name to its settings"):
        key = "profiles.%s" % name
        spec = check.mapping(spec or {}, key, PROFILE_KEYS)
        gpus = spec.get("gpus", 0)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            check.fail(key + ".gpus", "a number of GPUs >= 0", gpus)
        profiles[name] = {"gpus": gpus, "vars": check.vars(spec.get("vars"), key + ".vars")}
        check.ssh_args(profiles[name]["vars"], key + ".vars")
    sites = {}
    for name, spec in check.named(data["sites"], "sites", "a mapping of site name to its settings"):
        key = "sites.%s" % name
        if name in RESERVED_GROUPS or name.startswith(GROUP_PREFIXES):
            check.fail(key, "a site name other than %s and not starting with %s (those are groups of their own)"
                       % (", ".join(RESERVED_GROUPS), ", ".join(GROUP_PREFIXES)), name)
        spec = check.mapping(spec or {}, key, SITE_KEYS)
        site = {"bastion": None, "registry": None, "network": {}, "vars": check.vars(spec.get("vars"), key + ".vars")}
        if spec.get("bastion") is not None:
            bastion = check.mapping(spec["bastion"], key + ".bastion", BASTION_KEYS, required=("host",))
            site["bastion"] = {"host": check.host(bastion["host"], key + ".bastion.host"),
                               "port": check.port(bastion.get("port", 22), key + ".bastion.port"),
                               "user": check.user(bastion.get("user"), key + ".bastion.user"),
                               "device": None}
        if spec.get("registry") is not None:
            site["registry"] = check.registry(spec["registry"], key + ".registry")
        site["network"] = check.vars(spec.get("network"), key + ".network")
        check.ssh_args(site["vars"], key + ".vars", bastion_of=name if site["bastion"] else None)
        sites[name] = site
    devices = {}
    profiles_behind = set()  # (profile, site) whose ssh arguments were checked against the site's bastion
    if not isinstance(data["devices"], dict) or not data["devices"]:
        check.fail("devices", "a non-empty mapping of device name to its settings", data["devices"])
    for name, spec in check.named(data["devices"], "devices", "a non-empty mapping of device name to its settings"):
        key = "devices.%s" % name
        spec = check.mapping(spec, key, DEVICE_KEYS, required=("site", "address"))
        site = spec["site"]
        if not isinstance(site, str) or site not in sites:
            check.fail(key + ".site", "one of the sites (%s)" % ", ".join(sorted(sites)), site)
        profile = spec.get("profile")
        if profile is not None and (not isinstance(profile, str) or profile not in profiles):
            check.fail(key + ".profile", "one of the profiles (%s)" % (", ".join(sorted(profiles)) or "none declared"),
                       profile)
        devices[name] = {
            "site": site,
            "address": check.host(spec["address"], key + ".address"),
            "port": check.port(spec.get("port", 22), key + ".port"),
            "user": check.user(spec.get("user"), key + ".user"),
            "profile": profile,
            "tags": check.str_list(spec.get("tags", []), key + ".tags"),
            "release": check.pattern(spec.get("release"), key + ".release", _RELEASE_RE,
                                     "a release name as a string (letters, digits, '.', '_', '+', '-'; quote a "
                                     "version such as \"2024.10\", which unquoted is a number)"),
            "channel": check.pattern(spec.get("channel"), key + ".channel", _CHANNEL_RE,
                                     "a channel name as a string (letters, digits, '.', '_', '-')"),
            "vars": check.vars(spec.get("vars"), key + ".vars"),
        }
        bastion = sites[site]["bastion"]
        if bastion:
            # The ProxyJump is added to the device's ssh arguments, wherever they come from.
            check.ssh_args(devices[name]["vars"], key + ".vars", bastion_of=site)
            if profile and (profile, site) not in profiles_behind:
                check.ssh_args(profiles[profile]["vars"], "profiles.%s.vars" % profile, bastion_of=site)
                profiles_behind.add((profile, site))
    check_references(sites, devices, check)
    return {"profiles": profiles, "sites": sites, "devices": devices,
            "rollout": load_rollout_policy(data.get("rollout"), source=source)}


def check_references(sites, devices, check):
    """A site's bastion and registry, when they name a device of the fleet, name one of that site.

    A bastion names a device by its name, or by its address and port; a registry (host[:port]) by the device's
    name or address. The bastion's device is marked (site["bastion"]["device"]): it is reached directly.
    """
    by_name = dict((name, name) for name in devices)
    by_address = {}
    for name, device in sorted(devices.items()):
        by_address.setdefault(device["address"], []).append(name)
    for site_name, site in sorted(sites.items()):
        bastion = site["bastion"]
        if bastion:
            named = [by_name[bastion["host"]]] if bastion["host"] in by_name else [
                name for name in by_address.get(bastion["host"], []) if devices[name]["port"] == bastion["port"]]
            elsewhere = [name for name in named if devices[name]["site"] != site_name]
            if elsewhere:
                check.fail("sites.%s.bastion.host" % site_name, "a host of site %s (or outside the fleet): it is "
                           "device %s of site %s" % (site_name, elsewhere[0], devices[elsewhere[0]]["site"]),
                           bastion["host"])
            bastion["device"] = named[0] if named else None
        if site["registry"]:
            host = _REGISTRY_RE.match(site["registry"]).group(1)
            named = [by_name[host]] if host in by_name else by_address.get(host, [])
            elsewhere = [name for name in named if devices[name]["site"] != site_name]
            if elsewhere:
                check.fail("sites.%s.registry" % site_name, "a registry of site %s (or outside the fleet): %s is "
                           "device %s of site %s" % (site_name, host, elsewhere[0], devices[elsewhere[0]]["site"]),
                           site["registry"])


def ssh_common_args(own, bastion):
    """A device's ansible_ssh_common_args: its own (from vars; may be None) with the bastion's ProxyJump after them.

    The ProxyJump is added, not substituted: known_hosts, IdentitiesOnly, ... of the site, profile or device stay.
    (ssh takes the first value of an option; load_fleet() refuses a jump host in ``own``, so the order is moot.)
    """
    if not bastion:
        return own
    jump = "%s%s:%d" % ("%s@" % bastion["user"] if bastion["user"] else "", bastion["host"], bastion["port"])
    return ("%s -o ProxyJump=%s" % (own.strip(), jump)).strip() if own else "-o ProxyJump=%s" % jump


def load_rollout_policy(data, source="fleet file", base=None):
    """Validate a rollout policy (the fleet file's ``rollout`` mapping, or None); return it normalised.

    Every key is in the result, defaults filled in. ``waves`` is parsed ([('count', 1), ('share', 0.1), ...]);
    ``wave_plan`` is the same plan as written ([1, '10%', ...]) for JSON. Errors (FleetError) name ``source``, the
    key and what was expected. Also usable on a policy given as a playbook variable.

    With ``base`` (a policy this function returned, or its JSON form ``policy_for_json``), ``data`` holds overrides:
    the keys it does not set keep the base's values, already normalised, instead of the defaults.
    """
    check = _Checker(source)
    rollout = check.mapping({} if data is None else data, "rollout", ROLLOUT_KEYS)
    if base is not None and "waves" not in rollout:
        plan = list(base["wave_plan"])
        parsed = parse_waves(plan, check, key="rollout.wave_plan")
    else:
        waves = rollout.get("waves", DEFAULT_WAVES)
        parsed = parse_waves(list(waves) if isinstance(waves, (list, tuple)) else waves, check)
        plan = [int(wave) if kind == "count" else str(wave) for (kind, _value), wave in zip(parsed, waves)]
    defaults = dict(ROLLOUT_DEFAULTS, canary_tag="canary", site_cap=1.0, salt="edgeops")
    if base is not None:
        defaults.update((key, base[key]) for key in defaults)
    policy = {
        "waves": parsed,
        "wave_plan": plan,
        "canary_tag": check.name(rollout.get("canary_tag", defaults["canary_tag"]), "rollout.canary_tag"),
        "site_cap": parse_share(rollout["site_cap"], check, "rollout.site_cap") if "site_cap" in rollout
        else defaults["site_cap"],
        "salt": str(rollout.get("salt", defaults["salt"])),
    }

    def get(key):
        return rollout.get(key, defaults[key])

    policy["soak"] = check.integer(get("soak"), "rollout.soak", 0, "a number of seconds >= 0")
    threshold = get("failure_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 100:
        check.fail("rollout.failure_threshold", "a percentage number 0-100 (failed*100/executed above it aborts)",
                   threshold)
    policy["failure_threshold"] = threshold
    policy["min_executed"] = check.integer(get("min_executed"), "rollout.min_executed", 1, "a number of devices >= 1")
    unreachable = get("unreachable")
    if unreachable not in UNREACHABLE_CHOICES:
        check.fail("rollout.unreachable", "one of %s" % ", ".join(UNREACHABLE_CHOICES), unreachable)
    policy["unreachable"] = str(unreachable)
    policy["rollback_switched"] = check.boolean(get("rollback_switched"), "rollout.rollback_switched")
    policy["confirm_timeout"] = check.integer(get("confirm_timeout"), "rollout.confirm_timeout", 15,
                                              "a number of seconds >= 15")
    environment = get("environment")
    if not isinstance(environment, str) or not environment.strip():
        check.fail("rollout.environment", "a non-empty string such as production or staging", environment)
    policy["environment"] = str(environment)
    policy["approval_waived"] = check.boolean(get("approval_waived"), "rollout.approval_waived")
    if policy["approval_waived"] and policy["environment"].strip().lower() == "production":
        raise FleetError("%s: rollout.approval_waived: cannot be true when rollout.environment is production" % source)
    return policy


def policy_for_json(policy):
    """The normalised policy with JSON types only, what inventories publish: the waves only as ``wave_plan`` (as
    written), since every host carries this variable and the parsed form would double its size."""
    out = dict(policy)
    del out["waves"]
    out["wave_plan"] = list(policy["wave_plan"])
    return out


def device_score(salt, name):
    """Stable position of a device in [0, 1): the same salt and name always give the same score."""
    digest = hashlib.sha256(("%s\0%s" % (salt, name)).encode("utf-8")).hexdigest()
    return int(digest[:16], 16) / float(1 << 64)


def assign_waves(fleet):
    """Device name -> wave number (0-based), honouring canary tags, count waves, shares and the site cap."""
    policy = fleet["rollout"]
    devices = fleet["devices"]
    scores = dict((name, device_score(policy["salt"], name)) for name in devices)
    wave_of = {}
    next_wave = 0
    shares = []
    for kind, value in policy["waves"]:
        if kind == "count":
            tagged = sorted((n for n in devices if n not in wave_of and policy["canary_tag"] in devices[n]["tags"]),
                            key=lambda n: scores[n])
            pool = tagged or sorted((n for n in devices if n not in wave_of), key=lambda n: scores[n])
            for name in pool[:value]:
                wave_of[name] = next_wave
            next_wave += 1
        else:
            shares.append((next_wave, value))
            next_wave += 1
    rest = sorted((n for n in devices if n not in wave_of), key=lambda n: scores[n])
    site_sizes = {}
    for name in devices:
        site_sizes[devices[name]["site"]] = site_sizes.get(devices[name]["site"], 0) + 1
    cap = policy["site_cap"]
    in_wave = {}  # (site, wave) -> devices already placed
    for name, wave in wave_of.items():
        key = (devices[name]["site"], wave)
        in_wave[key] = in_wave.get(key, 0) + 1
    for name in rest:
        site = devices[name]["site"]
        limit = max(1, int(cap * site_sizes[site]))
        wave = next(w for w, share in shares if scores[name] < share) if shares else next_wave
        # A binding cap pushes the device (highest scores come last) to the next wave with room, past the
        # planned waves if need be: a wave never takes more than the cap of any site.
        while cap < 1.0 and in_wave.get((site, wave), 0) >= limit:
            wave += 1
        in_wave[(site, wave)] = in_wave.get((site, wave), 0) + 1
        wave_of[name] = wave
    return wave_of
