# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test guest (scripts/build_guest_image.sh) and the VM of the test releases, shared by
tests/integration/test_rollout_vms.py and benchmarks/vm_switch.py (molecule/vms writes the same VM from its template)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST_ADDRESS = "192.168.150.10"


def guest_image():
    """The guest image's directory and {file: sha256} (built once, then found in the cache by its recipe)."""
    out = subprocess.run([os.path.join(REPO, "scripts", "build_guest_image.sh")], capture_output=True, text=True,
                         timeout=1200, check=False)
    if out.returncode != 0:
        raise RuntimeError("scripts/build_guest_image.sh failed: %s" % out.stderr[-3000:])
    directory = out.stdout.strip().splitlines()[-1]
    with open(os.path.join(directory, "SHA256SUMS"), encoding="utf-8") as handle:
        return directory, dict(reversed(line.split()) for line in handle if line.strip())


def vms_images(directory, sums):
    """The guest's files as edgeops.fleet.vms's vms_images."""
    return [{"name": name, "src": os.path.join(directory, name), "sha256": digest} for name, digest in sorted(sums.items())]


def guest_vm(sums, release, serve=True, retries=40, interval=2):
    """The manifest's VM: the guest serves its release id on port 80 (published as 8090), unless ``serve`` is false
    (then its health probe never passes)."""
    script = "#!/bin/sh\necho %s > /srv/www/release\n%s" % (
        release, "httpd -p 80 -h /srv/www\n" if serve else "echo 'this release serves nothing'\n")
    files = dict((key, {"file": "edgeops-guest." + ext, "sha256": sums["edgeops-guest." + ext]})
                 for key, ext in (("image", "qcow2"), ("kernel", "vmlinuz"), ("initrd", "initrd")))
    return dict(files, vcpus=1, memory="128m", address=GUEST_ADDRESS + "/24", ports=["8090:80"], user_data=script,
                probes=[{"name": "health", "type": "http", "url": "http://%s/health" % GUEST_ADDRESS, "body": "ok",
                         "retries": retries, "interval": interval, "timeout": 3}])
