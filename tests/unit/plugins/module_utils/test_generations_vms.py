# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""VMs of a generation: the device's checks at stage, the disks and domain activation makes, and rollback.

The Store runs for real on a temporary state directory, VM host file, image directory and fake sysfs tree; only the
programs are stood in for by ``VirtHost`` (a recorder that keeps libvirt's domains and makes the files qemu-img and
mkfs.vfat would make), because a unit test has no libvirt. Real guests boot in molecule/vms.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils._generations import vms
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.errors import GenerationError
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.store import Store
from ansible_collections.edgeops.fleet.plugins.plugin_utils._workloads import render_release


class VirtHost:
    """Stands in for virsh, qemu-img, mkfs.vfat, mcopy, virt-xml-validate and nft; records every call."""

    def __init__(self):
        self.calls = []
        self.domains = {}  # name -> {"xml": text, "state": "running" | "shut off" | "paused", "uuid": text}
        self.nft = {}
        self.fail = {}  # virsh command -> stderr: that command fails (once)

    def __call__(self, argv, input_data=None, timeout=None, env=None):
        self.calls.append(list(argv))
        tool = os.path.basename(argv[0])
        if tool == "nft" and argv[1] == "-s":
            argv = argv[:1] + argv[2:]
        if tool == "virsh":
            return self.virsh(argv[1:])
        if tool == "qemu-img" and argv[1] == "info":
            with open(argv[-1]) as handle:  # what create wrote: "qcow2 create ... <size>M"
                sizes = [w[:-1] for w in handle.read().split() if w.endswith("M") and w[:-1].isdigit()]
            size = int(sizes[0]) * 1024 * 1024 if sizes else 0
            return 0, json.dumps({"virtual-size": size, "format": "qcow2"}), ""
        if tool == "qemu-img":
            with open(argv[-2] if argv[-1].endswith("M") else argv[-1], "w") as handle:
                handle.write("qcow2 %s" % " ".join(argv[1:]))
        elif tool == "mkfs.vfat":
            open(argv[argv.index("-C") + 1], "w").close()
        if tool == "nft" and argv[1] == "list":
            return (0, "", "") if (argv[3], argv[4]) in self.nft else (1, "", "No such table")
        elif tool == "nft" and argv[1] == "-f":
            with open(argv[2]) as handle:
                self.nft[(vms.NFT_VM_FAMILY, vms.NFT_VM_TABLE)] = handle.read()
        elif tool == "nft" and argv[1] == "delete":
            self.nft.pop((argv[3], argv[4]), None)
        return 0, "", ""

    def virsh(self, args):
        command, name = args[0], args[1] if len(args) > 1 else None
        if command in self.fail:
            return 1, "", self.fail.pop(command)
        if command == "define":
            with open(name) as handle:
                xml = handle.read()
            root = ET.fromstring(xml)
            dom, uuid = root.find("name").text, root.findtext("uuid")
            if dom in self.domains and uuid != self.domains[dom]["uuid"]:
                # libvirt's refusal when a definition names an existing domain without its UUID
                return 1, "", "error: operation failed: domain '%s' already exists with uuid %s" % (
                    dom, self.domains[dom]["uuid"])
            self.domains.setdefault(dom, {"state": "shut off", "uuid": uuid or "uuid-%d" % len(self.calls)})["xml"] = xml
            return 0, "Domain '%s' defined" % dom, ""
        if name not in self.domains:
            return 1, "", "error: failed to get domain '%s'" % name
        if command == "domstate":
            return 0, self.domains[name]["state"] + "\n", ""
        if command == "domuuid":
            return 0, self.domains[name]["uuid"] + "\n", ""
        if command == "start":
            if self.domains[name]["state"] != "shut off":
                return 1, "", "error: Requested operation is not valid: domain is already running"
            self.domains[name]["state"] = "running"
        elif command == "destroy":
            self.domains[name]["state"] = "shut off"
        elif command == "undefine":
            del self.domains[name]
        elif command == "dumpxml":
            return 0, self.domains[name]["xml"], ""
        return 0, "", ""

    def ran(self, *words):
        return [c for c in self.calls if all(w in c for w in words)]


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def host(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    files = {"guest.qcow2": b"base image", "guest.vmlinuz": b"kernel", "guest.initrd": b"initrd"}
    for name, data in files.items():
        (images / name).write_bytes(data)
    config = tmp_path / "vms.json"
    config.write_text(json.dumps({"budget": {"vcpus": 2, "memory_mib": 1024}, "image_dir": str(images),
                                  "disk_dir": str(tmp_path / "disks"),
                                  "networks": {"edgeops-vms": {"bridge": "virbr-edgeops", "address": "192.168.150.1",
                                                               "prefix": 24}}}))
    virt = VirtHost()
    store = Store({"state_dir": str(tmp_path / "state"), "vms_config": str(config), "sysfs": str(tmp_path / "sys")},
                  runner=virt, sleep=lambda s: None, which=lambda program: "/usr/bin/" + program)
    return {"store": store, "virt": virt, "sums": dict((n, sha(d)) for n, d in files.items()), "tmp": tmp_path,
            "images": images}


def manifest(sums, release="vm-1", user_data="#!/bin/sh\nhttpd -p 80 -h /srv/www\n", **extra):
    vm = {"vcpus": 1, "memory": "128m", "image": {"file": "guest.qcow2", "sha256": sums["guest.qcow2"]},
          "kernel": {"file": "guest.vmlinuz", "sha256": sums["guest.vmlinuz"]},
          "initrd": {"file": "guest.initrd", "sha256": sums["guest.initrd"]},
          "address": "192.168.150.10/24", "ports": ["8080:80"], "data_disks": [{"name": "data", "size": "64m"}],
          "user_data": user_data}
    vm.update(extra)
    return {"release": release, "vms": {"web": vm}}


def release_of(sums, **kwargs):
    return render_release(manifest(sums, **kwargs), source="vm.yml", vm_domain_type="qemu")[0]


def where_of(store, generation):
    """Where the device keeps generation's VM web (its overlay, seed, data disks)."""
    return vms.paths(vms.load_vms_config(store.config["vms_config"]), "web",
                     store.vm_specs(generation, store.manifest(generation))["web"])


def confirmed_first(host):
    """The first release staged, switched and confirmed: where its VM lives."""
    store = host["store"]
    store.stage(release_of(host["sums"]))
    store.switch(1, 60)
    store.confirm()
    return where_of(store, 1)


# ---- pure functions ----------------------------------------------------------------------

@pytest.mark.parametrize("domain, message", [
    ("<domain type='qemu'><vcpu>1</vcpu><memory unit='MiB'>64</memory></domain>", r"needs limits"),
    ("<domain type='qemu'><vcpu>1</vcpu><memory unit='MiB'>64</memory><memtune><hard_limit unit='MiB'>32</hard_limit>"
     "</memtune></domain>", r"memtune.hard_limit: 32 MiB is below the guest's memory \(64 MiB\)"),
    ("<domain type='qemu'><vcpu>0</vcpu><memory>1</memory><memtune><hard_limit>1</hard_limit></memtune></domain>",
     r"\.vcpu: must be a whole number of at least 1"),
    ("<domain type='xen'/>", r"must be a libvirt <domain type='kvm'>"),
    ("<domain type='qemu'><vcpu>1</vcpu><memory>1</memory><memtune><hard_limit>9</hard_limit></memtune><devices>"
     "<disk device='disk'><source file='/etc/shadow'/></disk></devices></domain>", r"declares <disk>"),
    ("<domain", r"is not XML"),
])
def test_a_vm_without_limits_or_with_its_own_disks_is_refused(domain, message):
    spec = {"domain": domain, "base": {"image": "g.qcow2", "sha256": "a" * 64}}
    with pytest.raises(GenerationError, match=r"^release.vms.web.domain.*" + message):
        vms.validate_vm("web", spec)


def test_a_vm_image_without_checksum_is_refused():
    domain = "<domain type='qemu'><vcpu>1</vcpu><memory>1</memory><memtune><hard_limit>9</hard_limit></memtune></domain>"
    with pytest.raises(GenerationError, match=r"^release.vms.web.base.sha256: must be the image's sha256"):
        vms.validate_vm("web", {"domain": domain, "base": {"image": "g.qcow2"}})
    with pytest.raises(GenerationError, match=r"^release.vms.web.boot.kernel.sha256"):
        vms.validate_vm("web", {"domain": domain, "base": {"image": "g.qcow2", "sha256": "a" * 64},
                                "boot": {"kernel": {"image": "k", "sha256": "nope"}}})


def test_the_defined_domain_has_the_devices_disks_boot_files_console_and_key(host):
    spec = vms.validate_vm("web", release_of(host["sums"])["vms"]["web"])
    config = vms.load_vms_config(host["store"].config["vms_config"])
    where = vms.paths(config, "web", spec)
    root = ET.fromstring(vms.domain_xml("web", spec, where))
    disks = [(d.find("target").get("dev"), d.find("source").get("file"), d.find("readonly") is not None)
             for d in root.findall("devices/disk")]
    home = str(host["tmp"] / "disks" / "web")
    assert disks == [("vda", "%s/root-%s.qcow2" % (home, where["key"]), False),
                     ("vdb", "%s/seed-%s.img" % (home, where["key"]), True),
                     ("vdc", "%s/data-data.qcow2" % home, False)]
    assert root.find("os/kernel").text == str(host["images"] / "guest.vmlinuz")
    assert root.find("os/initrd").text == str(host["images"] / "guest.initrd")
    assert root.find("os/cmdline").text == "console=ttyS0 quiet"
    assert root.find("devices/serial/log").get("file") == home + "/console.log"
    assert root.find("memtune/hard_limit").text == "384" and root.find("vcpu").text == "1"
    assert vms.defined_key(vms.domain_xml("web", spec, where)) == where["key"] == vms.vm_key(spec)
    # A change anywhere in the VM (here its user-data) is another key: another overlay, another seed.
    other = vms.validate_vm("web", release_of(host["sums"], user_data="#!/bin/sh\nhttpd -p 81\n")["vms"]["web"])
    assert vms.vm_key(other) != where["key"]


def _pci_device(sysfs, address, driver, group, pci_class="0x030000"):
    dev = sysfs / "bus" / "pci" / "devices" / address
    dev.mkdir(parents=True)
    (dev / "class").write_text(pci_class + "\n")
    if driver:
        drv = sysfs / "bus" / "pci" / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        os.symlink(str(drv), str(dev / "driver"))
    if group is not None:
        grp = sysfs / "kernel" / "iommu_groups" / str(group) / "devices"
        grp.mkdir(parents=True, exist_ok=True)
        os.symlink(str(dev), str(grp / address))
        os.symlink(str(grp.parent), str(dev / "iommu_group"))


def test_passthrough_needs_the_device_bound_to_vfio_and_its_whole_iommu_group(tmp_path):
    sysfs = tmp_path / "sys"
    _pci_device(sysfs, "0000:03:00.0", "vfio-pci", 7)
    _pci_device(sysfs, "0000:03:00.1", "vfio-pci", 7)
    _pci_device(sysfs, "0000:00:01.0", "pcieport", 7, pci_class="0x060400")  # a bridge keeps its driver
    _pci_device(sysfs, "0000:04:00.0", "nvidia", 8)
    _pci_device(sysfs, "0000:05:00.0", "vfio-pci", 9)
    _pci_device(sysfs, "0000:05:00.1", "snd_hda_intel", 9)
    _pci_device(sysfs, "0000:06:00.0", "vfio-pci", None)
    assert vms.pci_problems(["0000:03:00.0"], str(sysfs)) == []
    assert vms.pci_problems(["0000:04:00.0"], str(sysfs)) == [
        "PCI device 0000:04:00.0 is bound to nvidia, not vfio-pci (edgeops.fleet.vms: vms_passthrough_pci_ids)"]
    assert vms.pci_problems(["0000:05:00.0"], str(sysfs)) == [
        "PCI device 0000:05:00.0 shares IOMMU group 9 with 0000:05:00.1, which is bound to snd_hda_intel: the whole "
        "group must be bound to vfio-pci"]
    assert vms.pci_problems(["0000:06:00.0"], str(sysfs)) == [
        "PCI device 0000:06:00.0 has no IOMMU group (is the IOMMU on? intel_iommu=on or amd_iommu=on)"]
    assert vms.pci_problems(["0000:09:00.0"], str(sysfs)) == ["PCI device 0000:09:00.0 does not exist on this device"]


def test_published_ports_are_dnat_rules_of_our_own_table():
    table = vms.dnat_table({"web": {"address": "192.168.150.10", "ports": [{"host": 8080, "guest": 80, "proto": "tcp"}]},
                            "plain": {"address": None, "ports": []}})
    assert table.splitlines()[0] == "table ip edgeops_vms {"
    assert 'fib daddr type local tcp dport 8080 dnat to 192.168.150.10:80 comment "vm web"' in table
    assert vms.dnat_table({"plain": {"ports": []}}) is None


# ---- staging: refused before anything on the device changes ----------------------------------

def _refused(host, release, message):
    with pytest.raises(GenerationError, match=message):
        host["store"].stage(release)
    assert not os.path.exists(host["store"].dir), "a refused stage must leave no state directory"
    assert host["virt"].domains == {}


def test_stage_refuses_an_image_that_is_missing_or_not_the_one_the_release_names(host):
    sums = dict(host["sums"])
    (host["images"] / "guest.initrd").write_bytes(b"another initrd")
    _refused(host, release_of(sums), r"release.vms.web.boot.initrd: .*guest.initrd has sha256 %s, the release names %s"
             % (sha(b"another initrd"), sums["guest.initrd"]))
    os.unlink(str(host["images"] / "guest.initrd"))
    _refused(host, release_of(sums), r"release.vms.web.boot.initrd: image .*guest.initrd is not on the device")


def test_stage_refuses_a_release_beyond_the_budget_an_unknown_network_or_a_pci_device_not_for_vfio(host):
    _refused(host, release_of(host["sums"], memory="900m"),
             r"the release's VMs may take 1156 MiB \(their memtune hard limits\), the device's budget is 1024 MiB \(.*"
             r"vms.json budget.memory_mib\)")
    _refused(host, release_of(host["sums"], network="lab"), r"release.vms.web: network lab is not one of the VM "
                                                            r"host's \(edgeops-vms\)")
    _refused(host, release_of(host["sums"], pci=["0000:03:00.0"]),
             r"release.vms.web: PCI device 0000:03:00.0 does not exist on this device")


def test_stage_refuses_vms_on_a_device_without_a_vm_host(host):
    os.unlink(host["store"].config["vms_config"])
    _refused(host, release_of(host["sums"]), r"this device has no VM host \(.*vms.json is written by edgeops.fleet.vms\)")
    host["store"].which = lambda program: None if program == "qemu-img" else "/usr/bin/" + program
    _refused(host, release_of(host["sums"]), r"qemu-img \(Debian package qemu-utils\) is not installed")


def test_stage_validates_the_domain_the_device_will_define(host):
    host["store"].stage(release_of(host["sums"]))
    validated = host["virt"].ran("/usr/bin/virt-xml-validate")
    assert len(validated) == 1 and validated[0][1].endswith("web.defined.xml")
    assert host["virt"].domains == {}, "staging defines nothing"


# ---- activation, rollback, gc ---------------------------------------------------------------

def test_switch_makes_the_overlay_seed_and_data_disk_then_defines_and_starts_the_vm(host):
    store, virt = host["store"], host["virt"]
    store.stage(release_of(host["sums"]))
    store.switch(1, 60)
    spec = store.vm_specs(1, store.manifest(1))["web"]
    config = vms.load_vms_config(store.config["vms_config"])
    where = vms.paths(config, "web", spec)
    assert virt.ran("/usr/bin/qemu-img", "create", "-b", where["base"], "-F", "qcow2", where["root"] + ".tmp")
    assert virt.ran("/usr/bin/mkfs.vfat", "-n", "cidata")
    mcopy = virt.ran("/usr/bin/mcopy")[0]
    assert [os.path.basename(p) for p in mcopy[3:-1]] == ["meta-data", "user-data", "network-config"]
    assert os.path.exists(where["root"]) and os.path.exists(where["seed"]) and os.path.exists(where["data"][0])
    assert not os.path.exists(where["seed"] + ".d"), "the seed's files are not left on the device"
    assert virt.domains["web"]["state"] == "running"
    assert vms.defined_key(virt.domains["web"]["xml"]) == where["key"]
    assert "dnat to 192.168.150.10:80" in virt.nft[("ip", "edgeops_vms")]
    assert store.live_problems(1) == []


def test_a_generation_that_does_not_change_the_vm_keeps_it_running(host):
    store, virt = host["store"], host["virt"]
    release = release_of(host["sums"])
    store.stage(release)
    store.switch(1, 60)
    store.confirm()
    virt.calls[:] = []
    release["id"] = "vm-2"  # same VM, another release (say, a container changed)
    release["files"] = [{"path": str(host["tmp"] / "app.conf"), "content": "two\n"}]
    store.stage(release)
    store.switch(2, 60)
    assert not virt.ran("/usr/bin/virsh", "start") and not virt.ran("/usr/bin/virsh", "destroy")


def test_rollback_returns_to_the_previous_overlay_and_keeps_the_data_disk(host):
    store, virt = host["store"], host["virt"]
    first = confirmed_first(host)
    with open(first["data"][0], "a") as handle:
        handle.write("\nstate the guest wrote")
    store.stage(release_of(host["sums"], release="vm-2", user_data="#!/bin/sh\nexit 1\n"))
    store.switch(2, 60)
    second = where_of(store, 2)
    assert second["root"] != first["root"] and second["data"] == first["data"]
    assert vms.defined_key(virt.domains["web"]["xml"]) == second["key"]
    store.rollback(health=False)
    assert vms.defined_key(virt.domains["web"]["xml"]) == first["key"]
    assert virt.domains["web"]["state"] == "running"
    with open(first["data"][0]) as handle:
        assert handle.read().endswith("state the guest wrote"), "a data disk survives switch and rollback"
    assert store.live_problems(1) == []
    # gc keeps what kept generations boot from; once generation 2 is gone its overlay and seed go too.
    assert store.gc(1)["vm_disks_removed"] == []  # 2 is the newest: kept
    store.stage({"id": "later", "files": [{"path": str(host["tmp"] / "app.conf"), "content": "x\n"}]})
    result = store.gc(1)
    assert result["removed"] == [2]
    assert sorted(result["vm_disks_removed"]) == sorted([second["root"], second["seed"]])
    assert os.path.exists(first["root"]) and os.path.exists(first["data"][0])


def test_drift_names_a_stopped_or_redefined_vm(host):
    store, virt = host["store"], host["virt"]
    store.stage(release_of(host["sums"]))
    store.switch(1, 60)
    virt.domains["web"]["state"] = "shut off"
    assert store.live_problems(1) == ["vm web is shut off"]
    virt.domains["web"]["state"] = "running"
    virt.domains["web"]["xml"] = "<domain type='qemu'><name>web</name></domain>"
    assert store.live_problems(1) == ["vm web runs another generation's definition"]


def test_a_release_without_vms_removes_the_vm_and_its_published_ports(host):
    store, virt = host["store"], host["virt"]
    confirmed_first(host)
    store.stage({"id": "no-vms", "files": [{"path": str(host["tmp"] / "app.conf"), "content": "x\n"}]})
    store.switch(2, 60)
    assert "web" not in virt.domains and virt.nft == {}
    assert store.live_problems(2) == []


def test_where_libvirt_cannot_raise_the_locked_memory_limit_the_hard_limit_is_applied_live(host):
    store, virt = host["store"], host["virt"]
    config = json.loads(open(store.config["vms_config"]).read())
    config["memory_limit"] = "live"
    with open(store.config["vms_config"], "w") as handle:
        json.dump(config, handle)
    store.stage(release_of(host["sums"]))
    store.switch(1, 60)
    assert ET.fromstring(virt.domains["web"]["xml"]).find("memtune") is None
    start = virt.calls.index(["/usr/bin/virsh", "start", "web"])
    assert virt.calls[start + 1] == ["/usr/bin/virsh", "memtune", "web", "--hard-limit", str(384 * 1024), "--live"]
    config["memory_limit"] = "swap"
    with open(store.config["vms_config"], "w") as handle:
        json.dump(config, handle)
    with pytest.raises(GenerationError, match=r"vms.json: memory_limit must be one of definition, live, got 'swap'"):
        store.stage(release_of(host["sums"], release="vm-2"))


# ---- what the review found: refusals, crash windows, failures ---------------------------------------------------

LIMITS = "<vcpu>1</vcpu><memory unit='MiB'>64</memory><memtune><hard_limit unit='MiB'>128</hard_limit></memtune>"


@pytest.mark.parametrize("extra, message", [
    ("<devices><filesystem type='mount'><source dir='/'/><target dir='host'/></filesystem></devices>",
     r"declares <filesystem"),
    ("<devices><serial type='file'><source path='/etc/cron.d/x'/></serial></devices>", r"declares <serial type='file'>"),
    ("<devices><interface type='direct'><source dev='eth0'/></interface></devices>", r"declares <interface type='direct'>"),
    ("<devices><hostdev mode='subsystem' type='usb'/></devices>", r"declares <hostdev type='usb'>"),
    ("<devices><disk device='lun'><source dev='/dev/sda'/></disk></devices>", r"declares <disk>"),
    ("<os><type>hvm</type><kernel>/boot/vmlinuz</kernel></os>", r"sets <os><kernel>"),
    ("<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:arg value='-x'/>"
     "</qemu:commandline>", r"elements of other namespaces"),
])
def test_a_domain_template_names_only_nics_and_pci_devices(extra, message):
    spec = {"domain": "<domain type='qemu'>%s%s</domain>" % (LIMITS, extra),
            "base": {"image": "g.qcow2", "sha256": "a" * 64}}
    with pytest.raises(GenerationError, match=r"^release.vms.web.domain: .*" + message):
        vms.validate_vm("web", spec)


def test_domain_xml_alone_is_refused():
    with pytest.raises(GenerationError, match=r"^release.vms.web: must be a VM spec mapping"):
        vms.validate_vm("web", "<domain type='qemu'>%s</domain>" % LIMITS)


def test_a_vm_that_cannot_be_stopped_fails_the_switch_and_is_not_forgotten(host):
    store, virt = host["store"], host["virt"]
    confirmed_first(host)
    store.stage({"id": "no-vms", "files": [{"path": str(host["tmp"] / "app.conf"), "content": "x\n"}]})
    virt.fail["destroy"] = "error: Failed to terminate process 4242 with SIGKILL: Device or resource busy"
    result = store.switch(2, 60)
    assert result["rolled_back"] and "virsh destroy web: error: Failed to terminate process" in result["reason"]
    # The switch failed and was rolled back: the VM runs (generation 1), recorded as applied.
    assert virt.domains["web"]["state"] == "running"
    assert store.read_state()["vms_applied"] == {"web": vms.vm_key(store.vm_specs(1, store.manifest(1))["web"])}


def test_a_paused_guest_is_stopped_before_the_new_definition_starts(host):
    store, virt = host["store"], host["virt"]
    confirmed_first(host)
    virt.domains["web"]["state"] = "paused"  # libvirt pauses a guest whose disk filled up
    store.stage(release_of(host["sums"], release="vm-2", user_data="#!/bin/sh\nhttpd -p 81\n"))
    store.switch(2, 60)
    assert virt.domains["web"]["state"] == "running"
    assert vms.defined_key(virt.domains["web"]["xml"]) == vms.vm_key(store.vm_specs(2, store.manifest(2))["web"])


def test_a_crash_between_start_and_the_live_limit_is_repaired_by_the_next_activation(host):
    store, virt = host["store"], host["virt"]
    config = json.loads(open(store.config["vms_config"]).read())
    config["memory_limit"] = "live"
    with open(store.config["vms_config"], "w") as handle:
        json.dump(config, handle)
    store.stage(release_of(host["sums"]))
    store.lock()
    virt.fail["memtune"] = "error: agent killed"  # stands for the crash: the guest runs, its limit never came
    with pytest.raises(GenerationError, match=r"virsh memtune web: error: agent killed"):
        store.activate(1, None)
    assert virt.domains["web"]["state"] == "shut off", "a guest without its limit is stopped"
    assert "web" not in (store.read_state().get("vms_applied") or {})
    virt.domains["web"]["state"] = "running"  # as if the agent had died before it could stop it
    virt.calls[:] = []
    store.activate(1, None)
    assert virt.ran("/usr/bin/virsh", "memtune", "web"), "not applied: the running guest is started over with its limit"
    assert store.read_state()["vms_applied"]["web"] == vms.vm_key(store.vm_specs(1, store.manifest(1))["web"])


def test_activation_without_the_vm_host_fails_before_changing_anything(host):
    store, virt = host["store"], host["virt"]
    store.stage(release_of(host["sums"]))
    os.unlink(store.config["vms_config"])
    result = store.switch(1, 60)
    assert result["rolled_back"] and "the generation has VMs but the device has no VM host" in result["reason"]
    assert virt.domains == {}


def test_gc_leaves_what_a_power_loss_left_and_what_runs(host):
    store, virt = host["store"], host["virt"]
    where = confirmed_first(host)
    os.makedirs(where["seed"] + ".d")  # an interrupted seed build
    open(os.path.join(where["home"], "root-0123456789abcdef.qcow2.tmp"), "w").close()
    assert store.vm_disks_unused([]) == [], "the running VM's overlay and seed are never unused"
    assert oct(os.stat(where["seed"]).st_mode & 0o777) == "0o600"
    assert oct(os.stat(where["home"]).st_mode & 0o777) == "0o711"


def test_a_data_disk_is_never_resized_by_a_release(host):
    store = host["store"]
    confirmed_first(host)
    release = release_of(host["sums"], release="vm-2", data_disks=[{"name": "data", "size": "128m"}])
    with pytest.raises(GenerationError, match=r"release.vms.web.data_disks\[0\].size_mib: .*data-data.qcow2 exists with "
                                              r"64 MiB; a data disk is not resized"):
        store.stage(release)
