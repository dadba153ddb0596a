# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AI workloads declared as data -> the compose file and health checks of a generation.

Pure functions (no I/O), shared by the workloads role's filter and the unit tests. Every error names the
key at fault (``workloads.predictor.memory``) so a bad release manifest is refused before a device is touched.
Least privilege is the default and cannot be switched off silently: read-only root, cap_drop ALL,
no-new-privileges, a non-root user, limits on CPU, memory (no swap beyond it) and PIDs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

# The device's own checks, run here too: a release the device would refuse is refused before any device is touched.
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.errors import GenerationError
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.probe_schema import ProbeError, validate_probe
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.release import validate_release
from ansible_collections.edgeops.fleet.plugins.plugin_utils._vms import VmError, render_vm

WORKLOAD_KEYS = (
    "image", "source", "digest", "command", "entrypoint", "env", "cpus", "memory", "memory_reservation", "pids",
    "restart", "user", "read_only", "tmpfs", "cap_add", "healthcheck", "gpus", "volumes", "secrets", "networks",
    "ports", "depends_on", "probes", "stop_grace_period", "working_dir",
)
REQUIRED_KEYS = ("image", "digest", "cpus", "memory", "pids")
MANIFEST_KEYS = ("release", "registry", "workloads", "volumes", "nftables", "vms")
HEALTHCHECK_KEYS = ("test", "interval", "timeout", "retries", "start_period", "start_interval")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
# Capabilities a workload may add back; the rest (SYS_ADMIN, NET_ADMIN, ...) would defeat containment.
ALLOWED_CAP_ADD = ("CHOWN", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "NET_RAW", "SETGID", "SETUID", "SYS_NICE")
INTERNAL_NETWORK = "internal"
EDGE_NETWORK = "edge"
DEFAULT_SECRETS_DIR = "/run/edgeops/secrets"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_IMAGE_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]{1,5})?$")
_SIZE_RE = re.compile(r"^([0-9]+)([bkmg])$")
_DURATION_RE = re.compile(r"^[0-9]+(?:ms|s|m|h)$")
_PORT_RE = re.compile(r"^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")
_USER_RE = re.compile(r"^([0-9]+)(?::([0-9]+))?$")
_TMPFS_RE = re.compile(r"^/[A-Za-z0-9_./-]*(?::[a-z0-9=,]+)?$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


class WorkloadError(ValueError):
    """A workload declaration is refused; the message starts with the key at fault."""


def _fail(where, message):
    raise WorkloadError("%s: %s" % (where, message))


def size_bytes(value, where):
    """'256m' -> bytes. Sizes are strings with a unit, so a bare number is never taken as bytes by mistake."""
    match = _SIZE_RE.match(str(value).strip().lower()) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        _fail(where, "must be a size such as 256m or 1g, got %r" % (value,))
    return int(match.group(1)) * _UNITS[match.group(2)]


def _string_list(value, where):
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _fail(where, "must be a list of non-empty strings")
    return list(value)


def _number(value, where, low, high, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        _fail(where, "must be %s between %s and %s, got %r" % ("an integer" if integer else "a number", low, high, value))
    if not low <= value <= high:
        _fail(where, "must be between %s and %s, got %r" % (low, high, value))
    return value


def image_reference(registry, image, digest):
    return "%s/%s@%s" % (registry, image, digest) if registry else "%s@%s" % (image, digest)


def _healthcheck(value, where):
    if not isinstance(value, dict):
        _fail(where, "must be a mapping with test (and interval, timeout, retries, start_period, start_interval)")
    bad = sorted((set(value) - set(HEALTHCHECK_KEYS)), key=str)
    if bad:
        _fail(where, "unknown key(s) %s (allowed: %s)" % (", ".join(map(str, bad)), ", ".join(HEALTHCHECK_KEYS)))
    test = value.get("test")
    if (not isinstance(test, list) or not test or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2
            or not all(isinstance(arg, str) for arg in test)):
        _fail(where + ".test", "must be a list of strings starting with CMD or CMD-SHELL, such as [CMD, /usr/local/bin/healthcheck]")
    # timeout 10s: a check that needs a second on an idle box can need several on a busy one (a CPU-limited
    # container, a loaded device); a short timeout turns that into "unhealthy" and a needless rollback.
    out = {"test": list(test), "interval": "5s", "timeout": "10s", "retries": 3, "start_period": "5s"}
    for key in ("interval", "timeout", "start_period"):
        if key in value:
            if not isinstance(value[key], str) or not _DURATION_RE.match(value[key]):
                _fail("%s.%s" % (where, key), "must be a duration such as 5s, got %r" % (value[key],))
            out[key] = value[key]
    # start_interval (Docker Engine 25+, compose 2.20.2+): checks this often during start_period only, so a
    # container is seen healthy within a second of being ready while a long interval keeps the checks cheap after.
    if "start_interval" in value:
        if not isinstance(value["start_interval"], str) or not _DURATION_RE.match(value["start_interval"]):
            _fail(where + ".start_interval", "must be a duration such as 1s, got %r" % (value["start_interval"],))
        out["start_interval"] = value["start_interval"]
    if "retries" in value:
        out["retries"] = _number(value["retries"], where + ".retries", 1, 100, integer=True)
    return out


def _volumes(value, where, declared_volumes):
    out = []
    for index, item in enumerate(value or []):
        here = "%s[%d]" % (where, index)
        if not isinstance(item, dict) or set(item) - {"name", "target", "read_only"} or not item.get("name") \
                or not item.get("target"):
            _fail(here, "must be a mapping with name (a volume of the release), target (a path) and read_only")
        if item["name"] not in declared_volumes:
            _fail(here + ".name", "volume %r is not declared in the release's volumes (declared: %s)"
                  % (item["name"], ", ".join(sorted(declared_volumes)) or "none"))
        if not str(item["target"]).startswith("/"):
            _fail(here + ".target", "must be an absolute path, got %r" % (item["target"],))
        spec = "%s:%s%s" % (item["name"], item["target"], ":ro" if item.get("read_only", False) else "")
        out.append(spec)
    return out


def _ports(value, where):
    out = []
    for index, spec in enumerate(value or []):
        here = "%s[%d]" % (where, index)
        match = _PORT_RE.match(str(spec)) if isinstance(spec, (str, int)) else None
        if not match:
            _fail(here, "must be [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], got %r" % (spec,))
        if not all(1 <= int(p) <= 65535 for p in match.group(2, 3)):
            _fail(here, "ports must be 1-65535, got %r" % (spec,))
        out.append(str(spec))
    return out


def validate_workload(name, spec, registry, declared_volumes=()):
    """Check one workload and return its compose service (raises WorkloadError naming the key)."""
    where = "workloads.%s" % name
    if not _NAME_RE.match(str(name)):
        _fail(where, "workload names are 1-63 lowercase letters, digits, '-' or '_'")
    if not isinstance(spec, dict):
        _fail(where, "must be a mapping")
    unknown = sorted((set(spec) - set(WORKLOAD_KEYS)), key=str)
    if unknown:
        _fail(where, "unknown key(s) %s (allowed: %s)" % (", ".join(map(str, unknown)), ", ".join(WORKLOAD_KEYS)))
    missing = [key for key in REQUIRED_KEYS if spec.get(key) in (None, "")]
    if missing:
        why = {"digest": "images are pinned by digest (run playbooks/registry/publish.yml to record it)",
               "cpus": "every workload needs a CPU limit", "memory": "every workload needs a memory limit",
               "pids": "every workload needs a PIDs limit (stops fork bombs)", "image": "the image repository"}
        _fail("%s.%s" % (where, missing[0]), "is required: %s" % why[missing[0]])
    if not isinstance(spec["image"], str) or not _IMAGE_RE.match(spec["image"]):
        _fail(where + ".image", "must be a repository path without tag or digest such as edgeops/predictor, got %r"
              % (spec["image"],))
    if not isinstance(spec["digest"], str) or not _DIGEST_RE.match(spec["digest"]):
        _fail(where + ".digest", "must be sha256:<64 hex digits>, got %r" % (spec["digest"],))
    cpus = _number(spec["cpus"], where + ".cpus", 0.01, 256)
    memory = size_bytes(spec["memory"], where + ".memory")
    if memory < 6 * 1024 ** 2:
        _fail(where + ".memory", "must be at least 6m (Docker's minimum), got %r" % (spec["memory"],))
    pids = _number(spec["pids"], where + ".pids", 8, 32768, integer=True)
    service = {
        "image": image_reference(registry, spec["image"], spec["digest"]),
        "cpus": cpus,
        "mem_limit": spec["memory"],
        # Swap equal to the limit: no swap, so a leaking workload is OOM-killed instead of thrashing the device.
        "memswap_limit": spec["memory"],
        "pids_limit": pids,
        "restart": spec.get("restart", "unless-stopped"),
        "read_only": spec.get("read_only", True) is not False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "init": True,
        "labels": {"org.edgeops.workload": name},
    }
    if "memory_reservation" in spec:
        reservation = size_bytes(spec["memory_reservation"], where + ".memory_reservation")
        if reservation > memory:
            _fail(where + ".memory_reservation", "must not exceed memory (%s)" % spec["memory"])
        service["mem_reservation"] = spec["memory_reservation"]
    if service["restart"] not in RESTART_POLICIES:
        _fail(where + ".restart", "must be one of %s, got %r" % (", ".join(RESTART_POLICIES), service["restart"]))
    if not isinstance(spec.get("read_only", True), bool):
        _fail(where + ".read_only", "must be true or false")
    user = str(spec.get("user", "10001:10001"))
    match = _USER_RE.match(user)
    if not match or int(match.group(1)) == 0 or (match.group(2) is not None and int(match.group(2)) == 0):
        _fail(where + ".user", "must be a numeric non-root uid[:gid] (gid 0 neither) such as 10001:10001, got %r"
              % (spec.get("user"),))
    service["user"] = user
    tmpfs = _string_list(spec.get("tmpfs", ["/tmp:size=64m"]), where + ".tmpfs")
    for index, item in enumerate(tmpfs):
        if not _TMPFS_RE.match(item):
            _fail("%s.tmpfs[%d]" % (where, index), "must be PATH[:options] such as /tmp:size=64m, got %r" % (item,))
    if tmpfs:
        service["tmpfs"] = tmpfs
    caps = [c.upper() for c in _string_list(spec.get("cap_add", []), where + ".cap_add")]
    for index, cap in enumerate(caps):
        if cap.replace("CAP_", "") not in ALLOWED_CAP_ADD:
            _fail("%s.cap_add[%d]" % (where, index), "%s is not allowed (allowed: %s)" % (cap, ", ".join(ALLOWED_CAP_ADD)))
    if caps:
        service["cap_add"] = [c.replace("CAP_", "") for c in caps]
    for key in ("command", "entrypoint"):
        if key in spec:
            service[key] = _string_list(spec[key], "%s.%s" % (where, key))
    if "working_dir" in spec:
        service["working_dir"] = str(spec["working_dir"])
    env = spec.get("env", {})
    if not isinstance(env, dict):
        _fail(where + ".env", "must be a mapping of NAME: value")
    for key, value in env.items():
        if not _ENV_RE.match(str(key)):
            _fail("%s.env.%s" % (where, key), "is not a valid environment variable name")
        if isinstance(value, (dict, list)) or value is None:
            _fail("%s.env.%s" % (where, key), "must be a string, number or boolean")
        if re.search(r"(?i)(password|secret|token|api_?key)", str(key)):
            _fail("%s.env.%s" % (where, key), "looks like a secret: declare it in secrets (a read-only file), "
                  "never in the environment, which docker inspect shows")
    if env:
        service["environment"] = dict((str(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items())
    if "healthcheck" in spec:
        service["healthcheck"] = _healthcheck(spec["healthcheck"], where + ".healthcheck")
    gpus = spec.get("gpus", 0)
    if gpus not in (0, None):
        if gpus != "all" and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
            _fail(where + ".gpus", "must be a number of GPUs (>= 1) or 'all', got %r" % (gpus,))
        service["deploy"] = {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "count": gpus, "capabilities": ["gpu"]}]}}}
    volumes = _volumes(spec.get("volumes"), where + ".volumes", declared_volumes)
    if volumes:
        service["volumes"] = volumes
    secrets = _string_list(spec.get("secrets", []), where + ".secrets")
    for index, secret in enumerate(secrets):
        if not _NAME_RE.match(secret):
            _fail("%s.secrets[%d]" % (where, index), "secret names are lowercase letters, digits, '-' or '_'")
    if secrets:
        service["secrets"] = secrets
    ports = _ports(spec.get("ports"), where + ".ports")
    networks = _string_list(spec.get("networks", [INTERNAL_NETWORK]), where + ".networks")
    for index, net in enumerate(networks):
        if net not in (INTERNAL_NETWORK, EDGE_NETWORK):
            _fail("%s.networks[%d]" % (where, index), "must be %s (machine-to-machine, no route out) or %s, got %r"
                  % (INTERNAL_NETWORK, EDGE_NETWORK, net))
    if ports:
        service["ports"] = ports
        # An internal network has no gateway: published ports need the edge network.
        if EDGE_NETWORK not in networks:
            networks.append(EDGE_NETWORK)
    service["networks"] = networks
    if "depends_on" in spec:
        service["depends_on"] = _string_list(spec["depends_on"], where + ".depends_on")
    if "stop_grace_period" in spec:
        if not isinstance(spec["stop_grace_period"], str) or not _DURATION_RE.match(spec["stop_grace_period"]):
            _fail(where + ".stop_grace_period", "must be a duration such as 10s")
        service["stop_grace_period"] = spec["stop_grace_period"]
    return service


