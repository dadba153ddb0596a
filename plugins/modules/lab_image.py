#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lab_image
short_description: Build the lab's Debian device image, or a minimal base image, from Debian's packages
version_added: 0.1.0
description:
  - Builds a container image of a Debian system with systemd as PID 1, sshd and python3 with
    C(debootstrap) and C(docker import). Nothing is pulled from a container registry.
  - The image is tagged with a digest of its recipe (suite, mirror, packages and the
    customization script), so an unchanged recipe is never rebuilt and a changed one always is.
  - With O(variant=minimal) it builds a small base for workload images instead (python3 and CA
    certificates; docs, man pages, apt lists and caches removed), to be used in C(FROM).
  - Runs on the controller (the machine with the Docker Engine that hosts the lab), as root.
author:
  - edgeops.fleet developers (@edgeops)
attributes:
  check_mode:
    support: full
    description: Reports whether the image would be built; builds nothing. Checks the options, the build's programs
      and O(build_dir) as a build does, so it fails where a build would fail.
  diff_mode:
    support: none
    description: The image is all or nothing; there is no file content to show.
  idempotent:
    support: full
    description: An image whose tag (recipe digest) exists is not rebuilt.
options:
  repository:
    description: Image repository; the tag is C(<suite>-<recipe digest>).
    type: str
    default: edgeops/lab-device
  variant:
    description:
      - C(device) is a lab edge device (systemd as PID 1, sshd, python3, sudo, ...).
      - C(minimal) is a base for workload images (python3, ca-certificates), stripped of docs,
        man pages, apt lists and caches, with C(CMD ["/usr/bin/python3"]).
    type: str
    choices: [device, minimal]
    default: device
  suite:
    description: Debian suite to bootstrap (lowercase letters, digits and C(-)).
    type: str
    default: trixie
  mirror:
    description: Debian mirror for debootstrap, an C(http://), C(https://) or C(file://) URL.
    type: str
    default: http://deb.debian.org/debian
  packages:
    description: Packages installed on top of the variant's base set (systemd, sshd, python3, ...), one Debian
      package name per element.
    type: list
    elements: str
    default: []
  build_dir:
    description: Directory under which a temporary root file system is made (needs about 1 GiB).
    type: path
    default: /var/tmp
  debootstrap_timeout:
    description: Seconds allowed for debootstrap before the build is abandoned (1 to 86400).
    type: int
    default: 1200
  prune_stale:
    description:
      - After a build, remove the repository's other tags of the same family (images of older recipes with the
        same variant and packages, labelled C(org.edgeops.lab.family)); images with other packages are other
        images and stay, as do images built before the label existed.
      - An image still used by a container is kept (C(docker rmi) refuses it).
    type: bool
    default: true
requirements:
  - debootstrap
  - docker CLI talking to a Docker Engine
notes:
  - Building takes about one minute on a 2-core machine with a nearby mirror.
"""

EXAMPLES = r"""
- name: Build (or reuse) the lab device image
  edgeops.fleet.lab_image:
    suite: trixie
    packages: [less]
  register: lab_image

- name: Use it
  ansible.builtin.debug:
    msg: "{{ lab_image.image }}"

- name: Build (or reuse) a minimal base for workload images
  edgeops.fleet.lab_image:
    repository: edgeops/workload-base
    variant: minimal
  register: workload_base
"""

RETURN = r"""
image:
  description: Image reference (repository:tag) for this recipe.
  returned: always
  type: str
  sample: edgeops/lab-device:trixie-3f2a9c0d41b7
recipe_digest:
  description: Digest of the recipe, the last part of the tag.
  returned: always
  type: str
  sample: 3f2a9c0d41b7
image_id:
  description: Docker image id; empty in check mode when the image would be built.
  returned: always
  type: str
  sample: sha256:64080fb586f9007a6e653ccd4e233da720974c11da7f2a04f20a4881cf162908
built:
  description: Whether this run built the image.
  returned: always
  type: bool
