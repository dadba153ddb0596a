# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""VMs declared in a release manifest (``vms:``) -> the generation's VM specs and health checks.

Pure functions, used by the workloads role's filter. Every error names the key (``vms.inspector.memory``). As for
containers, limits cannot be left out: vCPUs and memory are required and the memory is capped by a memtune hard
limit (the guest's memory plus QEMU's own); the base image and boot files are named with their sha256. The device
(edgeops.fleet.vms, the generations core) supplies the paths, the overlay, the seed and checks the budget.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
from xml.sax.saxutils import escape, quoteattr

VM_KEYS = ("vcpus", "cpuset", "memory", "memory_hard_limit", "image", "kernel", "initrd", "cmdline", "network",
           "address", "gateway", "mac", "ports", "data_disks", "user_data", "pci", "probes")
REQUIRED_KEYS = ("vcpus", "memory", "image", "address")
DEFAULT_NETWORK = "edgeops-vms"
# QEMU's own memory beside the guest's (device model, and under TCG its translation cache), within the hard limit.
DEFAULT_OVERHEAD_MIB = 256
DOMAIN_TYPES = ("kvm", "qemu")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_SIZE_RE = re.compile(r"^([0-9]+)([mg])$")
_CIDR_RE = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3})/(\d{1,2})$")
_IP_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_MAC_RE = re.compile(r"^52:54:00(?::[0-9a-f]{2}){3}$")
_PORT_RE = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")
_PCI_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")
_NET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VmError(ValueError):
    """A VM declaration is refused; the message starts with the key at fault."""


def _fail(where, message):
    raise VmError("%s: %s" % (where, message))


def _mib(value, where):
    match = _SIZE_RE.match(str(value)) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        _fail(where, "must be a size such as 256m or 1g, got %r" % (value,))
    return int(match.group(1)) * (1024 if match.group(2) == "g" else 1)


