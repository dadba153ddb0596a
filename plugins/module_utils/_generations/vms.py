# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Libvirt guests of a generation (pure functions; staging checks with them, activation applies them).

A release's VM is a domain template (limits, NICs, PCI devices: rendered on the controller) and a spec of what the
device supplies: the base image and its checksum, the kernel and initrd of a direct boot, data disks, the NoCloud
seed, the guest's address and published ports. The device fills in the paths. The root disk is a qcow2 overlay of
the base image, one per VM *content* (``vm_key``): a generation that does not change a VM keeps its overlay and
its running guest, and a rollback to a generation whose VM differed returns to that generation's own overlay. Data
disks belong to the VM name and survive every switch and rollback. The device's VM host (``edgeops.fleet.vms``)
is described by ``/etc/edgeops/vms.json``: the budget, the image and disk directories, the networks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import xml.etree.ElementTree as ET

from .errors import GenerationError
from .sysio import sha256_bytes

NS = "urn:edgeops:fleet:vm"
NFT_VM_FAMILY = "ip"
NFT_VM_TABLE = "edgeops_vms"
SPEC_KEYS = ("domain", "base", "boot", "data_disks", "seed", "address", "ports")
SEED_FILES = ("meta-data", "user-data", "network-config")
VMS_CONFIG_KEYS = ("budget", "image_dir", "disk_dir", "networks", "memory_limit")
# How a VM's memtune hard limit is applied: in its definition (libvirt then also raises QEMU's locked-memory limit to
# it, which needs CAP_SYS_RESOURCE), or "live" right after start (`virsh memtune --live`: the same cgroup limit, for
# hosts without that capability, such as the lab's containers).
MEMORY_LIMIT_MODES = ("definition", "live")
# Tools a release with VMs needs on the device, by what provides them (edgeops.fleet.vms installs them all).
VM_TOOLS = (("virsh", "libvirt-clients"), ("virt-xml-validate", "libvirt-clients"), ("qemu-img", "qemu-utils"),
            ("mkfs.vfat", "dosfstools"), ("mcopy", "mtools"))

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_DISK_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_UNITS_MIB = {"b": 1.0 / 2 ** 20, "bytes": 1.0 / 2 ** 20, "k": 1.0 / 1024, "kib": 1.0 / 1024, "kb": 1000.0 / 2 ** 20,
              "m": 1, "mib": 1, "mb": 1e6 / 2 ** 20, "g": 1024, "gib": 1024, "gb": 1e9 / 2 ** 20,
              "t": 2 ** 20, "tib": 2 ** 20, "tb": 1e12 / 2 ** 20}

ET.register_namespace("edgeops", NS)


def _fail(where, message):
    raise GenerationError("%s: %s" % (where, message))


def _mib(element, where):
    """A libvirt memory element (``unit``, default KiB) in MiB."""
    unit = (element.get("unit") or "KiB").lower()
    try:
        value = int((element.text or "").strip())
    except ValueError:
        _fail(where, "must be a whole number, got %r" % (element.text,))
    if unit not in _UNITS_MIB or value <= 0:
        _fail(where, "must be a positive size with a libvirt unit, got %r %s" % (element.text, element.get("unit")))
    return int(value * _UNITS_MIB[unit])


def pci_address(element):
    """``<address domain bus slot function>`` -> ``0000:03:00.0``."""
    try:
        parts = [int(element.get(key, "0"), 0) for key in ("domain", "bus", "slot", "function")]
    except ValueError:
        raise GenerationError("hostdev address %r is not numeric" % (dict(element.attrib),))
    return "%04x:%02x:%02x.%x" % tuple(parts)