def _probes(name, spec, service):
    """Health checks of the generation's gate for one workload: the container's own healthcheck + its probes."""
    checks = []
    if "healthcheck" in service:
        checks.append({"name": "%s-container" % name, "type": "container", "service": name})
    probes = spec.get("probes", [])
    if not isinstance(probes, list):
        _fail("workloads.%s.probes" % name, "must be a list of health checks (http, tcp, container, systemd, command)")
    for index, probe in enumerate(probes):
        try:  # the device's probe schema (a mapping, type, keys, bounds), with the manifest's key path in the message
            validate_probe(probe, index, "workloads.%s.probes" % name, named=False)
        except ProbeError as exc:
            raise WorkloadError(str(exc))
        checks.append(dict(probe, name="%s-%s" % (name, probe.get("name", "probe%d" % index))))
    return checks


def check_registry(registry, manifest, source=None):
    """The registry a site's devices pull from (``registry``, else the manifest's own), or WorkloadError naming the key
    (after ``source``, the file, when given)."""
    where = "%s: registry" % source if source else "registry"
    registry = registry or (manifest.get("registry") if isinstance(manifest, dict) else None)
    if registry is None:
        # Without it, Docker would resolve edgeops/predictor on Docker Hub: never what a site wants.
        raise WorkloadError("%s: no site registry: set workloads_registry (the site's registry address) or registry in "
                            "the manifest" % where)
    if not isinstance(registry, str) or not _REGISTRY_RE.match(registry):
        raise WorkloadError("%s: must be a registry address such as site01-hub:5000, got %r" % (where, registry))
    return registry


