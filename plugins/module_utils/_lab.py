# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers for the lab: the image recipes (device, minimal) and the plan of containers.

Private to the collection (leading underscore, as community.docker does); no I/O here so that
everything is unit-tested in tests/unit/.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re

# Bump when the build procedure itself (not its inputs) changes, so cached images are rebuilt.
RECIPE_FORMAT = 1

# Packages every lab device image needs to behave like a managed edge device: systemd as
# PID 1, sshd for the controller, python3 for Ansible modules, dbus for hostnamectl/timedatectl.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "ca-certificates",
)

# Run inside the debootstrapped tree (chroot) before it is imported. Each step says why.
CUSTOMIZE_SCRIPT = """set -eu
# Host keys are made per container at first boot, never shared by every device of the image.
rm -f /etc/ssh/ssh_host_*
cat > /etc/systemd/system/lab-ssh-hostkeys.service <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot (edgeops lab)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/lab-ssh-hostkeys.service /etc/systemd/system/multi-user.target.wants/
ln -sf /usr/lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ssh.service
# Units that cannot work in a container (no kernel modules, no consoles) are masked so the
# device reaches "running" instead of "degraded".
for unit in systemd-modules-load.service getty.target console-getty.service \\
            systemd-firstboot.service sys-kernel-config.mount; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
# Docker inside a device container cannot disable IPv6 on container interfaces (LAB-NOTES);
# harmless where the image has no Docker.
mkdir -p /etc/systemd/system/docker.service.d
cat > /etc/systemd/system/docker.service.d/lab-ipv6.conf <<'UNIT'
[Service]
Environment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1
UNIT
# Each container gets its own machine-id at boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
mkdir -p /root/.ssh && chmod 0700 /root/.ssh
# Package lists are kept: apt's cache_valid_time must see lists that match their age.
apt-get clean
"""

# The "minimal" variant: a small base for workload images (sample apps), python3 and CA
# certificates only. Built FROM by Dockerfiles, so it has no systemd, sshd or apt lists.
MINIMAL_PACKAGES = (
    "python3",
    "ca-certificates",
)

MINIMAL_SCRIPT = """set -eu
# Nothing in a workload image reads docs, man pages or translations; later dpkg runs skip them too.
mkdir -p /etc/dpkg/dpkg.cfg.d
cat > /etc/dpkg/dpkg.cfg.d/01-edgeops-nodoc <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
CFG
find /usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian /usr/share/linda
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Package lists and caches are useless without a reachable mirror and only add size.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f -delete
find / -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
# Each container gets its own machine-id (if anything asks).
: > /etc/machine-id
"""

# What decides an image, per variant: packages always installed, the script run in the tree
# before import, and the `docker import --change` instructions (the label is added per recipe).
VARIANTS = {
    "device": {
        "packages": BASE_PACKAGES,
        "script": CUSTOMIZE_SCRIPT,
        "changes": ('CMD ["/lib/systemd/systemd"]', "ENV container=docker"),
    },
    "minimal": {
        "packages": MINIMAL_PACKAGES,
        "script": MINIMAL_SCRIPT,
        "changes": ('CMD ["/usr/bin/python3"]', "ENV LANG=C.UTF-8", "ENV PYTHONDONTWRITEBYTECODE=1"),
    },
}

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")

MAX_DEVICES_PER_SITE = 89
# Site services on the hub, published on 127.0.0.1 at base + site*100 + slot (slots above the devices').
HUB_SERVICES = {"registry": (90, 5000), "alertmanager": (91, 9093), "prometheus": (92, 9090)}
MAX_SITES = 50


class LabPlanError(ValueError):
    """A lab setting is out of range; the message names the setting."""


def _variant(variant):
    if variant not in VARIANTS:
        raise LabPlanError("variant must be one of %s, got %r" % (", ".join(sorted(VARIANTS)), variant))
    return VARIANTS[variant]


def recipe_digest(suite, mirror, packages, script=None, variant="device"):
    """Return a short, stable digest of everything that decides the image's content.

    The device variant's recipe has exactly the keys it had before variants existed, so the
    digests (and tags) of existing device images stay the same.
    """
    spec = _variant(variant)
    recipe = {
        "format": RECIPE_FORMAT,
        "suite": suite,
        "mirror": mirror,
        "packages": sorted(set(spec["packages"]) | set(packages)),
        "script": spec["script"] if script is None else script,
    }
    if variant != "device":
        recipe["variant"] = variant
        recipe["changes"] = list(spec["changes"])
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def image_tag(repository, suite, digest):
    """The image reference a recipe builds: one tag per recipe, so a changed recipe rebuilds."""
    return "%s:%s-%s" % (repository, suite, digest)


def include_list(packages, variant="device"):
    """Packages for debootstrap --include, the variant's packages first, no duplicates."""
    merged = list(_variant(variant)["packages"])
    for pkg in packages:
        if pkg not in merged:
            merged.append(pkg)
    return ",".join(merged)


def customize_script(variant="device"):
    """The script run (chroot) in the debootstrapped tree of a variant."""
    return _variant(variant)["script"]


