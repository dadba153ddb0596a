# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection builds into a tarball that installs and documents itself from an empty path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import subprocess
import tarfile

from conftest import BIN, REPO


def run(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_build_install_and_list(tmp_path):
    # No ansible.cfg from the checkout: only the installed tarball (and the bundled collections).
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"))
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", REPO, "--output-path", str(tmp_path)],
        cwd=str(tmp_path), env=env)
    tarball = glob.glob(str(tmp_path / "edgeops-fleet-*.tar.gz"))
    assert len(tarball) == 1
    members = tarfile.open(tarball[0]).getnames()
    assert "roles/base_os/meta/argument_specs.yml" in members
    assert not [m for m in members if m.startswith((".venv", "collections/", ".lab", ".suite"))]

    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "-p",
         str(tmp_path / "collections"), tarball[0]], cwd=str(tmp_path), env=env)
    modules = run([os.path.join(BIN, "ansible-doc"), "-l", "edgeops.fleet"], cwd=str(tmp_path), env=env)
    assert "edgeops.fleet.lab_image" in modules
    roles = run([os.path.join(BIN, "ansible-doc"), "-t", "role", "-l", "edgeops.fleet"], cwd=str(tmp_path), env=env)
    assert "edgeops.fleet.base_os" in roles and "edgeops.fleet.lab" in roles
    filters = run([os.path.join(BIN, "ansible-doc"), "-t", "filter", "edgeops.fleet.lab_plan"], cwd=str(tmp_path), env=env)
    assert "ssh_port_base" in filters