def site_problems(sites, secrets_of, secrets, manifest):
    """What keeps a release from the further sites of a rollout: [message naming the site and its device].

    Rendering the release once per site cost its controller 0.2 s a site (a second a site at 5,000 devices, looped in
    a task); only the registry and the secrets' values differ between sites, so only those are checked here. Each
    site: ``{site, registry, device}`` (registry empty: the manifest's); ``secrets_of(device)``: that device's
    workloads_secrets (None: no such device); ``secrets``: the names the release reads. Values are never returned.
    """
    problems = []
    for site in sites:
        where = "site %s (device %s)" % (site.get("site"), site.get("device"))
        try:
            check_registry(site.get("registry") or None, manifest)
        except WorkloadError as exc:
            problems.append("%s: %s" % (where, exc))
            continue
        values = secrets_of(site.get("device"))
        if values is None:
            problems.append("%s: the device is not in the inventory" % where)
        elif not isinstance(values, dict):
            problems.append("%s: workloads_secrets must be a mapping of secret names to values" % where)
        else:
            missing = [name for name in secrets if name not in values]
            if missing:
                problems.append("%s: secret(s) %s are read by workloads but have no value in workloads_secrets"
                                % (where, ", ".join(missing)))
    return problems


def _render_vms(vms, domain_type):
    """The manifest's VMs -> (the generation's VM specs, their health checks named ``vm-<name>-<probe>``).
    Raises VmError naming the key."""
    out, checks, hosts, addresses = {}, [], {}, {}
    for name in sorted(vms, key=str):
        spec, probes, ports = render_vm(name, vms[name], domain_type)
        if spec["address"] in addresses:
            raise VmError("vms.%s.address: %s is also the address of VM %s"
                          % (name, spec["address"], addresses[spec["address"]]))
        addresses[spec["address"]] = name
        for index, port in enumerate(ports):
            key = (port["host"], port["proto"])
            if key in hosts:
                raise VmError("vms.%s.ports[%d]: host port %d/%s is also published by VM %s"
                              % (name, index, port["host"], port["proto"], hosts[key]))
            hosts[key] = name
        for index, probe in enumerate(probes):
            try:  # the device's probe schema, with the manifest's key path in the message
                validate_probe(probe, index, "vms.%s.probes" % name, named=False)
            except ProbeError as exc:
                raise VmError(str(exc))
            checks.append(dict(probe, name="vm-%s-%s" % (name, probe.get("name", "probe%d" % index))))
        out[name] = spec
    return out, checks


