# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The firewall role's settings, checked and normalised for its nftables template.

``firewall_spec`` takes the role's variables by name (every option of its argument spec) and returns what the
template renders: addresses split by family, ports as nft text, one entry per workload rule. A malformed value is refused
naming the variable (such as ``firewall_workload_rules[1].ports[0]``) before anything on a device changes.
Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
import shlex

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.confirm import MIN_CONFIRM_TIMEOUT

PROTOCOLS = ("tcp", "udp")
EGRESS_POLICIES = ("accept", "restrict")
PUBLISHED_POLICIES = ("declared", "all")
# How long the per-source SSH rate state is kept: at least one period of the rate.
_METER_TIMEOUT = {"second": "1m", "minute": "5m", "hour": "2h", "day": "2d"}

_RATE_RE = re.compile(r"^([1-9][0-9]{0,6})/(second|minute|hour|day)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,15}\*?$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9 _.:,=/-]{1,100}$")
_RANGE_RE = re.compile(r"^([0-9]{1,5})-([0-9]{1,5})$")
_FORBIDDEN_RULE_RE = re.compile(r"(^|\s)(include|flush|table|delete|define)(\s|$)|[;\n\r#]")


class FirewallConfigError(Exception):
    """A role variable with a value the firewall cannot use; the message names the variable."""


def _fail(var, expected, value):
    raise FirewallConfigError("%s: expected %s, got %r" % (var, expected, value))


def _as_list(value, var):
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        _fail(var, "a list", value)
    return list(value)


# Extra vars (-e key=value) arrive as strings: accept the spellings Ansible itself reads as booleans (those the role's
# argument spec, `type: bool`, let through: y and t too) and whole numbers written as digits, and nothing looser (a
# typo still fails naming the variable).
_TRUE = ("true", "yes", "on", "1", "y", "t")
_FALSE = ("false", "no", "off", "0", "n", "f")


def _bool(value, var):
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return value == 1
    if not isinstance(value, bool):
        _fail(var, "true or false", value)
    return value


def _choice(value, var, choices):
    if value not in choices:
        _fail(var, "one of %s" % ", ".join(choices), value)
    return value