def recipe_family(variant, packages):
    """What makes two recipes images of the same kind (variant and package set), as a short digest.

    A build replaces (prunes) only the older images of its own family: a suite or mirror or script change
    makes the previous image stale, while an image with another package set is another image, not a stale one.
    """
    blob = json.dumps({"variant": variant, "packages": sorted(set(_variant(variant)["packages"]) | set(packages))},
                      sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def import_changes(variant, digest, family=None):
    """`docker import --change` instructions of a variant, with the family and recipe labels last."""
    family_label = ["LABEL org.edgeops.lab.family=%s" % family] if family else []
    return list(_variant(variant)["changes"]) + family_label + ["LABEL org.edgeops.lab.recipe=%s" % digest]


# Debian policy's package names; a Docker repository path (an optional registry host[:port] first); a suite.
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_REPOSITORY_RE = re.compile(r"^([A-Za-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_MIRROR_RE = re.compile(r"^(https?|file)://[^\s,]+$")


def check_recipe(repository, suite, mirror, packages, debootstrap_timeout):
    """Refuse, naming the option, what would only fail after a long debootstrap (or build something else)."""
    if not isinstance(repository, str) or not _REPOSITORY_RE.match(repository):
        raise LabPlanError("repository must be a Docker repository such as edgeops/lab-device, got %r" % (repository,))
    if not isinstance(suite, str) or not _SUITE_RE.match(suite):
        raise LabPlanError("suite must be a Debian suite such as trixie, got %r" % (suite,))
    if not isinstance(mirror, str) or not _MIRROR_RE.match(mirror):
        raise LabPlanError("mirror must be an http(s):// or file:// URL, got %r" % (mirror,))
    for index, package in enumerate(packages):
        if not isinstance(package, str) or not _PACKAGE_RE.match(package):
            raise LabPlanError("packages[%d] must be a Debian package name (one per element), got %r"
                               % (index, package))
    # `timeout 0` would wait for ever.
    _check_int("debootstrap_timeout", debootstrap_timeout, 1, 86400)


def _check_int(name, value, low, high):
    """Accept an int or a string of digits (``-e key=20`` passes a string)."""
    message = "%s must be an integer between %d and %d, got %r" % (name, low, high, value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabPlanError(message)
    if not low <= value <= high:
        raise LabPlanError(message)
    return value


def lab_plan(lab_name, sites=1, devices_per_site=3, ssh_port_base=42200, hubs=True, publish_device_ssh=True):
    """Plan the containers of a lab.

    Ports are stable per slot (site index * 100 + slot, slot 0 being the hub), so growing or
    shrinking one site never moves another host's SSH port and never recreates its container.
    With ``publish_device_ssh`` false only the hubs are published: a device then has no
    ``ssh_port`` (None) and nothing in ``published``, and is reached through its site's hub
    (a bastion) at its name on the site network.
    Returns a dict with ``hosts`` (one entry per container) and ``sites``.
    """
    if not isinstance(lab_name, str) or not _NAME_RE.match(lab_name):
        raise LabPlanError(
            "lab_name must be 1-40 lowercase letters, digits or '-', starting and ending with a "
            "letter or digit, got %r" % (lab_name,))
    sites = _check_int("lab_sites", sites, 1, MAX_SITES)
    devices_per_site = _check_int("lab_devices_per_site", devices_per_site, 0, MAX_DEVICES_PER_SITE)
    ssh_port_base = _check_int("lab_ssh_port_base", ssh_port_base, 1024, 65535)
    # A string would pass for true here ("false" included): the role converts, and anything else is refused.
    for name, value in (("lab_hubs", hubs), ("lab_publish_device_ssh", publish_device_ssh)):
        if not isinstance(value, bool):
            raise LabPlanError("%s must be true or false, got %r" % (name, value))
    if not publish_device_ssh and not hubs:
        raise LabPlanError(
            "lab_publish_device_ssh false needs lab_hubs true: unpublished devices are reached only "
            "through their site's hub")
    highest = ssh_port_base + (sites - 1) * 100 + max(slot for slot, _port in HUB_SERVICES.values())
    if highest > 65535:
        raise LabPlanError(
            "lab_ssh_port_base %d leaves no room for %d site(s): the highest port would be %d"
            % (ssh_port_base, sites, highest))

    hosts = []
    site_list = []
    for site_index in range(sites):
        site = "site%02d" % (site_index + 1)
        network = "%s-%s" % (lab_name, site)
        members = []
        slots = [(0, "hub")] if hubs else []
        slots += [(n, "device") for n in range(1, devices_per_site + 1)]
        for slot, kind in slots:
            host = "%s-hub" % site if kind == "hub" else "%s-dev%02d" % (site, slot)
            container = "%s-%s" % (lab_name, host)
            published = kind == "hub" or publish_device_ssh
            hosts.append({
                "name": host,
                "kind": kind,
                "site": site,
                "container": container,
                "network": network,
                "volume": "%s-docker" % container,
                "ssh_port": ssh_port_base + site_index * 100 + slot if published else None,
                # Site services of a hub: service -> 127.0.0.1 port the controller reaches it on.
                "service_ports": dict(
                    (service, ssh_port_base + site_index * 100 + service_slot)
                    for service, (service_slot, _port) in HUB_SERVICES.items()) if kind == "hub" else {},
                "published": (["127.0.0.1:%d:22" % (ssh_port_base + site_index * 100 + slot)] if published else []) + [
                    "127.0.0.1:%d:%d" % (ssh_port_base + site_index * 100 + service_slot, container_port)
                    for _service, (service_slot, container_port) in sorted(HUB_SERVICES.items())
                    if kind == "hub"],
            })
            members.append(host)
        site_list.append({"name": site, "network": network, "hosts": members})
    return {"lab_name": lab_name, "hosts": hosts, "sites": site_list}