def render_release(manifest, registry=None, secrets_dir=DEFAULT_SECRETS_DIR, source="release manifest",
                   vm_domain_type="kvm"):
    """Release manifest -> (generation release {id, compose, vms, health_checks}, secret names, images by workload).

    ``registry`` (the site's registry address) overrides the manifest's ``registry``; ``vm_domain_type`` is the
    libvirt domain type of the release's VMs on these devices (kvm; qemu where there is no hardware virtualisation).
    """
    def fail(key, message):
        raise WorkloadError("%s: %s: %s" % (source, key, message))

    if not isinstance(manifest, dict):
        fail("(top)", "must be a mapping with release and workloads")
    unknown = sorted((set(manifest) - set(MANIFEST_KEYS)), key=str)
    if unknown:
        fail(str(unknown[0]), "unknown key (allowed: %s)" % ", ".join(MANIFEST_KEYS))
    release = manifest.get("release")
    if not isinstance(release, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$", release):
        fail("release", "must be an id of letters, digits and . _ : + -, got %r" % (release,))
    workloads = manifest.get("workloads")
    vms = manifest.get("vms")
    if vms is not None and not isinstance(vms, dict):
        fail("vms", "must be a mapping of VM name to its declaration")
    if vms and workloads is None:
        workloads = {}  # a release of VMs only
    if not isinstance(workloads, dict) or not (workloads or vms):
        fail("workloads", "must be a non-empty mapping of workload name to its declaration (or the release has vms)")
    # Containers are pulled from the site's registry; a release of VMs only needs none.
    registry = check_registry(registry, manifest, source) if workloads else registry
    for name in workloads:
        if not isinstance(name, str):
            fail("workloads", "workload names must be strings, got %r" % (name,))
    volumes = manifest.get("volumes", [])
    if not isinstance(volumes, list) or not all(isinstance(v, str) and _NAME_RE.match(v) for v in volumes):
        fail("volumes", "must be a list of volume names")
    nftables = manifest.get("nftables")
    if nftables is not None and (not isinstance(nftables, str) or not nftables.strip()):
        fail("nftables", "must be the text of the release's nftables table (inet edgeops), got %r" % (nftables,))
    services, checks, secrets, images = {}, [], set(), {}
    try:
        for name in sorted(workloads):
            service = validate_workload(name, workloads[name], registry, volumes)
            try:  # the compose file is JSON with sorted keys: a mapping with mixed keys cannot be written
                json.dumps(service, sort_keys=True)
            except (TypeError, ValueError):
                _fail("workloads.%s" % name, "holds a value that is not text, a number, a boolean or a list or mapping "
                      "of those with text keys")
            service["labels"]["org.edgeops.release"] = release
            services[name] = service
            checks.extend(_probes(name, workloads[name], service))
            secrets.update(service.get("secrets", []))
            images[name] = service["image"]
        for name, service in services.items():
            for index, dep in enumerate(service.get("depends_on", [])):
                if dep not in services:
                    _fail("workloads.%s.depends_on[%d]" % (name, index), "%r is not a workload of this release" % (dep,))
    except WorkloadError as exc:
        raise WorkloadError("%s: %s" % (source, exc))
    try:
        release_vms, vm_checks = _render_vms(vms or {}, vm_domain_type)
        for name, service in sorted(services.items()):
            for index, port in enumerate(service.get("ports", [])):
                match = _PORT_RE.match(port)
                taken = [vm for vm, spec in sorted(release_vms.items()) for vm_port in spec["ports"]
                         if (vm_port["host"], vm_port["proto"]) == (int(match.group(2)), match.group(4) or "tcp")]
                if taken:
                    raise VmError("vms.%s.ports: host port %s/%s is also published by workload %s (workloads.%s."
                                  "ports[%d])" % (taken[0], match.group(2), match.group(4) or "tcp", name, name, index))
    except VmError as exc:
        raise WorkloadError("%s: %s" % (source, exc))
    generation = {"id": release, "compose": None, "health_checks": checks + vm_checks}
    if services:
        networks = {INTERNAL_NETWORK: {"internal": True}}
        if any(EDGE_NETWORK in s["networks"] for s in services.values()):
            networks[EDGE_NETWORK] = {}
        compose = {"services": services, "networks": networks}
        if volumes:
            compose["volumes"] = dict((v, {}) for v in volumes)
        if secrets:
            compose["secrets"] = dict((s, {"file": "%s/%s" % (secrets_dir.rstrip("/"), s)}) for s in sorted(secrets))
        generation["compose"] = compose
    if release_vms:
        generation["vms"] = release_vms
    if nftables is not None:
        # The generation checks it (our table only, `nft -c`) when it is staged on the device.
        generation["nftables"] = nftables
    try:  # the device's whole release check (health check names unique, nftables table), here first
        validate_release(generation)
    except GenerationError as exc:
        fail("(generation)", str(exc))
    return generation, sorted(secrets), images


def _split_reference(ref):
    """``registry/repository@digest`` -> (registry, repository, digest)."""
    name, _at, digest = str(ref).partition("@")
    registry, _slash, repository = name.partition("/")
    if not digest or not repository:
        raise WorkloadError("image reference %r is not registry/repository@digest" % (ref,))
    return registry, repository, digest


def published_images(targets, manifest=None):
    """Each distinct image some devices pull, with the first device that pulls it (whose registry credentials and
    CA the check uses): [{registry, repository, digest, workload, device}], sorted, one per (registry, repository,
    digest).

    ``targets``: [{device, images: {workload: registry/repository@digest}}] (releases rendered by render_release),
    or, with the release ``manifest`` (already checked), [{device, registry}]: the registry a site's devices pull
    from (empty: the manifest's own ``registry``).
    """
    seen = {}
    for target in targets or []:
        if manifest is not None:
            registry = target.get("registry") or manifest.get("registry")
            images = [(name, (registry, spec["image"], spec["digest"]))
                      for name, spec in (manifest.get("workloads") or {}).items()]
        else:
            images = [(name, _split_reference(ref)) for name, ref in (target.get("images") or {}).items()]
        for workload, image in sorted(images):
            seen.setdefault(image, (workload, target["device"]))
    return [{"registry": image[0], "repository": image[1], "digest": image[2], "workload": first[0], "device": first[1]}
            for image, first in sorted(seen.items())]


def secret_owners(manifest):
    """Secret name -> uid of the workloads that read it (the file is 0400, so they must share one uid)."""
    owners = {}
    for name, spec in sorted((manifest.get("workloads") or {}).items()):
        uid = int(str(spec.get("user", "10001:10001")).split(":", 1)[0])
        for secret in spec.get("secrets", []) or []:
            if owners.setdefault(secret, uid) != uid:
                raise WorkloadError("workloads.%s.secrets: %s is also read by a workload running as uid %d; a secret "
                                    "file has one owner (mode 0400)" % (name, secret, owners[secret]))
    return owners
