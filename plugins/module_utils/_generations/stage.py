# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staging: write a release as a new, immutable generation and validate it with the tools that will apply it.
Nothing that runs on the device is touched."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import tempfile

from .errors import GenerationError
from .nft import nft_replace_script, with_script
from .plans import next_generation_id
from .release import build_manifest, content_digest, render_artifacts, validate_release
from .state import StateDir
from .sysio import fsync_dir, now_iso, sha256_file
from .vms import VM_TOOLS, budget_problems, domain_xml, images_of, is_managed, load_vms_config, parse_domain, pci_problems
from .vms import paths as vm_paths


def _write_synced(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_artifacts(directory, arts):
    for rel, data in arts.items():
        path = os.path.join(directory, rel)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        _write_synced(path, data)


class Staging(StateDir):

    def find_by_digest(self, digest):
        for gen in reversed(self.generation_ids()):
            man = self.manifest(gen)
            if man and man.get("content_digest") == digest:
                return gen
        return None

    def plan_stage(self, release):
        """Validate the release's shape; return (normalised release, artifacts, id of an intact generation with the
        same content or None). Reads only: what ``stage`` decides, and check mode reports."""
        norm = validate_release(release)
        arts = render_artifacts(norm)
        existing = self.find_by_digest(content_digest(norm["id"], arts, norm["files"]))
        if existing is not None and self.integrity_problems(existing):
            existing = None  # a damaged copy is not reused: the release is staged again
        return norm, arts, existing

    def stage(self, release, pull=True):
        """Write and validate a new generation; nothing that runs is touched.

        The release is checked whole first, its artifacts with the tools that will apply them in a scratch
        directory outside the state directory: a release the device refuses leaves no trace there."""
        norm, arts, existing = self.plan_stage(release)
        images = self._checked_images(norm, arts, pull) if existing is None else None
        self.lock()
        norm, arts, existing = self.plan_stage(release)
        if existing is not None:
            return {"changed": False, "generation": existing}
        if images is None:  # the copy seen before the lock is gone (a gc ran): check now
            images = self._checked_images(norm, arts, pull)
        self.clean_partial()
        tmp = tempfile.mkdtemp(prefix=".stage-", dir=self.gen_root)
        try:
            _write_artifacts(tmp, arts)
            generation = next_generation_id(self.generation_ids())
            manifest = build_manifest(generation, norm, arts, now_iso(self.clock), images)
            _write_synced(os.path.join(tmp, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
            for root, dirs, files in os.walk(tmp):
                for name in files:
                    os.chmod(os.path.join(root, name), 0o444)
                for name in dirs:
                    fsync_dir(os.path.join(root, name))
            fsync_dir(tmp)
            os.rename(tmp, self.gen_dir(generation))
            fsync_dir(self.gen_root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        state = self.read_state()
        state["generations"][str(generation)] = {"state": "staged", "release": norm["id"],
                                                 "staged_at": manifest["created"]}
        self.write_state(state)
        return {"changed": True, "generation": generation}

    def _checked_images(self, norm, arts, pull):
        """``validate_stage`` in a scratch directory outside the state directory; returns the compose images."""
        scratch = tempfile.mkdtemp(prefix="edgeops-stage-")
        try:
            _write_artifacts(scratch, arts)
            return self.validate_stage(scratch, norm, pull)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def validate_stage(self, tmp, release, pull):
        """Check each artifact with the tool that will apply it. Returns the compose images."""
        if release["nftables"] is not None:
            nft = self.which("nft")
            if not nft:
                raise GenerationError("nftables.nft: the nft program is not installed on the device",
                                      artifact="nftables.nft")
            rc, _out, err = with_script(nft_replace_script(release["nftables"]),
                                        lambda path: self.run([nft, "-c", "-f", path], timeout=60), tmp)
            if rc != 0:
                raise GenerationError("nftables.nft does not validate (nft -c): %s" % err.strip(),
                                      artifact="nftables.nft")
        if release["vms"]:
            self._check_vms(tmp, release["vms"])
        return self._compose_images(tmp, release, pull) if release["compose"] is not None else []

    def _check_vms(self, tmp, vms):
        """Each VM as the device would define it: its tools, the VM host's budget, images and their checksums,
        networks and PCI devices, then the whole domain through virt-xml-validate."""
        tools = dict((program, self.which(program)) for program, _package in VM_TOOLS)
        for program, package in VM_TOOLS:
            if not tools[program]:
                raise GenerationError("release.vms: %s (Debian package %s) is not installed on the device; "
                                      "edgeops.fleet.vms installs the VM host" % (program, package), artifact="vms")
        managed = dict((name, spec) for name, spec in vms.items() if is_managed(spec))
        if any(spec.get("ports") for spec in managed.values()) and not self.which("nft"):
            raise GenerationError("release.vms: published ports need nft (Debian package nftables) on the device",
                                  artifact="vms")
        host = load_vms_config(self.config["vms_config"]) if managed else None
        if managed and host is None:
            raise GenerationError("release.vms: this device has no VM host (%s is written by edgeops.fleet.vms)"
                                  % self.config["vms_config"], artifact="vms")
        problems = budget_problems(managed, host, self.config["vms_config"]) if managed else []
        for name, spec in sorted(managed.items()):
            where = vm_paths(host, name, spec)
            for image, digest, key in images_of(spec):
                path = os.path.join(host["image_dir"], image)
                if not os.path.isfile(path):
                    problems.append("release.vms.%s.%s: image %s is not on the device (edgeops.fleet.vms: vms_images)"
                                    % (name, key, path))
                elif sha256_file(path) != digest:
                    problems.append("release.vms.%s.%s: %s has sha256 %s, the release names %s"
                                    % (name, key, path, sha256_file(path), digest))
            for index, (disk, path) in enumerate(zip(spec["data_disks"], where["data"])):
                # A data disk is the VM's own and never replaced: a size that differs is refused, not ignored.
                if os.path.exists(path):
                    rc, out, _err = self.run([tools["qemu-img"], "info", "--output=json", path], timeout=60)
                    try:
                        have = int(json.loads(out)["virtual-size"]) // (1024 * 1024) if rc == 0 else None
                    except (ValueError, KeyError, TypeError):
                        have = None
                    if have is not None and have != disk["size_mib"]:
                        problems.append("release.vms.%s.data_disks[%d].size_mib: %s exists with %d MiB; a data disk is "
                                        "not resized (another name makes a new one)" % (name, index, path, have))
            found = parse_domain(name, spec["domain"])
            for network in found["networks"]:
                if network not in host["networks"]:
                    problems.append("release.vms.%s: network %s is not one of the VM host's (%s)"
                                    % (name, network, ", ".join(sorted(host["networks"])) or "none"))
            problems.extend("release.vms.%s: %s" % (name, problem)
                            for problem in pci_problems(found["pci"], self.config["sysfs"]))
            if problems:
                continue
            path = os.path.join(tmp, "vms", name + ".defined.xml")
            with open(path, "w") as handle:
                handle.write(domain_xml(name, spec, where))
        if problems:
            raise GenerationError("; ".join(problems), artifact="vms")
        for name, spec in sorted(vms.items()):
            path = os.path.join(tmp, "vms", name + (".defined.xml" if name in managed else ".xml"))
            rc, out, err = self.run([tools["virt-xml-validate"], path, "domain"], timeout=60)
            if rc != 0:
                raise GenerationError("vms/%s.xml does not validate: %s" % (name, (err or out).strip()),
                                      artifact="vms/%s.xml" % name)

    def _compose_images(self, tmp, release, pull):
        """The images of the staged compose file (``docker compose config``), present or pulled."""
        rc, out, err = self.run(["docker", "compose", "-p", self.project, "--project-directory", tmp,
                                 "-f", os.path.join(tmp, "compose.yaml"), "config", "--format", "json"], timeout=120)
        if rc != 0:
            raise GenerationError("compose.yaml does not validate (docker compose config): %s" % (err or out).strip(),
                                  artifact="compose.yaml")
        images = []
        for name, service in sorted(json.loads(out).get("services", {}).items()):
            image = service.get("image")
            if not image:
                raise GenerationError("compose.yaml: service %s has no image (build is not done on devices)" % name,
                                      artifact="compose.yaml")
            if image not in images:
                images.append(image)
        for image in images:
            if self.run(["docker", "image", "inspect", image], timeout=60)[0] == 0:
                continue
            detail = "and pull is disabled"
            if pull:
                rc, out, err = self.run(["docker", "pull", "-q", image], timeout=1800)
                if rc == 0:
                    continue
                detail = "and docker pull failed: %s" % (err or out).strip()
            raise GenerationError("compose.yaml: image %s is not present on the device %s" % (image, detail),
                                  artifact="compose.yaml")
        return images

    def clean_partial(self):
        """Remove what an interrupted stage or gc left behind (never referenced by a pointer)."""
        if not os.path.isdir(self.gen_root):
            return
        for name in os.listdir(self.gen_root):
            if name.startswith(".stage-") or name.startswith(".trash-"):
                shutil.rmtree(os.path.join(self.gen_root, name), ignore_errors=True)
