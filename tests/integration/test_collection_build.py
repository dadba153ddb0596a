# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection builds into a tarball that installs and documents itself from an empty path, and carries what an
execution environment needs at run time (meta/execution-environment.yml), not the repository's development pins."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import subprocess
import tarfile

import pytest
import yaml

from conftest import BIN, REPO


def run(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The tarball built from the checkout and installed into an empty collections path."""
    tmp_path = tmp_path_factory.mktemp("build")
    # No ansible.cfg from the checkout: only the installed tarball (and the bundled collections).
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"))
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", REPO, "--output-path", str(tmp_path)],
        cwd=str(tmp_path), env=env)
    tarball = glob.glob(str(tmp_path / "edgeops-fleet-*.tar.gz"))
    assert len(tarball) == 1
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "-p",
         str(tmp_path / "collections"), tarball[0]], cwd=str(tmp_path), env=env)
    return tmp_path, tarball[0], env


def test_build_install_and_list(installed):
    tmp_path, tarball, env = installed
    members = tarfile.open(tarball).getnames()
    assert "roles/base_os/meta/argument_specs.yml" in members
    assert not [m for m in members if m.startswith((".venv", "collections/", ".lab", ".suite", ".ee-build"))]
    # The development and test pins stay in the repository: ansible-builder would install them into every EE.
    assert "requirements.txt" not in members and "constraints.txt" not in members
    assert "meta/execution-environment.yml" in members

    modules = run([os.path.join(BIN, "ansible-doc"), "-l", "edgeops.fleet"], cwd=str(tmp_path), env=env)
    assert "edgeops.fleet.lab_image" in modules
    roles = run([os.path.join(BIN, "ansible-doc"), "-t", "role", "-l", "edgeops.fleet"], cwd=str(tmp_path), env=env)
    assert "edgeops.fleet.base_os" in roles and "edgeops.fleet.lab" in roles
    filters = run([os.path.join(BIN, "ansible-doc"), "-t", "filter", "edgeops.fleet.lab_plan"], cwd=str(tmp_path), env=env)
    assert "ssh_port_base" in filters


def test_an_execution_environment_gets_the_run_time_requirements_only(installed, tmp_path):
    """ansible-builder's own introspection of the installed tarball (what `ansible-builder build` runs inside the
    image) finds meta/execution-environment.yml's Python and system packages, and none of the development pins."""
    collections, env = installed[0], installed[2]
    out = run([os.path.join(BIN, "ansible-builder"), "introspect", str(collections / "collections")],
              cwd=str(tmp_path), env=env)
    found = yaml.safe_load(out[out.index("python:"):]) if "python:" in out else {}
    python = " ".join(found.get("python", [])).lower()
    system = " ".join(found.get("system", [])).lower()
    for package in ("boto3", "botocore", "hvac"):
        assert package in python, out
    assert "openssh-client" in system and "skopeo" in system, out
    for dev in ("moto", "molecule", "pytest", "hypothesis", "ansible-lint", "flask", "antsibull", "ansible-builder"):
        assert dev not in python, out

    # The repository's definition (ansible-builder v3) makes a build context with the tarball in it, installed
    # without Galaxy (its dependencies come with the pinned ansible package).
    # (In a build directory of its own: test_awx_jobs.py builds the EE in another lab stream at the same time.)
    proc = subprocess.run(["bash", "scripts/build_ee.sh"], cwd=REPO,
                          env=dict(env, EE_CREATE_ONLY="1", EE_BUILD_DIR=str(tmp_path / "ee-build")),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    context = os.path.join(str(tmp_path), "ee-build", "context")
    with open(os.path.join(context, "Containerfile")) as handle:
        containerfile = handle.read()
    assert 'ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--no-deps"' in containerfile
    assert "ansible-core==2.19.14" in containerfile
    assert os.path.isfile(os.path.join(context, "_build", "collections", "edgeops-fleet.tar.gz"))
    with open(os.path.join(context, "_build", "requirements.txt")) as handle:
        assert "ansible==" in handle.read()
