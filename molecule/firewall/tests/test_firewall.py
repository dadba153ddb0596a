# -*- coding: utf-8 -*-
"""Verify the firewall role on a real lab device (values from converge.yml).

site01-dev01 has the firewall, Docker with published ports 8080 (declared for the site) and 8081 (not declared),
host services on 9100 (declared for dev02) and 9101 (not declared). site01-dev02 is its peer on the site
network: it scans and connects from its own address, and from a second "management station" address.
"""

import json
import re
import subprocess
import time

import pytest
import testinfra

testinfra_hosts = ["ansible://site01-dev01"]

TABLE = "inet edgeops_firewall"
OTHER_TABLES = ("ip filter", "ip nat", "inet edgeops", "ip libvirt_network")
CONNECT = """python3 - <<'PY'
import socket
import time
src, dst, port, count = "{src}", "{dst}", {port}, {count}
ok = 0
began = time.monotonic()
for _ in range(count):
    s = socket.socket()
    s.settimeout(1.0)
    if src:
        s.bind((src, 0))
    try:
        s.connect((dst, port))
        ok += 1
    except OSError:
        pass
    finally:
        s.close()
print(ok, round(time.monotonic() - began, 1))
PY"""


@pytest.fixture(scope="module")
def peer(request):
    return testinfra.get_host("ansible://site01-dev02", ansible_inventory=request.config.option.ansible_inventory)


def lab(host):
    return json.loads(host.file("/etc/ansible/facts.d/lab.fact").content_string)


def listing(host):
    return host.check_output("nft -s list table %s" % TABLE)


def open_ports(nmap_grepable):
    ports = re.search(r"Ports: (.*?)(\t|$)", nmap_grepable, re.M)
    if not ports:
        return set()
    return {int(p.split("/")[0]) for p in ports.group(1).split(", ") if p.split("/")[1] == "open"}


def connects_timed(peer, dst, port, count=1, src=""):
    """(connections accepted, seconds the attempts took)."""
    ok, seconds = peer.check_output(CONNECT.format(src=src, dst=dst, port=port, count=count)).split()
    return int(ok), float(seconds)


def connects(peer, dst, port, count=1, src=""):
    return connects_timed(peer, dst, port, count, src)[0]


def test_table_is_default_deny_for_input_and_forward(host):
    text = listing(host)
    assert "type filter hook input priority filter; policy drop;" in text
    assert "type filter hook forward priority filter; policy drop;" in text
    assert "ct state established,related accept" in text


def test_other_tables_are_untouched(host):
    before = host.file("/root/tables-before.txt").content_string
    now = host.check_output('for t in %s; do echo "== $t"; nft -s list table $t; done'
                            % " ".join('"%s"' % t for t in OTHER_TABLES))
    assert "chain DOCKER" in now  # Docker's iptables-nft tables are there, not only our own
    assert now.strip() == before.strip()


def test_ssh_sources_and_rate_limit_rule(host, peer):
    text = listing(host)
    assert re.search(r"tcp dport 22 ct state new ip saddr @ssh_sources_v4 update @ssh_rate_v4 "
                     r"\{ ip saddr limit rate over 30/minute burst 10 packets \} drop", text), text
    sources = host.check_output("nft list set %s ssh_sources_v4" % TABLE)
    assert lab(peer)["management_station"] in sources  # edgeops_network.management
    assert lab(host)["gateway"] in sources  # the controller, through the lab's Docker gateway
    assert lab(peer)["address"] not in sources


def test_drops_are_logged_with_a_rate_limit(host):
    text = listing(host)
    for chain in ("input", "forward"):
        assert re.search(r'limit rate 10/minute( burst 5 packets)? log prefix "edgeops-fw %s drop: " level info' % chain,
                         text), text