def parse_domain(name, xml):
    """What the device checks in a domain template: limits, networks, PCI devices. Raises GenerationError."""
    where = "release.vms.%s.domain" % name
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        _fail(where, "is not XML: %s" % exc)
    if root.tag != "domain" or root.get("type") not in ("kvm", "qemu"):
        _fail(where, "must be a libvirt <domain type='kvm'> or <domain type='qemu'>")
    vcpu = root.find("vcpu")
    memory = root.find("memory")
    hard = root.find("memtune/hard_limit")
    if vcpu is None or memory is None or hard is None:
        # The one rule of every workload: no VM without limits (a guest could take the device's memory otherwise).
        _fail(where, "a VM needs limits: <vcpu>, <memory> and <memtune><hard_limit>")
    try:
        vcpus = int((vcpu.text or "").strip())
    except ValueError:
        vcpus = 0
    if vcpus < 1:
        _fail(where + ".vcpu", "must be a whole number of at least 1, got %r" % (vcpu.text,))
    memory_mib = _mib(memory, where + ".memory")
    hard_mib = _mib(hard, where + ".memtune.hard_limit")
    if hard_mib < memory_mib:
        _fail(where + ".memtune.hard_limit", "%d MiB is below the guest's memory (%d MiB)" % (hard_mib, memory_mib))
    # An allow-list, not a deny-list: the device owns the disks (overlay, seed, data disks), the boot files, the
    # console; a release names only NICs on the VM host's networks and PCI devices (checked at stage).
    for element in root.iter():
        if element.tag.startswith("{") and element not in list(root.iterfind("metadata/*")):
            _fail(where, "holds <%s>: elements of other namespaces (such as qemu:commandline) are not allowed"
                  % element.tag)
    for tag in ("kernel", "initrd", "cmdline", "loader", "nvram"):
        if root.find("os/" + tag) is not None:
            _fail(where, "sets <os><%s>: boot files come from the VM's boot key, checked by sha256" % tag)
    for device in list(root.find("devices") if root.find("devices") is not None else []):
        allowed = {"interface": device.get("type") == "network",
                   "hostdev": device.get("mode", "subsystem") == "subsystem" and device.get("type") == "pci",
                   "memballoon": True}
        if not allowed.get(device.tag, False):
            _fail(where, "declares <%s%s>: a VM's devices are NICs on the VM host's networks (<interface "
                  "type='network'>) and PCI devices (<hostdev type='pci'>); disks, console and boot files are the "
                  "device's" % (device.tag, " type='%s'" % device.get("type") if device.get("type") else ""))
    networks = [src.get("network") for src in root.findall("devices/interface/source") if src.get("network")]
    pci = [pci_address(addr) for addr in root.findall("devices/hostdev/source/address")]
    return {"vcpus": vcpus, "memory_mib": memory_mib, "hard_limit_mib": hard_mib, "networks": networks, "pci": pci}


def _image(value, where):
    if not isinstance(value, dict) or set(value) - {"image", "sha256"}:
        _fail(where, "must be a mapping with image (a file of the device's VM image directory) and sha256")
    if not isinstance(value.get("image"), str) or not _IMAGE_RE.match(value["image"]):
        _fail(where + ".image", "must be a file name (letters, digits, . _ + -), got %r" % (value.get("image"),))
    if not isinstance(value.get("sha256"), str) or not _SHA_RE.match(value["sha256"]):
        # An image without a checksum is refused: what the device boots must be what the release names.
        _fail(where + ".sha256", "must be the image's sha256 (64 hex digits), got %r" % (value.get("sha256"),))
    return {"image": value["image"], "sha256": value["sha256"]}


