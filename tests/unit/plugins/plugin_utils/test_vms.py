# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release manifest's VMs on the controller: the domain, seed and health checks rendered, and every refusal naming
the file and the key before any device is touched."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.release import validate_release
from ansible_collections.edgeops.fleet.plugins.plugin_utils._workloads import WorkloadError, render_release

SHA = "ab" * 32
VM = {"vcpus": 2, "cpuset": [1, 0], "memory": "256m", "image": {"file": "guest.qcow2", "sha256": SHA},
      "kernel": {"file": "guest.vmlinuz", "sha256": SHA}, "initrd": {"file": "guest.initrd", "sha256": SHA},
      "address": "192.168.150.10/24", "ports": ["8080:80", "5353:53/udp"], "pci": ["0000:03:00.0"],
      "data_disks": [{"name": "data", "size": "1g"}], "user_data": "#!/bin/sh\nhttpd -p 80\n"}


def render(vms, workloads=None, domain_type="qemu"):
    manifest = {"release": "r1", "vms": vms}
    if workloads is not None:
        manifest["workloads"] = workloads
    return render_release(manifest, source="vm.yml", vm_domain_type=domain_type)[0]


def test_a_vm_becomes_a_domain_with_its_limits_pinning_nic_and_pci_device():
    release = render({"inspector": VM})
    assert release["compose"] is None, "a release of VMs only has no compose file and needs no registry"
    spec = release["vms"]["inspector"]
    root = ET.fromstring(spec["domain"])
    assert root.get("type") == "qemu" and root.find("vcpu").text == "2"
    assert root.find("memory").text == "256" and root.find("memtune/hard_limit").text == "512"
    assert [(p.get("vcpu"), p.get("cpuset")) for p in root.findall("cputune/vcpupin")] == [("0", "1"), ("1", "0")]
    assert root.find("devices/interface/source").get("network") == "edgeops-vms"
    mac = root.find("devices/interface/mac").get("address")
    assert mac.startswith("52:54:00:")
    assert dict(root.find("devices/hostdev/source/address").attrib) == {
        "domain": "0x0000", "bus": "0x03", "slot": "0x00", "function": "0x0"}
    assert '      macaddress: "%s"\n    addresses:\n      - 192.168.150.10/24\n' % mac in spec["seed"]["network-config"]
    assert "via: 192.168.150.1\n" in spec["seed"]["network-config"]
    assert spec["ports"] == [{"host": 8080, "guest": 80, "proto": "tcp"}, {"host": 5353, "guest": 53, "proto": "udp"}]
    assert spec["boot"]["kernel"] == {"image": "guest.vmlinuz", "sha256": SHA}
    assert spec["data_disks"] == [{"name": "data", "size_mib": 1024}]
    # The guest's health gates the switch: a published port is probed by default, long enough for a TCG boot.
    assert release["health_checks"] == [{"name": "vm-inspector-port", "type": "tcp", "host": "192.168.150.10",
                                         "port": 80, "retries": 45, "interval": 2, "timeout": 3}]
    validate_release(release)  # what the device checks again


@pytest.mark.parametrize("change, message", [
    ({"memory": None}, r"vms.inspector.memory: is required"),
    ({"vcpus": None}, r"vms.inspector.vcpus: is required"),
    ({"vcpus": "2"}, r"vms.inspector.vcpus: must be a whole number from 1 to 64"),
    ({"image": {"file": "guest.qcow2"}}, r"vms.inspector.image.sha256: is required"),
    ({"kernel": {"file": "k", "sha256": "ABC"}}, r"vms.inspector.kernel.sha256: is required"),
    ({"memory_hard_limit": "128m"}, r"vms.inspector.memory_hard_limit: must be at least the guest's memory"),
    ({"cpuset": [0]}, r"vms.inspector.cpuset: must list one host CPU per vCPU \(2\)"),
    ({"pci": ["03:00.0"]}, r"vms.inspector.pci\[0\]: must be a PCI address such as 0000:03:00.0"),
    ({"ports": ["80"]}, r"vms.inspector.ports\[0\]: must be 'host:guest'"),
    ({"address": "192.168.150.0/24"}, r"vms.inspector.address: 192.168.150.0/24 is the network's or broadcast"),
    ({"address": "10.1.2.3"}, r"vms.inspector.address: must be the guest's IPv4 address with its prefix"),
    ({"ports": None, "probes": None}, r"vms.inspector.probes: a VM needs a health probe"),
    ({"probes": [{"type": "http"}]}, r"vms.inspector.probes\[0\].url is required for type http"),
    ({"disk": "/dev/sda"}, r"vms.inspector.disk: unknown key"),
    ({"data_disks": [{"name": "d", "size": "1g"}, {"name": "d", "size": "2g"}]},
     r"vms.inspector.data_disks\[1\].name: d is listed twice"),
    ({"mac": "00:11:22:33:44:55"}, r"vms.inspector.mac: must be a MAC address starting 52:54:00"),
])
def test_a_bad_vm_is_refused_naming_the_file_and_the_key(change, message):
    vm = copy.deepcopy(VM)
    for key, value in change.items():
        if value is None:
            vm.pop(key, None)
        else:
            vm[key] = value
    with pytest.raises(WorkloadError, match=r"^vm.yml: " + message):
        render({"inspector": vm})


def test_vms_of_one_release_cannot_share_an_address_or_a_host_port():
    other = dict(VM, mac="52:54:00:00:00:02")
    with pytest.raises(WorkloadError, match=r"^vm.yml: vms.web.address: 192.168.150.10 is also the address of VM insp"):
        render({"inspector": VM, "web": other})
    with pytest.raises(WorkloadError, match=r"^vm.yml: vms.web.ports\[0\]: host port 8080/tcp is also published by VM"):
        render({"inspector": VM, "web": dict(other, address="192.168.150.11/24")})


def test_the_domain_type_is_the_devices():
    assert ET.fromstring(render({"inspector": VM}, domain_type="kvm")["vms"]["inspector"]["domain"]).get("type") == "kvm"
    with pytest.raises(WorkloadError, match=r"workloads_vm_domain_type: must be kvm or qemu"):
        render({"inspector": VM}, domain_type="xen")


def test_a_release_needs_workloads_or_vms():
    with pytest.raises(WorkloadError, match=r"^vm.yml: workloads: must be a non-empty mapping .*or the release has vms"):
        render({})
    with pytest.raises(WorkloadError, match=r"^vm.yml: vms: must be a mapping of VM name"):
        render(["inspector"])


def test_a_vm_cannot_take_a_host_port_a_container_publishes():
    workloads = {"predictor": {"image": "edgeops/predictor", "digest": "sha256:" + "0" * 64, "cpus": 1,
                               "memory": "128m", "pids": 64, "ports": ["127.0.0.1:8080:8080"]}}
    with pytest.raises(WorkloadError, match=r"^vm.yml: vms.inspector.ports: host port 8080/tcp is also published by "
                                            r"workload predictor \(workloads.predictor.ports\[0\]\)"):
        render_release({"release": "r1", "registry": "hub:5000", "workloads": workloads, "vms": {"inspector": VM}},
                       source="vm.yml", vm_domain_type="qemu")