pruned:
  description: Tags of older recipes removed after the build.
  returned: always
  type: list
  elements: str
  sample: [edgeops/lab-device:trixie-c9f7c4ea5c7c]
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.edgeops.fleet.plugins.module_utils._lab import (
    LabPlanError,
    check_recipe,
    customize_script,
    image_tag,
    import_changes,
    include_list,
    recipe_digest,
    recipe_family,
)


def _image_id(module, ref):
    rc, out, dummy = module.run_command(["docker", "image", "inspect", "--format", "{{.Id}}", ref])
    return out.strip() if rc == 0 else ""


def _build(module, ref, digest, family, workdir):
    params = module.params
    rootfs = os.path.join(workdir, "rootfs")
    cmd = ["timeout", str(params["debootstrap_timeout"]), "debootstrap", "--variant=minbase",
           "--include=" + include_list(params["packages"], params["variant"]), params["suite"], rootfs, params["mirror"]]
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="debootstrap of %s failed (rc=%d)" % (params["suite"], rc),
                         stdout=out[-4000:], stderr=err[-4000:], cmd=cmd)
    rc, out, err = module.run_command(["chroot", rootfs, "/bin/sh", "-c", customize_script(params["variant"])])
    if rc != 0:
        module.fail_json(msg="customizing the image tree failed (rc=%d)" % rc, stdout=out, stderr=err)
    tarball = os.path.join(workdir, "rootfs.tar")
    rc, out, err = module.run_command(["tar", "--numeric-owner", "-C", rootfs, "-cf", tarball, "."])
    if rc != 0:
        module.fail_json(msg="packing the image tree failed (rc=%d)" % rc, stderr=err)
    cmd = ["docker", "import"]
    for change in import_changes(params["variant"], digest, family):
        cmd += ["--change", change]
    cmd += [tarball, ref]
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="docker import failed (rc=%d)" % rc, stderr=err, cmd=cmd)


def _prune_stale(module, repository, family, keep):
    rc, out, dummy = module.run_command(["docker", "image", "ls", repository, "--filter",
                                         "label=org.edgeops.lab.family=%s" % family,
                                         "--format", "{{.Repository}}:{{.Tag}}"])
    pruned = []
    for ref in out.split() if rc == 0 else []:
        if ref != keep and module.run_command(["docker", "rmi", ref])[0] == 0:
            pruned.append(ref)
    return pruned


def main():
    module = AnsibleModule(
        argument_spec=dict(
            repository=dict(type="str", default="edgeops/lab-device"),
            variant=dict(type="str", default="device", choices=["device", "minimal"]),
            suite=dict(type="str", default="trixie"),
            mirror=dict(type="str", default="http://deb.debian.org/debian"),
            packages=dict(type="list", elements="str", default=[]),
            build_dir=dict(type="path", default="/var/tmp"),
            debootstrap_timeout=dict(type="int", default=1200),
            prune_stale=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        check_recipe(params["repository"], params["suite"], params["mirror"], params["packages"],
                     params["debootstrap_timeout"])
    except LabPlanError as exc:
        module.fail_json(msg=str(exc))
    digest = recipe_digest(params["suite"], params["mirror"], params["packages"], variant=params["variant"])
    family = recipe_family(params["variant"], params["packages"])
    ref = image_tag(params["repository"], params["suite"], digest)
    result = dict(changed=False, image=ref, recipe_digest=digest, built=False, pruned=[],
                  image_id=_image_id(module, ref))
    if result["image_id"]:
        module.exit_json(**result)
    # What a build needs, checked in check mode too: it fails where the build would fail.
    for tool in ("debootstrap", "docker", "chroot", "tar", "timeout"):
        module.get_bin_path(tool, required=True)
    if not os.path.isdir(params["build_dir"]):
        module.fail_json(msg="build_dir %s is not a directory" % params["build_dir"], **result)
    if module.check_mode:
        result["changed"] = True
        module.exit_json(**result)
    workdir = tempfile.mkdtemp(prefix="edgeops-lab-image-", dir=params["build_dir"])
    try:
        _build(module, ref, digest, family, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.update(changed=True, built=True, image_id=_image_id(module, ref))
    if params["prune_stale"]:
        result["pruned"] = _prune_stale(module, params["repository"], family, ref)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
