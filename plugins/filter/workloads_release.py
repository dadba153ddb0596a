# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.probe_schema import ProbeError, validate_probes
from ansible_collections.edgeops.fleet.plugins.plugin_utils._workloads import (
    DEFAULT_SECRETS_DIR, WorkloadError, published_images, render_release, secret_owners, site_problems)


def _check_spec(manifest, spec, source):
    """Check every workload against the role's `workload` argument spec; one error naming file and workloads."""
    workloads = manifest.get("workloads") if isinstance(manifest, dict) else None
    if not spec or not isinstance(workloads, dict):
        return
    validator = ArgumentSpecValidator(spec)
    errors = []
    for name in sorted(workloads, key=str):
        # (ArgumentSpecValidator fails with a TypeError on a key that is not a string: named here instead.)
        bad = [key for key in workloads[name] if not isinstance(key, str)] if isinstance(workloads[name], dict) else []
        if bad:
            errors.append("workloads.%s: keys must be strings, got %r" % (name, bad[0]))
        elif isinstance(workloads[name], dict):
            errors.extend("workloads.%s: %s" % (name, message)
                          for message in validator.validate(workloads[name]).error_messages)
    if errors:
        raise AnsibleFilterError("%s: %s" % (source, "; ".join(errors)))


def _workloads_release(manifest, registry=None, secrets_dir=DEFAULT_SECRETS_DIR, source="release manifest", spec=None,
                       vm_domain_type="kvm"):
    _check_spec(manifest, spec, source)
    try:
        release, secrets, images = render_release(manifest, registry=registry, secrets_dir=secrets_dir, source=source,
                                                  vm_domain_type=vm_domain_type)
        owners = secret_owners(manifest)
    except WorkloadError as exc:
        raise AnsibleFilterError(str(exc))
    return {"release": release, "secrets": secrets, "secret_owners": owners, "images": images}


def _workloads_probes(probes, key, named=False):
    """Probes given as role variables, checked by the device's rules on the controller (errors name the key)."""
    try:
        return validate_probes(probes or [], key, named=named, allow_empty=True)
    except ProbeError as exc:
        raise AnsibleFilterError(str(exc))


def _workloads_published_images(targets, manifest=None):
    try:
        return published_images(targets, manifest)
    except WorkloadError as exc:
        raise AnsibleFilterError(str(exc))


def _workloads_site_problems(sites, hostvars, secrets, manifest):
    """Each further site's registry and the values of the secrets the release reads, in one pass (see site_problems)."""
    def secrets_of(device):
        if device not in hostvars:
            return None
        values = hostvars[device].get("workloads_secrets", {})
        # A mapping's keys only (the values stay where they are); anything else is said to be no mapping.
        return dict.fromkeys(values.keys()) if hasattr(values, "keys") else "not a mapping"

    return site_problems(sites or [], secrets_of, list(secrets or []), manifest)


class FilterModule(object):
    """Workload filters."""

    def filters(self):
        return {"workloads_release": _workloads_release, "workloads_probes": _workloads_probes,
                "workloads_published_images": _workloads_published_images,
                "workloads_site_problems": _workloads_site_problems}