def test_scan_from_the_peer_finds_only_the_allowed_ports(host, peer):
    target = lab(host)["address"]
    before = open_ports(peer.file("/root/scan-before.txt").content_string)
    # Before the firewall all of these answered, so the scan below can tell filtered from closed.
    assert {22, 8080, 8081, 9100, 9101} <= before, before
    scan = peer.check_output("nmap -Pn -n -sS -p- --min-rate 3000 --max-retries 1 -oG - %s", target)
    assert open_ports(scan) == {8080, 9100}, scan


def test_published_container_answers_the_peer_and_the_undeclared_one_does_not(host, peer):
    target = lab(host)["address"]
    page = peer.check_output("busybox wget -q -T 5 -O - http://%s:8080/image-name", target)
    assert page.strip() == "edgeops/sample:a"
    assert peer.run("busybox wget -q -T 3 -O - http://%s:8081/image-name", target).rc != 0
    # From the device itself (loopback and Docker's own path) the undeclared one still answers.
    assert host.check_output("busybox wget -q -T 5 -O - http://127.0.0.1:8081/image-name").strip() == "edgeops/sample:a"


def test_ssh_only_from_the_management_networks(host, peer):
    target = lab(host)["address"]
    assert connects(peer, target, 22) == 0
    assert connects(peer, target, 22, src=lab(peer)["management_station"]) == 1


def test_new_ssh_connections_are_rate_limited_per_source(host, peer):
    target = lab(host)["address"]
    station = lab(peer)["management_station"]
    accepted, seconds = connects_timed(peer, target, 22, count=25, src=station)
    # burst 10, then 30/minute refills one every 2 s while the attempts last (each dropped one waits out its 1 s
    # timeout): about 10 + seconds / 2 get through, the rest are dropped.
    assert 8 <= accepted <= 10 + int(seconds / 2) + 2 and accepted < 25, (accepted, seconds)
    assert station in host.check_output("nft list set %s ssh_rate_v4" % TABLE)
    # Another source is not affected by that one's limit (the controller, through testinfra, still gets in).
    assert host.run("true").rc == 0


def test_container_egress_and_docker_pull_through_the_firewall(host, peer):
    registry = "%s:5000" % lab(peer)["address"]
    # A container on the default bridge reaches another device (forward path, egress policy accept).
    assert host.check_output("docker run --rm edgeops/sample:a wget -q -T 5 -O - http://%s/v2/", registry).strip() == "{}"
    pulled = host.run("docker pull %s/fwtest/sample:b && docker rmi %s/fwtest/sample:b", registry, registry)
    assert pulled.rc == 0, pulled.stderr


def test_container_to_container_on_a_docker_network(host):
    page = host.check_output("docker exec fw-client wget -q -T 5 -O - http://fw-server/image-name")
    assert page.strip() == "edgeops/sample:a"


def test_boot_file_and_unit(host):
    boot = host.file("/etc/edgeops/firewall/edgeops_firewall.nft")
    assert boot.mode == 0o600 and boot.user == "root"
    assert boot.content_string.startswith("table inet edgeops_firewall {}\ndelete table inet edgeops_firewall\n")
    assert host.run("nft -c -f /etc/edgeops/firewall/edgeops_firewall.nft").rc == 0
    assert host.service("edgeops-firewall").is_enabled


def test_after_a_reboot_the_table_is_back_and_docker_still_publishes(host, peer):
    before = host.check_output("nft -s -t list table %s" % TABLE)
    container = "molecule-firewall-site01-dev01"
    subprocess.run(["docker", "restart", container], check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(["docker", "exec", container, "systemctl", "is-system-running", "--wait"],
                               capture_output=True, text=True, timeout=130, check=False).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    assert state in ("running", "degraded"), state
    after = subprocess.run(["docker", "exec", container, "nft", "-s", "-t", "list", "table", "inet", "edgeops_firewall"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == before.strip()
    target = lab(host)["address"]
    deadline = time.monotonic() + 60
    page = None
    while time.monotonic() < deadline and page is None:
        got = peer.run("busybox wget -q -T 3 -O - http://%s:8080/image-name", target)
        page = got.stdout.strip() if got.rc == 0 else None
        time.sleep(1)
    assert page == "edgeops/sample:a"