def _whole(value, where, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(where, "must be a whole number from %d to %d, got %r" % (low, high, value))
    return value


def _file(value, where):
    if not isinstance(value, dict) or set(value) - {"file", "sha256"}:
        _fail(where, "must be a mapping with file (in the device's VM image directory) and sha256")
    if not isinstance(value.get("file"), str) or not _FILE_RE.match(value["file"]):
        _fail(where + ".file", "must be a file name (letters, digits, . _ + -), got %r" % (value.get("file"),))
    if not isinstance(value.get("sha256"), str) or not _SHA_RE.match(value["sha256"]):
        _fail(where + ".sha256", "is required: the image's sha256 (64 lowercase hex digits), got %r"
              % (value.get("sha256"),))
    return {"image": value["file"], "sha256": value["sha256"]}


def _ip(text):
    parts = text.split(".")
    return len(parts) == 4 and all(part.isdigit() and int(part) <= 255 for part in parts)


def _address(value, where):
    match = _CIDR_RE.match(str(value)) if isinstance(value, str) else None
    if not match or not _ip(match.group(1)) or not 8 <= int(match.group(2)) <= 30:
        _fail(where, "must be the guest's IPv4 address with its prefix, such as 192.168.150.10/24, got %r" % (value,))
    ip, prefix = match.group(1), int(match.group(2))
    number = sum(int(p) << (24 - 8 * i) for i, p in enumerate(ip.split(".")))
    network = number & ~((1 << (32 - prefix)) - 1) & 0xFFFFFFFF
    if number in (network, network | ((1 << (32 - prefix)) - 1)):
        _fail(where, "%s is the network's or broadcast address" % value)
    first = network + 1
    return ip, prefix, ".".join(str((first >> s) & 255) for s in (24, 16, 8, 0))


def default_mac(name):
    """A stable locally administered MAC (QEMU's 52:54:00 prefix) from the VM's name."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    return "52:54:00:%s:%s:%s" % (digest[0:2], digest[2:4], digest[4:6])


def _ports(value, where):
    if not isinstance(value, list):
        _fail(where, "must be a list of 'host:guest' or 'host:guest/udp'")
    out = []
    for index, item in enumerate(value):
        match = _PORT_RE.match(str(item)) if isinstance(item, (str, int)) and not isinstance(item, bool) else None
        host, guest = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        if not match or not (1 <= host <= 65535 and 1 <= guest <= 65535):
            _fail("%s[%d]" % (where, index), "must be 'host:guest' (1-65535) with an optional /tcp or /udp, got %r"
                  % (item,))
        out.append({"host": host, "guest": guest, "proto": match.group(3) or "tcp"})
    return out


def _pci(value, where):
    if not isinstance(value, list):
        _fail(where, "must be a list of PCI addresses such as 0000:03:00.0")
    out = []
    for index, item in enumerate(value):
        match = _PCI_RE.match(str(item)) if isinstance(item, str) else None
        if not match:
            _fail("%s[%d]" % (where, index), "must be a PCI address such as 0000:03:00.0, got %r" % (item,))
        out.append(match.groups())
    return out


def network_config(mac, ip, prefix, gateway):
    """cloud-init network config v2, in the one layout the collection's guest image reads as well."""
    return ("version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"%s\"\n    addresses:\n      - %s/%d\n"
            "    routes:\n      - to: default\n        via: %s\n" % (mac, ip, prefix, gateway))


def domain_template(name, vm, domain_type):
    """The domain's limits, NIC and PCI devices; the device adds name, disks, boot files and console."""
    lines = ["<domain type=%s>" % quoteattr(domain_type),
             "  <name>%s</name>" % escape(name),
             "  <memory unit='MiB'>%d</memory>" % vm["memory"],
             "  <currentMemory unit='MiB'>%d</currentMemory>" % vm["memory"],
             "  <vcpu placement='static'>%d</vcpu>" % vm["vcpus"]]
    if vm["cpuset"]:
        lines.append("  <cputune>")
        lines.extend("    <vcpupin vcpu='%d' cpuset='%d'/>" % (index, cpu) for index, cpu in enumerate(vm["cpuset"]))
        lines.append("    <emulatorpin cpuset=%s/>" % quoteattr(",".join(str(c) for c in sorted(set(vm["cpuset"])))))
        lines.append("  </cputune>")
    lines += ["  <memtune>",
              "    <hard_limit unit='MiB'>%d</hard_limit>" % vm["hard_limit"],
              "  </memtune>",
              "  <os>",
              "    <type arch='x86_64'>hvm</type>"]
    if not vm["kernel"]:
        lines.append("    <boot dev='hd'/>")
    lines += ["  </os>",
              "  <features><acpi/></features>",
              "  <on_poweroff>destroy</on_poweroff>",
              "  <on_reboot>restart</on_reboot>",
              "  <on_crash>destroy</on_crash>",
              "  <devices>",
              "    <interface type='network'>",
              "      <source network=%s/>" % quoteattr(vm["network"]),
              "      <mac address=%s/>" % quoteattr(vm["mac"]),
              "      <model type='virtio'/>",
              "    </interface>"]
    for domain, bus, slot, function in vm["pci"]:
        # managed='no': the host side (vfio-pci ids from edgeops.fleet.vms) binds it; libvirt does not rebind.
        lines += ["    <hostdev mode='subsystem' type='pci' managed='no'>",
                  "      <source><address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/></source>"
                  % (domain, bus, slot, function),
                  "    </hostdev>"]
    lines += ["    <memballoon model='none'/>", "  </devices>", "</domain>", ""]
    return "\n".join(lines)


def render_vm(name, spec, domain_type="kvm"):
    """One manifest VM -> (the generation's VM spec, its health checks, its published host ports)."""
    where = "vms.%s" % name
    if not isinstance(name, str) or not _NAME_RE.match(name):
        _fail("vms", "VM names are lowercase letters, digits, _ and - (up to 63), got %r" % (name,))
    if domain_type not in DOMAIN_TYPES:
        _fail("workloads_vm_domain_type", "must be kvm or qemu (qemu: TCG, no hardware virtualisation), got %r"
              % (domain_type,))
    if not isinstance(spec, dict):
        _fail(where, "must be a mapping (keys: %s)" % ", ".join(VM_KEYS))
    unknown = sorted(set(spec) - set(VM_KEYS), key=str)
    if unknown:
        _fail("%s.%s" % (where, unknown[0]), "unknown key (allowed: %s)" % ", ".join(VM_KEYS))
    for key in REQUIRED_KEYS:
        if key not in spec:
            _fail("%s.%s" % (where, key), "is required: a VM runs with limits (vcpus, memory), a checksummed image "
                  "and a static address")
    vm = {"vcpus": _whole(spec["vcpus"], where + ".vcpus", 1, 64), "memory": _mib(spec["memory"], where + ".memory")}
    hard = spec.get("memory_hard_limit")
    vm["hard_limit"] = _mib(hard, where + ".memory_hard_limit") if hard is not None else vm["memory"] + DEFAULT_OVERHEAD_MIB
    if vm["hard_limit"] < vm["memory"]:
        _fail(where + ".memory_hard_limit", "must be at least the guest's memory (%dm)" % vm["memory"])
    cpuset = spec.get("cpuset") or []
    if not isinstance(cpuset, list) or (cpuset and len(cpuset) != vm["vcpus"]):
        _fail(where + ".cpuset", "must list one host CPU per vCPU (%d), got %r" % (vm["vcpus"], cpuset))
    vm["cpuset"] = [_whole(cpu, "%s.cpuset[%d]" % (where, i), 0, 1023) for i, cpu in enumerate(cpuset)]
    image = _file(spec["image"], where + ".image")
    vm["kernel"] = _file(spec["kernel"], where + ".kernel") if spec.get("kernel") is not None else None
    initrd = _file(spec["initrd"], where + ".initrd") if spec.get("initrd") is not None else None
    if (initrd or spec.get("cmdline")) and not vm["kernel"]:
        _fail(where + ".kernel", "initrd and cmdline need a kernel (a direct kernel boot)")
    cmdline = spec.get("cmdline", "console=ttyS0 quiet")
    if not isinstance(cmdline, str) or len(cmdline) > 1024 or "\n" in cmdline:
        _fail(where + ".cmdline", "must be one line of kernel arguments, got %r" % (cmdline,))
    network = spec.get("network", DEFAULT_NETWORK)
    if not isinstance(network, str) or not _NET_RE.match(network):
        _fail(where + ".network", "must be the name of a libvirt network of the VM host, got %r" % (network,))
    vm["network"] = network
    ip, prefix, first = _address(spec["address"], where + ".address")
    gateway = spec.get("gateway", first)
    if not isinstance(gateway, str) or not _IP_RE.match(gateway) or not _ip(gateway):
        _fail(where + ".gateway", "must be an IPv4 address, got %r" % (gateway,))
    mac = spec.get("mac", default_mac(name))
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        _fail(where + ".mac", "must be a MAC address starting 52:54:00 (lowercase), got %r" % (mac,))
    vm["mac"] = mac
    ports = _ports(spec.get("ports") or [], where + ".ports")
    vm["pci"] = _pci(spec.get("pci") or [], where + ".pci")
    disks = spec.get("data_disks") or []
    if not isinstance(disks, list):
        _fail(where + ".data_disks", "must be a list of {name, size}")
    data_disks = []
    for index, disk in enumerate(disks):
        dwhere = "%s.data_disks[%d]" % (where, index)
        if not isinstance(disk, dict) or set(disk) != {"name", "size"} or not isinstance(disk["name"], str) \
                or not re.match(r"^[a-z][a-z0-9_-]{0,31}$", disk["name"]):
            _fail(dwhere, "must be {name: a-z 0-9 _ -, size: such as 1g}, got %r" % (disk,))
        if disk["name"] in [d["name"] for d in data_disks]:
            _fail(dwhere + ".name", "%s is listed twice" % disk["name"])
        data_disks.append({"name": disk["name"], "size_mib": _mib(disk["size"], dwhere + ".size")})
    user_data = spec.get("user_data")
    if user_data is not None and (not isinstance(user_data, str) or len(user_data) > 65536):
        _fail(where + ".user_data", "must be text (NoCloud user-data, up to 64 KiB)")
    seed = {"meta-data": "instance-id: %s\nlocal-hostname: %s\n" % (name, name),
            "network-config": network_config(mac, ip, prefix, gateway)}
    if user_data is not None:
        seed["user-data"] = user_data
    release_vm = {"domain": domain_template(name, vm, domain_type), "base": image, "data_disks": data_disks,
                  "seed": seed, "address": ip, "ports": ports}
    if vm["kernel"]:
        release_vm["boot"] = {"kernel": vm["kernel"], "initrd": initrd, "cmdline": cmdline}
    probes = spec.get("probes")
    if probes is None:
        if not ports:
            _fail(where + ".probes", "a VM needs a health probe (or a published port, which is probed by default): "
                  "its switch is gated on the guest's health")
        # Long enough for a guest to boot under TCG on a busy device (about 5 s idle).
        probes = [{"name": "port", "type": "tcp", "host": ip, "port": ports[0]["guest"], "retries": 45, "interval": 2,
                   "timeout": 3}]
    if not isinstance(probes, list) or not probes:
        _fail(where + ".probes", "must be a non-empty list of health checks (http, tcp) to the guest")
    return release_vm, probes, ports
