# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet file (sites, devices, hardware profiles, rollout policy): validation and wave assignment.

Pure functions, shared by the inventory plugin and the unit tests. Every error names the file, the key and
what was expected; unknown keys are errors. load_rollout_policy() validates the ``rollout`` section on its own
(also a policy given as a playbook variable) and fills in every default.

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
_PERCENT_RE = re.compile(r"^([0-9]{1,3}(?:\.[0-9]+)?)%$")


class FleetError(ValueError):
    """The fleet file is refused; the message names the file and key."""


class _Checker(object):
    def __init__(self, source):
        self.source = source

    def fail(self, key, expected, got=None, show_got=True):
        message = "%s: %s: expected %s" % (self.source, key, expected)
        if show_got:
            message += ", got %r" % (got,)
        raise FleetError(message)

    def mapping(self, value, key, allowed, required=()):
        if not isinstance(value, dict):
            self.fail(key, "a mapping", value)
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
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
    if data.get("version", 1) != 1:
        check.fail("version", "1", data.get("version"))
    profiles = {}
    for name, spec in sorted((data.get("profiles") or {}).items()):
        key = "profiles.%s" % name
        check.name(name, key)
        spec = check.mapping(spec or {}, key, PROFILE_KEYS)
        gpus = spec.get("gpus", 0)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            check.fail(key + ".gpus", "a number of GPUs >= 0", gpus)
        profiles[name] = {"gpus": gpus, "vars": check.vars(spec.get("vars"), key + ".vars")}
    sites = {}
    if not isinstance(data["sites"], dict):
        check.fail("sites", "a mapping of site name to its settings", data["sites"])
    for name, spec in sorted(data["sites"].items()):
        key = "sites.%s" % name
        check.name(name, key)
        if name in RESERVED_GROUPS or name.startswith(GROUP_PREFIXES):
            check.fail(key, "a site name other than %s and not starting with %s (those are groups of their own)"
                       % (", ".join(RESERVED_GROUPS), ", ".join(GROUP_PREFIXES)), name)
        spec = check.mapping(spec or {}, key, SITE_KEYS)
        site = {"bastion": None, "registry": None, "network": {}, "vars": check.vars(spec.get("vars"), key + ".vars")}
        if spec.get("bastion") is not None:
            bastion = check.mapping(spec["bastion"], key + ".bastion", BASTION_KEYS, required=("host",))
            site["bastion"] = {"host": check.host(bastion["host"], key + ".bastion.host"),
                               "port": check.port(bastion.get("port", 22), key + ".bastion.port"),
                               "user": bastion.get("user")}
        if spec.get("registry") is not None:
            site["registry"] = check.host(spec["registry"], key + ".registry")
        site["network"] = check.vars(spec.get("network"), key + ".network")
        sites[name] = site
    devices = {}
    if not isinstance(data["devices"], dict) or not data["devices"]:
        check.fail("devices", "a non-empty mapping of device name to its settings", data["devices"])
    for name, spec in sorted(data["devices"].items()):
        key = "devices.%s" % name
        check.name(name, key)
        spec = check.mapping(spec, key, DEVICE_KEYS, required=("site", "address"))
        if spec["site"] not in sites:
            check.fail(key + ".site", "one of the sites (%s)" % ", ".join(sorted(sites)), spec["site"])
        profile = spec.get("profile")
        if profile is not None and profile not in profiles:
            check.fail(key + ".profile", "one of the profiles (%s)" % (", ".join(sorted(profiles)) or "none declared"),
                       profile)
        devices[name] = {
            "site": spec["site"],
            "address": check.host(spec["address"], key + ".address"),
            "port": check.port(spec.get("port", 22), key + ".port"),
            "user": spec.get("user"),
            "profile": profile,
            "tags": check.str_list(spec.get("tags", []), key + ".tags"),
            "release": spec.get("release"),
            "channel": spec.get("channel"),
            "vars": check.vars(spec.get("vars"), key + ".vars"),
        }
    return {"profiles": profiles, "sites": sites, "devices": devices,
            "rollout": load_rollout_policy(data.get("rollout"), source=source)}


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
        parsed = [(str(kind), value) for kind, value in base["waves"]]
        plan = list(base["wave_plan"])
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
    """The normalised policy with JSON types only (``waves`` as [kind, value] lists): what inventories publish."""
    out = dict(policy)
    out["waves"] = [[kind, value] for kind, value in policy["waves"]]
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