def _network(value, var):
    """An address or network in nft's notation (host bits must be clear)."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not text:
        _fail(var, "an IPv4/IPv6 address or network such as 10.10.0.0/24", value)
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise FirewallConfigError("%s: expected an IPv4/IPv6 address or network such as 10.10.0.0/24, got %r (%s)"
                                      % (var, value, exc))
        raise FirewallConfigError("%s: %r has host bits set; did you mean %s?" % (var, value, loose))
    if net.num_addresses == 1:
        return net.version, str(net.network_address)
    return net.version, str(net)


def _networks(values, var, site_network=None):
    """Split a list of addresses/networks into (v4, v6); 'site' is the site network, 'any' every address."""
    v4, v6 = [], []
    for i, value in enumerate(_as_list(values, var)):
        item = "%s[%d]" % (var, i)
        if value == "any":
            v4.append("0.0.0.0/0")
            v6.append("::/0")
            continue
        if value == "site":
            if not site_network:
                raise FirewallConfigError("%s: 'site' needs the site network (edgeops_network.cidr from the fleet "
                                          "file, or firewall_site_network), which is not set" % item)
            value = site_network
        version, text = _network(value, item)
        target = v4 if version == 4 else v6
        if text not in target:
            target.append(text)
    return v4, v6


def _ports(values, var):
    out = []
    for i, value in enumerate(_as_list(values, var)):
        item = "%s[%d]" % (var, i)
        if isinstance(value, bool):
            _fail(item, "a port (1-65535) or a range such as 9000-9010", value)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            port = int(value)
            if not 1 <= port <= 65535:
                _fail(item, "a port (1-65535) or a range such as 9000-9010", value)
            text = str(port)
        else:
            match = _RANGE_RE.match(str(value).strip())
            if not match or not 1 <= int(match.group(1)) < int(match.group(2)) <= 65535:
                _fail(item, "a port (1-65535) or a range such as 9000-9010", value)
            text = "%d-%d" % (int(match.group(1)), int(match.group(2)))
        if text not in out:
            out.append(text)
    return out


def _rate(value, var):
    if not isinstance(value, str) or not _RATE_RE.match(value):
        _fail(var, "a rate such as 10/minute (per second, minute, hour or day)", value)
    return value


def _positive(value, var, top=100000):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        _fail(var, "a whole number from 1 to %d" % top, value)
    return value


def _rules(values, var):
    out = []
    for i, rule in enumerate(_as_list(values, var)):
        if not isinstance(rule, str) or not rule.strip() or _FORBIDDEN_RULE_RE.search(rule) or \
                rule.count("{") != rule.count("}"):
            raise FirewallConfigError("%s[%d]: expected one nft rule on one line (no ';', comments, unbalanced "
                                      "braces or table commands), got %r" % (var, i, rule))
        out.append(rule.strip())
    return out


def proxyjump_host(ssh_common_args):
    """The last jump host of ``-o ProxyJump=...`` or ``-J ...`` in ssh arguments (the one the device sees)."""
    if not ssh_common_args:
        return None
    try:
        words = shlex.split(str(ssh_common_args))
    except ValueError:
        return None
    jump = None
    for i, word in enumerate(words):
        if word == "-J" and i + 1 < len(words):
            jump = words[i + 1]
        elif word.startswith("-J") and len(word) > 2:
            jump = word[2:]
        elif word == "-o" and i + 1 < len(words) and words[i + 1].lower().startswith("proxyjump="):
            jump = words[i + 1].split("=", 1)[1]
        elif word.lower().startswith("-oproxyjump="):
            jump = word.split("=", 1)[1]
    if not jump or jump.lower() == "none":
        return None
    host = jump.split(",")[-1].rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else None
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host or None


def _is_address(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# The role's options this function checks (the others - timeouts, packages, persistence - are not the table's).
# Their names, types and defaults are the role's (roles/firewall/meta/argument_specs.yml): the role passes the value
# of every option of its argument spec, so an option renamed there and not here fails as missing.
OPTIONS = ("firewall_table", "firewall_state", "firewall_ssh", "firewall_ssh_port", "firewall_ssh_rate_limit",
           "firewall_ssh_rate_burst", "firewall_management_networks", "firewall_bastion_addresses",
           "firewall_bastion_from_proxyjump", "firewall_ssh_from_controller", "firewall_site_network",
           "firewall_workload_rules", "firewall_workload_interfaces", "firewall_workload_egress",
           "firewall_workload_egress_allowed", "firewall_published_ports", "firewall_allow_ping", "firewall_log_drops",
           "firewall_log_rate", "firewall_log_burst", "firewall_log_prefix", "firewall_input_extra_rules",
           "firewall_forward_extra_rules")


def _timeouts(confirm, recovery):
    """The commit-confirmed timeouts, against the one minimum the nftables module and generations share."""
    if confirm is not None and confirm != 0 and _whole(confirm) < MIN_CONFIRM_TIMEOUT:
        _fail("firewall_confirm_timeout", "0 (no confirm) or a whole number of seconds >= %d" % MIN_CONFIRM_TIMEOUT,
              confirm)
    if recovery is not None and _whole(recovery) < MIN_CONFIRM_TIMEOUT:
        _fail("firewall_recovery_timeout", "a whole number of seconds >= %d" % MIN_CONFIRM_TIMEOUT, recovery)


def _whole(value):
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def firewall_spec(options, ssh_common_args="", controller_address=""):
    """Check the firewall role's settings and return the template's description of the table.

    ``options`` maps the role's variables by name (``firewall_table``, ...) to their values, as the role has them:
    every option of its argument spec (those not in OPTIONS are ignored; null is unset). ``ssh_common_args`` is the
    host's ``ansible_ssh_common_args`` (its ProxyJump is a bastion), ``controller_address`` the address the current
    SSH session comes from (for ``firewall_ssh_from_controller``).
    """
    if not isinstance(options, dict):
        _fail("the firewall role's settings", "a mapping of its variables by name", options)
    missing = [name for name in OPTIONS if name not in options]
    if missing:
        raise FirewallConfigError("%s: missing from the firewall role's settings (the role passes every option of "
                                  "its argument spec)" % ", ".join(missing))
    get = options.get
    _timeouts(get("firewall_confirm_timeout"), get("firewall_recovery_timeout"))
    table = get("firewall_table")
    state = get("firewall_state")
    site_network = get("firewall_site_network")
    if not isinstance(table, str) or not _TABLE_RE.match(table):
        _fail("firewall_table", "a name of letters, digits and '_' (not starting with a digit)", table)
    _choice(state, "firewall_state", ("present", "absent"))
    if site_network:
        site_version, site_text = _network(site_network, "firewall_site_network")
        site_network = site_text if "/" in site_text else site_text + ("/32" if site_version == 4 else "/128")
    spec = {"table": table, "state": state, "ssh": None}

    if _bool(get("firewall_ssh"), "firewall_ssh"):
        ssh_port = _positive(get("firewall_ssh_port"), "firewall_ssh_port", 65535)
        v4, v6 = _networks(get("firewall_management_networks"), "firewall_management_networks", site_network)
        bastions = _as_list(get("firewall_bastion_addresses"), "firewall_bastion_addresses")
        if _bool(get("firewall_bastion_from_proxyjump"), "firewall_bastion_from_proxyjump"):
            jump = proxyjump_host(ssh_common_args)
            if jump and not _is_address(jump):
                raise FirewallConfigError(
                    "firewall_bastion_from_proxyjump: the bastion in ansible_ssh_common_args (ProxyJump %s) is a "
                    "name, not an address; list its address(es) in firewall_bastion_addresses, or set "
                    "firewall_bastion_from_proxyjump: false" % jump)
            if jump:
                bastions.append(jump)
        b4, b6 = _networks(bastions, "firewall_bastion_addresses")
        if _bool(get("firewall_ssh_from_controller"), "firewall_ssh_from_controller"):
            if not controller_address:
                raise FirewallConfigError("firewall_ssh_from_controller: the address this SSH session comes from is "
                                          "unknown (no SSH_CLIENT on the device)")
            c4, c6 = _networks([controller_address], "firewall_ssh_from_controller (SSH_CLIENT address)")
            b4 += c4
            b6 += c6
        sources_v4 = list(dict.fromkeys(v4 + b4))
        sources_v6 = list(dict.fromkeys(v6 + b6))
        if not sources_v4 and not sources_v6 and state == "present":
            raise FirewallConfigError(
                "firewall_management_networks: SSH would be allowed from nowhere (no management network, no bastion "
                "in firewall_bastion_addresses or the ProxyJump of ansible_ssh_common_args, "
                "firewall_ssh_from_controller false); set one of them, or firewall_ssh: false for a device without SSH")
        ssh_rate_limit = _rate(get("firewall_ssh_rate_limit"), "firewall_ssh_rate_limit")
        period = ssh_rate_limit.split("/")[1]
        spec["ssh"] = {"port": ssh_port, "sources_v4": sources_v4, "sources_v6": sources_v6, "rate": ssh_rate_limit,
                       "burst": _positive(get("firewall_ssh_rate_burst"), "firewall_ssh_rate_burst", 10000),
                       "meter_timeout": _METER_TIMEOUT[period]}

    rules = []
    names = set()
    for i, rule in enumerate(_as_list(get("firewall_workload_rules"), "firewall_workload_rules")):
        var = "firewall_workload_rules[%d]" % i
        if not isinstance(rule, dict):
            _fail(var, "a mapping with name, peers, ports and proto", rule)
        unknown = sorted(set(rule) - {"name", "peers", "ports", "proto"})
        if unknown:
            raise FirewallConfigError("%s: unknown key(s) %s (expected name, peers, ports, proto)"
                                      % (var, ", ".join(unknown)))
        name = rule.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            _fail(var + ".name", "a name of letters, digits, '_', '.' or '-'", name)
        if name in names:
            raise FirewallConfigError("%s.name: %r is used twice" % (var, name))
        names.add(name)
        p4, p6 = _networks(rule.get("peers"), var + ".peers", site_network)
        if not p4 and not p6:
            _fail(var + ".peers", "at least one network, address, 'site' or 'any'", rule.get("peers"))
        ports = _ports(rule.get("ports"), var + ".ports")
        if not ports:
            _fail(var + ".ports", "at least one port or range", rule.get("ports"))
        rules.append({"name": name, "proto": _choice(rule.get("proto", "tcp"), var + ".proto", PROTOCOLS),
                      "ports": ports, "peers_v4": p4, "peers_v6": p6})
    spec["workload_rules"] = rules

    interfaces = []
    for i, name in enumerate(_as_list(get("firewall_workload_interfaces"), "firewall_workload_interfaces")):
        if not isinstance(name, str) or not _IFNAME_RE.match(name):
            _fail("firewall_workload_interfaces[%d]" % i, "an interface name, optionally ending in '*'", name)
        interfaces.append(name)
    spec["workload_interfaces"] = interfaces
    spec["egress"] = _choice(get("firewall_workload_egress"), "firewall_workload_egress", EGRESS_POLICIES)
    allowed = []
    for i, entry in enumerate(_as_list(get("firewall_workload_egress_allowed"), "firewall_workload_egress_allowed")):
        var = "firewall_workload_egress_allowed[%d]" % i
        if not isinstance(entry, dict):
            _fail(var, "a mapping with name, networks and optionally ports and proto", entry)
        unknown = sorted(set(entry) - {"name", "networks", "ports", "proto"})
        if unknown:
            raise FirewallConfigError("%s: unknown key(s) %s (expected name, networks, ports, proto)"
                                      % (var, ", ".join(unknown)))
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            _fail(var + ".name", "a name of letters, digits, '_', '.' or '-'", name)
        n4, n6 = _networks(entry.get("networks"), var + ".networks", site_network)
        if not n4 and not n6:
            _fail(var + ".networks", "at least one network, address, 'site' or 'any'", entry.get("networks"))
        ports = _ports(entry.get("ports"), var + ".ports")
        proto = _choice(entry.get("proto", "tcp"), var + ".proto", PROTOCOLS) if ports or "proto" in entry else None
        allowed.append({"name": name, "networks_v4": n4, "networks_v6": n6, "ports": ports, "proto": proto})
    if spec["egress"] == "restrict" and not interfaces:
        raise FirewallConfigError("firewall_workload_egress: restrict needs firewall_workload_interfaces (the "
                                  "workload networks' bridges)")
    spec["egress_allowed"] = allowed
    spec["published_ports"] = _choice(get("firewall_published_ports"), "firewall_published_ports", PUBLISHED_POLICIES)
    spec["allow_ping"] = _bool(get("firewall_allow_ping"), "firewall_allow_ping")
    spec["log"] = None
    if _bool(get("firewall_log_drops"), "firewall_log_drops"):
        log_prefix = get("firewall_log_prefix")
        if not isinstance(log_prefix, str) or not _PREFIX_RE.match(log_prefix):
            _fail("firewall_log_prefix", "1-100 characters of letters, digits, space and _.:,=/-", log_prefix)
        spec["log"] = {"rate": _rate(get("firewall_log_rate"), "firewall_log_rate"),
                       "burst": _positive(get("firewall_log_burst"), "firewall_log_burst", 10000), "prefix": log_prefix}
    spec["input_extra_rules"] = _rules(get("firewall_input_extra_rules"), "firewall_input_extra_rules")
    spec["forward_extra_rules"] = _rules(get("firewall_forward_extra_rules"), "firewall_forward_extra_rules")
    return spec