def validate_vm(name, value):
    """``release.vms.<name>``: the mapping of SPEC_KEYS. Returns the normalised spec. Raises GenerationError naming
    the key."""
    where = "release.vms.%s" % name
    if not isinstance(value, dict):
        # Domain XML alone would bring its own disks and no checked image: refused (the device supplies those).
        _fail(where, "must be a VM spec mapping (%s), as the workloads role renders it from a manifest's vms"
              % ", ".join(SPEC_KEYS))
    unknown = sorted(set(value) - set(SPEC_KEYS), key=str)
    if unknown:
        _fail(where, "unknown key(s) %s (allowed: %s)" % (", ".join(map(str, unknown)), ", ".join(SPEC_KEYS)))
    if not isinstance(value.get("domain"), str):
        _fail(where + ".domain", "must be libvirt domain XML")
    parse_domain(name, value["domain"])
    spec = {"domain": value["domain"], "base": _image(value.get("base"), where + ".base")}
    boot = value.get("boot")
    if boot is not None:
        if not isinstance(boot, dict) or "kernel" not in boot or set(boot) - {"kernel", "initrd", "cmdline"}:
            _fail(where + ".boot", "must be a mapping with kernel, optional initrd and cmdline")
        spec["boot"] = {"kernel": _image(boot["kernel"], where + ".boot.kernel"),
                        "initrd": _image(boot["initrd"], where + ".boot.initrd") if boot.get("initrd") else None,
                        "cmdline": str(boot.get("cmdline") or "")}
    disks = value.get("data_disks") or []
    if not isinstance(disks, list):
        _fail(where + ".data_disks", "must be a list of {name, size_mib}")
    spec["data_disks"] = []
    for index, disk in enumerate(disks):
        dwhere = "%s.data_disks[%d]" % (where, index)
        if not isinstance(disk, dict) or not _DISK_RE.match(str(disk.get("name"))):
            _fail(dwhere, "must be a mapping with name (a-z, 0-9, _ -) and size_mib")
        size = disk.get("size_mib")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4 * 2 ** 20:
            _fail(dwhere + ".size_mib", "must be a whole number of MiB from 1 to 4194304, got %r" % (size,))
        if disk["name"] in [d["name"] for d in spec["data_disks"]]:
            _fail(dwhere + ".name", "%s is listed twice" % disk["name"])
        spec["data_disks"].append({"name": disk["name"], "size_mib": size})
    seed = value.get("seed")
    if seed is not None:
        if not isinstance(seed, dict) or set(seed) - set(SEED_FILES) or "meta-data" not in seed \
                or not all(isinstance(text, str) for text in seed.values()):
            _fail(where + ".seed", "must map meta-data (and optionally user-data, network-config) to their text")
        spec["seed"] = dict(seed)
    else:
        spec["seed"] = None
    address = value.get("address")
    if address is not None and not _ipv4(address):
        _fail(where + ".address", "must be the guest's IPv4 address, got %r" % (address,))
    spec["address"] = address
    ports = value.get("ports") or []
    if ports and address is None:
        _fail(where + ".ports", "published ports need the guest's address")
    spec["ports"] = []
    for index, port in enumerate(ports if isinstance(ports, list) else [None]):
        pwhere = "%s.ports[%d]" % (where, index)
        if not isinstance(port, dict) or set(port) - {"host", "guest", "proto"} \
                or not all(isinstance(port.get(k), int) and not isinstance(port.get(k), bool)
                           and 1 <= port.get(k) <= 65535 for k in ("host", "guest")) \
                or port.get("proto", "tcp") not in ("tcp", "udp"):
            _fail(pwhere, "must be {host: 1-65535, guest: 1-65535, proto: tcp|udp}, got %r" % (port,))
        spec["ports"].append({"host": port["host"], "guest": port["guest"], "proto": port.get("proto", "tcp")})
    return spec


def _ipv4(text):
    match = _IPV4_RE.match(str(text))
    return bool(match) and all(int(part) <= 255 for part in match.groups())


def is_managed(spec):
    """Whether the device builds the VM's disks (a spec), or defines domain XML as is (old releases)."""
    return "base" in spec


def vm_key(spec):
    """Identity of a VM's content: the same key, the same overlay, seed and definition."""
    return sha256_bytes(json.dumps(spec, sort_keys=True).encode("utf-8"))[:16]


