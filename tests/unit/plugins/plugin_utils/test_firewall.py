# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The firewall role's settings (firewall_spec, given every option of the role's argument spec) and its table template.

The template is rendered with Jinja2 as Ansible renders it (the template's own ``#jinja2:`` options); where
``unshare --net`` works (root), the result is loaded by the real nft in a throwaway network namespace.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess

import jinja2
import pytest
import yaml

from ansible_collections.edgeops.fleet.plugins.module_utils import _nftables as n
from ansible_collections.edgeops.fleet.plugins.plugin_utils._firewall import (
    OPTIONS, FirewallConfigError, firewall_spec, proxyjump_host)

ROLE = os.path.join(os.path.dirname(n.__file__), "..", "..", "roles", "firewall")
TEMPLATE = "edgeops_firewall.nft.j2"
with open(os.path.join(ROLE, "meta", "argument_specs.yml")) as _handle:
    ROLE_OPTIONS = yaml.safe_load(_handle)["argument_specs"]["main"]["options"]


def role_spec(ssh_common_args="", controller_address="", **settings):
    """firewall_spec as the role calls it: every option of the role's argument spec, at its default unless given here
    (by its name without the firewall_ prefix); an option without a default (set from the fleet inventory's network
    facts) is null."""
    options = dict((name, option.get("default")) for name, option in ROLE_OPTIONS.items())
    for key, value in settings.items():
        assert "firewall_" + key in options, key
        options["firewall_" + key] = value
    return firewall_spec(options, ssh_common_args=ssh_common_args, controller_address=controller_address)


def render(spec):
    """Render the role's template the way Ansible does (its #jinja2 header sets trim/lstrip_blocks)."""
    with open(os.path.join(ROLE, "templates", TEMPLATE)) as handle:
        source = handle.read()
    header, body = source.split("\n", 1)
    options = dict(re.findall(r"(\w+):\s*(True|False)", header))
    env = jinja2.Environment(trim_blocks=options.get("trim_blocks") == "True",
                             lstrip_blocks=options.get("lstrip_blocks") == "True", keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    return env.from_string(body).render(__firewall_spec=spec)


FULL = dict(
    management_networks=["10.10.0.0/24", "fd00:10::/64"], site_network="10.10.0.0/24",
    ssh_common_args="-o ProxyJump=jump@203.0.113.10:2222",
    workload_rules=[{"name": "predictor", "peers": ["site", "10.99.0.7"], "ports": [8080, "9100-9102"]},
                    {"name": "discovery", "peers": ["any"], "ports": ["5353"], "proto": "udp"}],
    workload_interfaces=["docker0", "br-*", "virbr*"],
    workload_egress="restrict",
    workload_egress_allowed=[{"name": "registry", "networks": ["10.10.0.5"], "ports": [5000]},
                             {"name": "site", "networks": ["site"]}],
    input_extra_rules=["ip saddr 10.10.0.0/24 tcp dport { 9100, 9101 } accept"],
)


# ---- settings ---------------------------------------------------------------------------

def test_ssh_sources_are_management_networks_and_the_proxyjump_bastion():
    spec = role_spec(**FULL)
    assert spec["ssh"] == {"port": 22, "sources_v4": ["10.10.0.0/24", "203.0.113.10"], "sources_v6": ["fd00:10::/64"],
                           "rate": "10/minute", "burst": 5, "meter_timeout": "5m"}


def test_workload_rules_expand_site_and_any_and_split_families():
    rules = role_spec(**FULL)["workload_rules"]
    assert rules[0] == {"name": "predictor", "proto": "tcp", "ports": ["8080", "9100-9102"],
                        "peers_v4": ["10.10.0.0/24", "10.99.0.7"], "peers_v6": []}
    assert rules[1]["peers_v4"] == ["0.0.0.0/0"] and rules[1]["peers_v6"] == ["::/0"] and rules[1]["proto"] == "udp"


def test_controller_address_and_explicit_bastions():
    spec = role_spec(ssh_from_controller=True, controller_address="172.20.0.1",
                     bastion_addresses=["2001:db8::1"], bastion_from_proxyjump=False,
                     ssh_common_args="-o ProxyJump=bastion.example.net")
    assert spec["ssh"]["sources_v4"] == ["172.20.0.1"] and spec["ssh"]["sources_v6"] == ["2001:db8::1"]


def test_extra_vars_given_as_strings_are_read_like_ansible_reads_them():
    """-e firewall_ssh_from_controller=true arrives as the string 'true'; ports and bursts as digits."""
    spec = role_spec(ssh_from_controller="true", controller_address="172.20.0.1", ssh_port="2222",
                     ssh_rate_burst="7", allow_ping="no", log_drops="yes", log_burst="3")
    assert spec["ssh"]["sources_v4"] == ["172.20.0.1"] and spec["ssh"]["port"] == 2222
    assert spec["ssh"]["burst"] == 7 and spec["allow_ping"] is False and spec["log"]["burst"] == 3


def test_every_spelling_the_argument_spec_lets_through_is_read_as_it_does():
    # The role's `type: bool` accepts y/t/n/f: the filter refused them (naming the variable) after that check passed.
    spec = role_spec(allow_ping="Y", log_drops="f", ssh_from_controller=1, controller_address="172.20.0.1")
    assert spec["allow_ping"] is True and spec["log"] is None and spec["ssh"]["sources_v4"] == ["172.20.0.1"]


def test_no_ssh_at_all_needs_no_sources():
    spec = role_spec(ssh=False)
    assert spec["ssh"] is None and spec["log"]["prefix"] == "edgeops-fw"


@pytest.mark.parametrize("args, expected", [
    ("-o ProxyJump=jump@203.0.113.10:22", "203.0.113.10"),
    ("-C -o ProxyJump=a.example,ops@198.51.100.4", "198.51.100.4"),
    ("-J [2001:db8::5]:2222", "2001:db8::5"),
    ("-oProxyJump=192.0.2.1", "192.0.2.1"),
    ("-o ProxyJump=none", None),
    ("-o StrictHostKeyChecking=yes", None),
    ("", None),
])
def test_proxyjump_host_is_the_last_hop(args, expected):
    assert proxyjump_host(args) == expected


@pytest.mark.parametrize("override, message", [
    ({"management_networks": ["10.10.0.5/24"]}, r"firewall_management_networks\[0\]: '10.10.0.5/24' has host bits set; did you mean 10.10.0.0/24"),
    ({"management_networks": ["10.10.0.0/33"]}, r"firewall_management_networks\[0\]: expected an IPv4/IPv6 address"),
    ({"management_networks": [], "ssh_common_args": ""}, "SSH would be allowed from nowhere"),
    ({"ssh_common_args": "-o ProxyJump=jump.example.net"}, "firewall_bastion_from_proxyjump: .* is a name"),
    ({"ssh_from_controller": True}, "firewall_ssh_from_controller: the address this SSH session comes from is unknown"),
    ({"ssh_rate_limit": "10 per minute"}, "firewall_ssh_rate_limit: expected a rate such as 10/minute"),
    ({"ssh_port": 0}, "firewall_ssh_port: expected a whole number from 1 to 65535"),
    ({"workload_rules": [{"name": "a", "peers": ["site"], "ports": [70000]}]}, r"firewall_workload_rules\[0\].ports\[0\]"),
    ({"workload_rules": [{"name": "a", "peers": ["site"], "ports": ["9010-9000"]}]}, r"firewall_workload_rules\[0\].ports\[0\]"),
    ({"workload_rules": [{"name": "a", "peers": [], "ports": [1]}]}, r"firewall_workload_rules\[0\].peers: expected at least one"),
    ({"workload_rules": [{"name": "a", "peers": ["site"], "ports": [1], "proto": "sctp"}]}, r"\[0\].proto: expected one of tcp, udp"),
    ({"workload_rules": [{"name": "a", "peers": ["site"], "ports": [1], "port": 2}]}, r"\[0\]: unknown key\(s\) port"),
    ({"workload_rules": [{"name": "a b", "peers": ["site"], "ports": [1]}]}, r"\[0\].name"),
    ({"workload_rules": [{"name": "a", "peers": ["site"], "ports": [1]}] * 2}, r"\[1\].name: 'a' is used twice"),
    ({"workload_rules": [{"name": "a", "peers": ["site"], "ports": [1]}], "site_network": ""},
     r"firewall_workload_rules\[0\].peers\[0\]: 'site' needs the site network"),
    ({"workload_interfaces": ["docker0; flush"]}, r"firewall_workload_interfaces\[0\]"),
    ({"workload_egress": "deny"}, "firewall_workload_egress: expected one of accept, restrict"),
    ({"workload_egress_allowed": [{"name": "x", "networks": ["10.0.0.0/8"], "ports": ["a"]}]},
     r"firewall_workload_egress_allowed\[0\].ports\[0\]"),
    ({"published_ports": "some"}, "firewall_published_ports: expected one of declared, all"),
    ({"log_prefix": 'x" drop'}, "firewall_log_prefix"),
    ({"log_rate": "fast"}, "firewall_log_rate"),
    ({"allow_ping": "maybe"}, "firewall_allow_ping: expected true or false"),
    ({"ssh_rate_burst": "5x"}, "firewall_ssh_rate_burst: expected a whole number"),
    ({"input_extra_rules": ["accept; flush ruleset"]}, r"firewall_input_extra_rules\[0\]"),
    ({"forward_extra_rules": ["tcp dport { 1, 2 accept"]}, r"firewall_forward_extra_rules\[0\]"),
    ({"table": "edgeops-fw"}, "firewall_table"),
])
def test_malformed_settings_are_refused_naming_the_variable(override, message):
    settings = dict(FULL)
    settings.update(override)
    with pytest.raises(FirewallConfigError, match=message):
        role_spec(**settings)


def test_restricted_egress_needs_workload_interfaces():
    with pytest.raises(FirewallConfigError, match="restrict needs firewall_workload_interfaces"):
        role_spec(management_networks=["10.0.0.0/8"], workload_egress="restrict", workload_interfaces=[])


def test_the_options_checked_are_the_role_options_with_the_role_defaults():
    """Names, types and defaults of the role's variables are its argument spec's; defaults/main.yml sets the same."""
    assert set(OPTIONS) <= set(ROLE_OPTIONS)
    with open(os.path.join(ROLE, "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    assert set(defaults) == set(ROLE_OPTIONS)
    for name, option in ROLE_OPTIONS.items():
        if "default" in option:
            assert defaults[name] == option["default"], name
        else:  # from the fleet inventory's network facts
            assert "edgeops_network" in defaults[name], name


def test_a_missing_option_is_refused_naming_it():
    options = dict((name, option.get("default")) for name, option in ROLE_OPTIONS.items())
    del options["firewall_log_rate"]
    with pytest.raises(FirewallConfigError, match="firewall_log_rate: missing from the firewall role's settings"):
        firewall_spec(options)


# ---- rendering ----------------------------------------------------------------------------

def test_rendered_table_is_the_one_table_and_holds_the_policy():
    text = render(role_spec(**FULL))
    assert n.check_content(text, "inet", "edgeops_firewall") == text
    assert "type filter hook input priority filter; policy drop;" in text
    assert "type filter hook forward priority filter; policy drop;" in text
    assert "elements = { 10.10.0.0/24, 203.0.113.10 }" in text
    assert ("tcp dport 22 ct state new ip saddr @ssh_sources_v4 update @ssh_rate_v4 "
            "{ ip saddr limit rate over 10/minute burst 5 packets } drop") in text
    assert 'ip saddr { 10.10.0.0/24, 10.99.0.7 } tcp dport { 8080, 9100-9102 } accept comment "workload predictor"' in text
    assert 'ip6 saddr { ::/0 } udp dport { 5353 } accept comment "workload discovery"' in text
    # Published ports: one rule per port (nft lists a set of ct original proto-dst values it cannot read back).
    assert "ct status dnat meta l4proto tcp ct original proto-dst 8080 accept" in text
    assert "ct status dnat meta l4proto tcp ct original proto-dst 9100-9102 accept" in text
    assert "iifname @workload_interfaces jump workload_egress" in text
    assert 'ip daddr { 10.10.0.5 } tcp dport { 5000 } accept comment "egress registry"' in text
    assert 'log prefix "edgeops-fw input drop: "' in text and 'log prefix "edgeops-fw egress drop: "' in text
    assert "ip saddr 10.10.0.0/24 tcp dport { 9100, 9101 } accept" in text
    # Nothing for any other table.
    assert re.findall(r"^table .*$", text, re.M) == ["table inet edgeops_firewall {"]


def test_minimal_table_without_ssh_logging_or_workload_networks():
    text = render(role_spec(ssh=False, log_drops=False, allow_ping=False, workload_interfaces=[]))
    n.check_content(text, "inet", "edgeops_firewall")
    for absent in ("ssh_", "log prefix", "echo-request", "workload_interfaces", "workload_egress"):
        assert absent not in text


def test_accepting_egress_and_every_published_port():
    text = render(role_spec(management_networks=["10.0.0.0/8"], published_ports="all",
                            workload_interfaces=["docker0", "br-*"]))
    assert 'iifname @workload_interfaces accept comment "workload egress"' in text
    assert "ct status dnat oifname @workload_interfaces accept" in text
    assert "chain workload_egress" not in text


@pytest.mark.requires_tools("nft", "unshare")
@pytest.mark.requires_netns
@pytest.mark.parametrize("settings", [
    FULL,
    dict(ssh=False, log_drops=False, allow_ping=False, workload_interfaces=[]),
    dict(management_networks=["10.0.0.0/8"], published_ports="all", ssh_rate_limit="3/hour"),
])
def test_rendered_tables_load_into_nft_and_list_back_loadable(settings, tmp_path):
    script = n.replace_script("inet", "edgeops_firewall", render(role_spec(**settings)))
    proc = subprocess.run(["unshare", "--net", "sh", "-c",
                           'nft -f - && nft -s list table inet edgeops_firewall > "$0" && nft -c -f "$0"',
                           str(tmp_path / "listing.nft")],
                          input=script, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name, value", [("firewall_confirm_timeout", 9), ("firewall_confirm_timeout", "x"),
                                         ("firewall_confirm_timeout", True), ("firewall_recovery_timeout", 0)])
def test_confirm_timeouts_below_the_shared_minimum_are_refused(name, value):
    options = dict((key, option.get("default")) for key, option in ROLE_OPTIONS.items())
    options[name] = value
    with pytest.raises(FirewallConfigError, match=r"^%s: expected .*>= 10, got " % name):
        firewall_spec(options)


def test_confirm_timeout_zero_means_no_confirm():
    options = dict((key, option.get("default")) for key, option in ROLE_OPTIONS.items())
    options.update(firewall_confirm_timeout=0, firewall_management_networks=["10.0.0.0/8"])
    assert firewall_spec(options)["table"] == options["firewall_table"]
