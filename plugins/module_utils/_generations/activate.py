# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Activation, the one code path by which switch, rollback and boot make the device run a generation (files,
our nftables table, libvirt domains, compose containers), and drift: how the device differs from one."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import tempfile

from .errors import GenerationError
from .nft import NFT_FAMILY, NFT_TABLE, nft_fingerprint, nft_replace_script, replace_script, with_script
from .state import StateDir
from .sysio import atomic_write, fsync_dir
from .vms import (DISK_FILE_RE, NFT_VM_FAMILY, NFT_VM_TABLE, SEED_FILES, defined_key, dnat_table, domain_xml,
                  hard_limit_kib, is_managed, load_vms_config, vm_key)
from .vms import paths as vm_paths


class Activation(StateDir):

    def activate(self, generation, previous):
        """Make the device run ``generation`` (None: nothing of ours). Raises GenerationError."""
        man = self.manifest(generation) if generation is not None else None
        if generation is not None:
            problems = self.integrity_problems(generation)
            if problems:
                raise GenerationError("generation %d is damaged: %s" % (generation, "; ".join(problems)))
        prev = self.manifest(previous) if previous not in (None, generation) else None
        state = self.read_state()
        state["active"] = generation
        self.write_state(state)
        started, ok = self.clock(), False
        try:
            self._apply_files(generation, man, prev)
            self._apply_nft(generation, man)
            self._apply_vms(generation, man, prev)
            self._apply_compose(generation, man)
            ok = True
        finally:
            # For the metrics (edgeops_activation_last_*): the caller holds the lock, as for "active" above.
            state = self.read_state()
            ended = self.clock()
            state["last_activation"] = {"generation": generation, "at": ended, "seconds": round(ended - started, 3),
                                        "ok": ok}
            self.write_state(state)
        self.log("activated generation %s" % generation)

    def _apply_files(self, generation, man, prev):
        wanted = dict((f["path"], f) for f in (man or {}).get("files", []))
        for path, item in sorted(wanted.items()):
            with open(os.path.join(self.gen_dir(generation), item["artifact"]), "rb") as handle:
                data = handle.read()
            mode = int(item["mode"], 8)
            try:
                with open(path, "rb") as handle:
                    same = handle.read() == data and (os.stat(path).st_mode & 0o7777) == mode
            except (IOError, OSError):
                same = False
            if not same:
                if not os.path.isdir(os.path.dirname(path)):
                    os.makedirs(os.path.dirname(path), 0o755)
                atomic_write(path, data, mode)
        for item in (prev or {}).get("files", []):
            if item["path"] not in wanted and os.path.lexists(item["path"]):
                os.unlink(item["path"])

    def _apply_nft(self, generation, man):
        nft = self.which("nft")
        if man and "nftables.nft" in man["artifacts"]:
            with open(os.path.join(self.gen_dir(generation), "nftables.nft")) as handle:
                script = nft_replace_script(handle.read())
            rc, _out, err = with_script(script, lambda path: self.run([nft or "nft", "-f", path], timeout=60), self.dir)
            if rc != 0:
                raise GenerationError("nft -f failed: %s" % err.strip(), artifact="nftables.nft")
            # nft normalises what it loads; remember its own listing to detect later drift.
            rc, out, _err = self.run([nft or "nft", "-s", "list", "table", NFT_FAMILY, NFT_TABLE], timeout=30)
            state = self.read_state()
            state["nft_applied"] = {"generation": generation, "sha256": nft_fingerprint(out) if rc == 0 else None}
            self.write_state(state)
        elif nft and self.run([nft, "list", "table", NFT_FAMILY, NFT_TABLE], timeout=30)[0] == 0:
            rc, _out, err = self.run([nft, "delete", "table", NFT_FAMILY, NFT_TABLE], timeout=30)
            if rc != 0:
                raise GenerationError("nft delete table failed: %s" % err.strip(), artifact="nftables.nft")

    def vm_specs(self, generation, man):
        """The generation's VMs: name -> spec (the domain template, and what the device supplies when managed)."""
        specs = {}
        for name in (man or {}).get("vms", []):
            base = os.path.join(self.gen_dir(generation), "vms", name)
            with open(base + ".xml") as handle:
                spec = {"domain": handle.read()}
            if os.path.exists(base + ".json"):
                with open(base + ".json") as handle:
                    spec.update(json.load(handle))
            specs[name] = spec
        return specs

    def _virsh_stop(self, virsh, name, undefine=False):
        """Stop (and undefine) a domain; one that is not running or not defined is fine, anything else raises."""
        for command in ["destroy"] + (["undefine"] if undefine else []):
            rc, out, err = self.run([virsh, command, name], timeout=120)
            text = (err or out).strip()
            if rc != 0 and not ("not running" in text or "failed to get domain" in text.lower()
                                or "Domain not found" in text):
                raise GenerationError("virsh %s %s: %s" % (command, name, text), artifact="vms")

    def _apply_vms(self, generation, man, prev):
        wanted = self.vm_specs(generation, man)
        state = self.read_state()
        applied = state.get("vms_applied") or {}
        old = sorted((set(applied) | set((prev or {}).get("vms", []))) - set(wanted))
        nft = self.which("nft")
        dnat = dnat_table(dict((n, s) for n, s in wanted.items() if is_managed(s)))
        if not wanted and not old and not (nft and self._vm_dnat_present(nft)):
            return
        host = None
        if any(is_managed(s) for s in wanted.values()):
            # Before anything changes: without it no VM of the generation can be placed.
            host = load_vms_config(self.config["vms_config"])
            if host is None:
                raise GenerationError("the generation has VMs but the device has no VM host (%s, written by "
                                      "edgeops.fleet.vms)" % self.config["vms_config"], artifact="vms")
        virsh = self.which("virsh") or "virsh"
        for name in old:
            # Disks stay: a rollback may return to them (gc removes the overlays no kept generation names).
            self._virsh_stop(virsh, name, undefine=True)
            applied.pop(name, None)
            state["vms_applied"] = applied
            self.write_state(state)
        for name, spec in sorted(wanted.items()):
            where = vm_paths(host, name, spec) if is_managed(spec) else None
            key = vm_key(spec)
            rc, out, _err = self.run([virsh, "domstate", name], timeout=60)
            status = out.strip() if rc == 0 else "undefined"
            if status == "running" and applied.get(name) == key:
                continue  # this generation did not change the VM: it keeps running on its own overlay
            # Not applied until it runs with its limit: a crash from here on finds it pending and starts it over.
            applied.pop(name, None)
            state["vms_applied"] = applied
            self.write_state(state)
            if where:
                self._vm_disks(name, spec, where)
            rc, out, _err = self.run([virsh, "domuuid", name], timeout=60)
            uuid = out.strip() if rc == 0 and out.strip() else None
            fd, path = tempfile.mkstemp(prefix=".vm-%s-" % name, suffix=".xml", dir=self.dir)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(domain_xml(name, spec, where, uuid))
                rc, out, err = self.run([virsh, "define", path], timeout=120)
            finally:
                os.unlink(path)
            if rc != 0:
                raise GenerationError("virsh define %s: %s" % (name, (err or out).strip()), artifact="vms/%s.xml" % name)
            # A domain that is active in any way (running, paused, in shutdown, suspended) keeps its old definition
            # until it stops: stop it, so that the device runs this generation's VM and not a mix.
            if status not in ("shut off", "crashed", "undefined"):
                self._virsh_stop(virsh, name)
            rc, out, err = self.run([virsh, "start", name], timeout=300)
            if rc != 0:
                raise GenerationError("virsh start %s: %s" % (name, (err or out).strip()), artifact="vms/%s.xml" % name)
            if where and where["memory_limit"] == "live":
                rc, out, err = self.run([virsh, "memtune", name, "--hard-limit", str(hard_limit_kib(spec)), "--live"],
                                        timeout=60)
                if rc != 0:
                    self._virsh_stop(virsh, name)  # never a guest without its limit
                    raise GenerationError("virsh memtune %s: %s" % (name, (err or out).strip()),
                                          artifact="vms/%s.xml" % name)
            applied[name] = key
            state["vms_applied"] = applied
            self.write_state(state)
        if nft:
            self._apply_vm_dnat(nft, dnat)

    def _vm_disks(self, name, spec, where):
        """The VM's root overlay, seed and data disks, each made under a temporary name and renamed: a power loss
        leaves either the whole file or none."""
        if not os.path.isdir(where["home"]):
            # Traversable, not listable: QEMU (libvirt-qemu, which libvirt hands each file to) opens its files by
            # path; other users see none of them (the seed holds the user-data).
            os.makedirs(where["home"], 0o711)
        qemu_img = self.which("qemu-img") or "qemu-img"

        def made(path, argv_for, what):
            if os.path.exists(path):
                return
            tmp = path + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            for argv in argv_for(tmp):
                rc, out, err = self.run(argv, timeout=300)
                if rc != 0:
                    raise GenerationError("vm %s: %s: %s" % (name, what, (err or out).strip()), artifact="vms/%s.json" % name)
            os.chmod(tmp, 0o600)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # mcopy syncs nothing: the rename must not publish a file whose data is not on disk
            finally:
                os.close(fd)
            os.rename(tmp, path)

        made(where["root"], lambda tmp: [[qemu_img, "create", "-q", "-f", "qcow2", "-b", where["base"], "-F", "qcow2", tmp]],
             "root overlay")
        if where["seed"]:
            seed_dir = where["seed"] + ".d"
            shutil.rmtree(seed_dir, ignore_errors=True)
            os.makedirs(seed_dir, 0o700)
            try:
                files = []
                for file_name in SEED_FILES:
                    if file_name in spec["seed"]:
                        atomic_write(os.path.join(seed_dir, file_name), spec["seed"][file_name].encode("utf-8"), 0o600)
                        files.append(os.path.join(seed_dir, file_name))
                mkfs, mcopy = self.which("mkfs.vfat") or "mkfs.vfat", self.which("mcopy") or "mcopy"
                made(where["seed"], lambda tmp: [[mkfs, "-n", "cidata", "-C", tmp, "1024"],
                                                 [mcopy, "-i", tmp] + files + ["::"]], "NoCloud seed")
            finally:
                shutil.rmtree(seed_dir, ignore_errors=True)
        for disk, path in zip(spec["data_disks"], where["data"]):
            made(path, lambda tmp, size=disk["size_mib"]: [[qemu_img, "create", "-q", "-f", "qcow2", tmp, "%dM" % size]],
                 "data disk %s" % disk["name"])
        fsync_dir(where["home"])

    def _vm_dnat_present(self, nft):
        return self.run([nft, "list", "table", NFT_VM_FAMILY, NFT_VM_TABLE], timeout=30)[0] == 0

    def _apply_vm_dnat(self, nft, table):
        if table is None:
            if self._vm_dnat_present(nft):
                rc, _out, err = self.run([nft, "delete", "table", NFT_VM_FAMILY, NFT_VM_TABLE], timeout=30)
                if rc != 0:
                    raise GenerationError("nft delete table %s %s: %s" % (NFT_VM_FAMILY, NFT_VM_TABLE, err.strip()),
                                          artifact="vms")
            return
        script = replace_script(NFT_VM_FAMILY, NFT_VM_TABLE, table)
        rc, _out, err = with_script(script, lambda path: self.run([nft, "-f", path], timeout=60), self.dir)
        if rc != 0:
            raise GenerationError("nft -f (published ports of the VMs) failed: %s" % err.strip(), artifact="vms")

    def vm_problems(self, generation, man):
        """How the running VMs differ from the generation's."""
        specs = self.vm_specs(generation, man) if generation is not None else {}
        applied = self.read_state().get("vms_applied") or {}
        if not specs and not applied:
            return []
        virsh = self.which("virsh")
        if not virsh:
            return ["the generation has VMs but virsh is not installed"] if specs else []
        problems = []
        for name, spec in sorted(specs.items()):
            rc, out, _err = self.run([virsh, "domstate", name], timeout=60)
            if rc != 0 or out.strip() != "running":
                problems.append("vm %s is %s" % (name, out.strip() if rc == 0 else "not defined"))
            elif is_managed(spec):
                rc, out, _err = self.run([virsh, "dumpxml", name], timeout=60)
                if rc != 0 or defined_key(out) != vm_key(spec):
                    problems.append("vm %s runs another generation's definition" % name)
        for name in sorted(set(applied) - set(specs)):
            if self.run([virsh, "domstate", name], timeout=60)[0] == 0:
                problems.append("vm %s is defined but not in the generation" % name)
        return problems

    def vm_disks_unused(self, kept):
        """Overlays and seeds that no kept generation's VM names (data disks are never among them)."""
        host = load_vms_config(self.config["vms_config"])
        if host is None or not os.path.isdir(host["disk_dir"]):
            return []
        used = set()
        for generation in kept:
            for name, spec in self.vm_specs(generation, self.manifest(generation)).items():
                if is_managed(spec):
                    where = vm_paths(host, name, spec)
                    used.update(p for p in (where["root"], where["seed"]) if p)
        unused = []
        # What runs now is never removed, whatever the pointers say.
        running = set((self.read_state().get("vms_applied") or {}).items())
        for name in sorted(os.listdir(host["disk_dir"])):
            home = os.path.join(host["disk_dir"], name)
            if not os.path.isdir(home):
                continue
            for file_name in sorted(os.listdir(home)):
                path = os.path.join(home, file_name)
                key = file_name.split("-", 1)[-1].split(".", 1)[0]
                if DISK_FILE_RE.match(file_name) and os.path.isfile(path) and path not in used \
                        and (name, key) not in running:
                    unused.append(path)
        return unused

    def _compose_base(self, generation):
        gdir = self.gen_dir(generation)
        return ["docker", "compose", "-p", self.project, "--project-directory", gdir,
                "-f", os.path.join(gdir, "compose.yaml")]

    def _remove_stale_containers(self):
        """Containers of the project that were created but never started, or are dead: what a power
        loss in the middle of a container replacement leaves behind. Compose would keep them."""
        rc, out, _err = self.run(["docker", "ps", "-a", "-q", "--filter", "label=com.docker.compose.project=%s" % self.project,
                                  "--filter", "status=created", "--filter", "status=dead"], timeout=60)
        stale = out.split() if rc == 0 else []
        if stale:
            self.log("removing %d stale container(s) of project %s" % (len(stale), self.project))
            self.run(["docker", "rm", "-f"] + stale, timeout=120)

    def _apply_compose(self, generation, man):
        timeout = int(self.config["activation_timeout"])
        if man and "compose.yaml" in man["artifacts"]:
            up = self._compose_base(generation) + [
                "up", "-d", "--remove-orphans", "--pull", "never", "--wait", "--wait-timeout", str(timeout)]
            self._remove_stale_containers()
            rc, out, err = self.run(up, timeout=timeout + 60)
            if rc != 0:
                # A power loss in the middle of a container replacement leaves two containers of one
                # service (the old one restarted by its restart policy, the new one only created),
                # which then fight over published ports. Start the project over once.
                self.log("docker compose up failed (%s); removing the project's containers and retrying"
                         % (err or out).strip()[-300:])
                self.run(["docker", "compose", "-p", self.project, "down", "--remove-orphans"], timeout=timeout)
                rc, out, err = self.run(up, timeout=timeout + 60)
            if rc != 0 and "port is already allocated" in (err + out):
                # Seen after dockerd was killed (Engine 26): a docker-proxy of a container that no
                # longer exists keeps the host port. Restarting the engine drops it.
                self.log("a stale docker-proxy holds a published port; restarting docker")
                self.run(["systemctl", "restart", "docker.service"], timeout=300)
                self._remove_stale_containers()
                rc, out, err = self.run(up, timeout=timeout + 60)
            if rc != 0:
                raise GenerationError("docker compose up failed: %s" % ((err or out).strip()[-800:]),
                                      artifact="compose.yaml")
        elif self.which("docker"):
            rc, out, _err = self.run(["docker", "ps", "-a", "-q", "--filter",
                                      "label=com.docker.compose.project=%s" % self.project], timeout=60)
            if rc == 0 and out.strip():
                rc, out, err = self.run(["docker", "compose", "-p", self.project, "down", "--remove-orphans"],
                                        timeout=timeout)
                if rc != 0:
                    raise GenerationError("docker compose down failed: %s" % (err or out).strip(),
                                          artifact="compose.yaml")

    def live_problems(self, generation):
        """How the running device differs from ``generation`` (empty: it runs exactly that one)."""
        problems = []
        man = self.manifest(generation) if generation is not None else {"files": [], "artifacts": {}}
        for item in man.get("files", []):
            with open(os.path.join(self.gen_dir(generation), item["artifact"]), "rb") as handle:
                want = handle.read()
            try:
                with open(item["path"], "rb") as handle:
                    if handle.read() != want:
                        problems.append("file %s differs" % item["path"])
            except (IOError, OSError):
                problems.append("file %s missing" % item["path"])
        nft = self.which("nft")
        if nft:
            rc, out, _err = self.run([nft, "-s", "list", "table", NFT_FAMILY, NFT_TABLE], timeout=30)
            if "nftables.nft" in man["artifacts"]:
                applied = self.read_state().get("nft_applied") or {}
                if rc != 0:
                    problems.append("nft table %s %s missing" % (NFT_FAMILY, NFT_TABLE))
                elif applied.get("generation") != generation:
                    problems.append("nft table %s %s was last applied from generation %s"
                                    % (NFT_FAMILY, NFT_TABLE, applied.get("generation")))
                elif applied.get("sha256") != nft_fingerprint(out):
                    problems.append("nft table %s %s was changed after it was applied" % (NFT_FAMILY, NFT_TABLE))
            elif rc == 0:
                problems.append("nft table %s %s present but the generation has none" % (NFT_FAMILY, NFT_TABLE))
        problems.extend(self.vm_problems(generation, man if generation is not None else None))
        if self.which("docker"):
            rc, out, err = self.run(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=%s" % self.project,
                                     "--format", "{{json .}}"], timeout=60)
            running = {}
            for line in out.splitlines():
                row = json.loads(line)
                labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
                running.setdefault(labels.get("com.docker.compose.service"), []).append(
                    (labels.get("com.docker.compose.config-hash"), row.get("State")))
            want = {}
            if "compose.yaml" in man["artifacts"]:
                rc, out, err = self.run(self._compose_base(generation) + ["config", "--hash", "*"], timeout=60)
                for line in out.splitlines():
                    parts = line.split()
                    if len(parts) == 2:
                        want[parts[0]] = parts[1]
            for service, config_hash in sorted(want.items()):
                have = running.pop(service, [])
                if not have:
                    problems.append("service %s has no container" % service)
                for got_hash, status in have:
                    if got_hash != config_hash:
                        problems.append("service %s runs another generation's definition" % service)
                    elif status != "running":
                        problems.append("service %s is %s" % (service, status))
            for service in sorted(s for s in running if s):
                problems.append("container of service %s is not in the generation" % service)
        return problems