def load_vms_config(path):
    """The device's VM host (written by edgeops.fleet.vms), or None when there is none."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise GenerationError("cannot read %s: %s" % (path, exc))
    except ValueError as exc:
        raise GenerationError("%s is not valid JSON: %s" % (path, exc))
    if not isinstance(data, dict) or set(data) - set(VMS_CONFIG_KEYS) or not isinstance(data.get("budget"), dict) \
            or not all(isinstance(data.get(key), str) and data[key].startswith("/") for key in ("image_dir", "disk_dir")):
        raise GenerationError("%s must hold budget, image_dir, disk_dir and networks (written by edgeops.fleet.vms)"
                              % path)
    data.setdefault("networks", {})
    data.setdefault("memory_limit", "definition")
    if data["memory_limit"] not in MEMORY_LIMIT_MODES:
        raise GenerationError("%s: memory_limit must be one of %s, got %r"
                              % (path, ", ".join(MEMORY_LIMIT_MODES), data["memory_limit"]))
    return data


def paths(config, name, spec):
    """Where the device keeps a VM's files (for its current content)."""
    home = os.path.join(config["disk_dir"], name)
    key = vm_key(spec)
    image_dir = config["image_dir"]
    boot = spec.get("boot") or {}
    return {
        "home": home,
        "key": key,
        "base": os.path.join(image_dir, spec["base"]["image"]),
        "root": os.path.join(home, "root-%s.qcow2" % key),
        "seed": os.path.join(home, "seed-%s.img" % key) if spec.get("seed") else None,
        "data": [os.path.join(home, "data-%s.qcow2" % disk["name"]) for disk in spec["data_disks"]],
        "kernel": os.path.join(image_dir, boot["kernel"]["image"]) if boot else None,
        "initrd": os.path.join(image_dir, boot["initrd"]["image"]) if boot and boot.get("initrd") else None,
        "console": os.path.join(home, "console.log"),
        "memory_limit": config.get("memory_limit", "definition"),
    }


def images_of(spec):
    """Every image file the VM reads, with its checksum: [(file name, sha256, key in the release)]."""
    out = [(spec["base"]["image"], spec["base"]["sha256"], "base")]
    boot = spec.get("boot") or {}
    if boot:
        out.append((boot["kernel"]["image"], boot["kernel"]["sha256"], "boot.kernel"))
        if boot.get("initrd"):
            out.append((boot["initrd"]["image"], boot["initrd"]["sha256"], "boot.initrd"))
    return out


def _disk(devices, source, target, fmt, readonly=False, serial=None):
    disk = ET.SubElement(devices, "disk", {"type": "file", "device": "disk"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": fmt})
    ET.SubElement(disk, "source", {"file": source})
    ET.SubElement(disk, "target", {"dev": target, "bus": "virtio"})
    if readonly:
        ET.SubElement(disk, "readonly")
    if serial:  # the guest finds a data disk by name (/dev/disk/by-id/virtio-<name>), whatever its position
        ET.SubElement(disk, "serial").text = serial


def domain_xml(name, spec, where, uuid=None):
    """The domain the device defines: the template with its name (and ``uuid``: a domain defined again must keep
    its own), boot files, disks (vda root overlay, vdb seed, then the data disks), a serial console logged to a
    file, and our key in its metadata."""
    root = ET.fromstring(spec["domain"])
    for old in root.findall("name") + (root.findall("uuid") if uuid else []):
        root.remove(old)
    ET.SubElement(root, "name").text = name
    if uuid:
        ET.SubElement(root, "uuid").text = uuid
    if not is_managed(spec):
        return ET.tostring(root, encoding="unicode")
    if where.get("memory_limit") == "live":
        for old in root.findall("memtune"):
            root.remove(old)  # applied by activation right after the start (hard_limit_kib)
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    for old in metadata.findall("{%s}vm" % NS):
        metadata.remove(old)
    ET.SubElement(metadata, "{%s}vm" % NS, {"key": where["key"]})
    osel = root.find("os")
    if osel is None:
        osel = ET.SubElement(root, "os")
        ET.SubElement(osel, "type", {"arch": "x86_64"}).text = "hvm"
    if where["kernel"]:
        for tag in ("kernel", "initrd", "cmdline"):
            for old in osel.findall(tag):
                osel.remove(old)
        ET.SubElement(osel, "kernel").text = where["kernel"]
        if where["initrd"]:
            ET.SubElement(osel, "initrd").text = where["initrd"]
        if spec["boot"]["cmdline"]:
            ET.SubElement(osel, "cmdline").text = spec["boot"]["cmdline"]
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    _disk(devices, where["root"], "vda", "qcow2")
    letters = "bcdefghijklmnopqrstuvwxyz"
    index = 0
    if where["seed"]:
        _disk(devices, where["seed"], "vd" + letters[index], "raw", readonly=True)
        index += 1
    for disk, path in zip(spec["data_disks"], where["data"]):
        _disk(devices, path, "vd" + letters[index], "qcow2", serial=disk["name"])
        index += 1
    if devices.find("serial") is None:
        serial = ET.SubElement(devices, "serial", {"type": "pty"})
        ET.SubElement(serial, "log", {"file": where["console"], "append": "off"})
        console = ET.SubElement(devices, "console", {"type": "pty"})
        ET.SubElement(console, "target", {"type": "serial", "port": "0"})
    return ET.tostring(root, encoding="unicode")


def hard_limit_kib(spec):
    """The VM's memtune hard limit in KiB (what ``virsh memtune --hard-limit`` takes)."""
    return parse_domain("vm", spec["domain"])["hard_limit_mib"] * 1024


DISK_FILE_RE = re.compile(r"^(root-[0-9a-f]{16}\.qcow2|seed-[0-9a-f]{16}\.img)$")


def defined_key(xml):
    """The key of a defined domain (``virsh dumpxml``), or None (not ours or not managed)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    found = root.find("metadata/{%s}vm" % NS)
    return found.get("key") if found is not None else None


def budget_problems(specs, config, source):
    """The release's VMs against the device's budget: [message] (empty: within it)."""
    budget = config.get("budget") or {}
    vcpus = sum(parse_domain(name, spec["domain"])["vcpus"] for name, spec in specs.items())
    memory = sum(parse_domain(name, spec["domain"])["hard_limit_mib"] for name, spec in specs.items())
    problems = []
    if vcpus > int(budget.get("vcpus", 0)):
        problems.append("the release's VMs take %d vCPU(s), the device's budget is %s (%s budget.vcpus)"
                        % (vcpus, budget.get("vcpus", 0), source))
    if memory > int(budget.get("memory_mib", 0)):
        problems.append("the release's VMs may take %d MiB (their memtune hard limits), the device's budget is %s MiB "
                        "(%s budget.memory_mib)" % (memory, budget.get("memory_mib", 0), source))
    return problems


def pci_problems(addresses, sysfs="/sys"):
    """Whether each PCI device can be passed to a guest: it exists, is bound to vfio-pci, and every other device of
    its IOMMU group is bound to vfio-pci (or pci-stub, or nothing) or is a PCI bridge. [message] (empty: fine)."""
    problems = []
    for address in addresses:
        dev = os.path.join(sysfs, "bus", "pci", "devices", address)
        if not os.path.isdir(dev):
            problems.append("PCI device %s does not exist on this device" % address)
            continue
        driver = _driver(dev)
        if driver != "vfio-pci":
            problems.append("PCI device %s is bound to %s, not vfio-pci (edgeops.fleet.vms: vms_passthrough_pci_ids)"
                            % (address, driver or "no driver"))
        group = os.path.join(dev, "iommu_group", "devices")
        if not os.path.isdir(group):
            problems.append("PCI device %s has no IOMMU group (is the IOMMU on? intel_iommu=on or amd_iommu=on)"
                            % address)
            continue
        for other in sorted(os.listdir(group)):
            if other == address:
                continue
            path = os.path.join(group, other)
            if _read(os.path.join(path, "class")).startswith("0x0604"):
                continue  # a bridge stays with its driver
            other_driver = _driver(path)
            if other_driver not in (None, "vfio-pci", "pci-stub"):
                problems.append("PCI device %s shares IOMMU group %s with %s, which is bound to %s: the whole group "
                                "must be bound to vfio-pci" % (address, os.path.basename(os.path.realpath(
                                    os.path.join(dev, "iommu_group"))), other, other_driver))
    return problems


def _driver(dev):
    link = os.path.join(dev, "driver")
    return os.path.basename(os.path.realpath(link)) if os.path.lexists(link) else None


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return ""


def dnat_table(vms):
    """Our ``ip edgeops_vms`` table: each published port of a guest DNATed from the device's own addresses, or None
    when no guest publishes one. Who may reach the port is the firewall role's (its workload rules)."""
    rules = []
    for name, spec in sorted(vms.items()):
        for port in spec.get("ports") or []:
            rules.append('\t\tfib daddr type local %s dport %d dnat to %s:%d comment "vm %s"'
                         % (port["proto"], port["host"], spec["address"], port["guest"], name))
    if not rules:
        return None
    return ("table %s %s {\n\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n%s\n"
            "\t}\n}\n" % (NFT_VM_FAMILY, NFT_VM_TABLE, "\n".join(rules)))
