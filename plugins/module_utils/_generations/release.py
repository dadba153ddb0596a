# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release's shape, its artifacts and its manifest (pure: checked before anything touches the device)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from .errors import GenerationError
from .nft import NFT_FAMILY, NFT_TABLE, check_nft_ruleset
from .probe_schema import ProbeError, validate_probe, validate_probes
from .sysio import sha256_bytes
from .vms import is_managed, validate_vm

STATE_FORMAT = 1
RELEASE_KEYS = ("id", "compose", "nftables", "vms", "files", "health_checks")
FILE_KEYS = ("path", "content", "mode")
HEALTH_CHECKS = "release.health_checks"

_VM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RELEASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")


def validate_health_check(check, index):
    """One health check: a probe (probe_schema) whose name defaults to ``<type>-<index>``."""
    try:
        return validate_probe(check, index, HEALTH_CHECKS, named=False)
    except ProbeError as exc:
        raise GenerationError(str(exc))


def _validate_files(files):
    if not isinstance(files, list):
        raise GenerationError("release.files must be a list of {path, content, mode}")
    out, seen = [], set()
    for index, item in enumerate(files):
        where = "release.files[%d]" % index
        if not isinstance(item, dict):
            raise GenerationError("%s must be a mapping with path, content and mode" % where)
        bad = sorted(set(item) - set(FILE_KEYS))
        if bad:
            raise GenerationError("%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(bad), ", ".join(FILE_KEYS)))
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/") or path.endswith("/"):
            raise GenerationError("%s.path must be an absolute file path without '..', got %r" % (where, path))
        if path in seen:
            raise GenerationError("%s.path %s is listed twice" % (where, path))
        seen.add(path)
        if not isinstance(item.get("content"), str):
            raise GenerationError("%s.content must be a string" % where)
        mode = str(item.get("mode", "0644"))
        if not re.match(r"^0?[0-7]{3}$", mode):
            raise GenerationError("%s.mode must be an octal string such as '0644', got %r" % (where, mode))
        out.append({"path": path, "content": item["content"], "mode": "0" + mode[-3:]})
    return out


def validate_release(release):
    """Check a release's shape before anything touches the device. Returns a normalised copy."""
    if not isinstance(release, dict):
        raise GenerationError("release must be a mapping, got %s" % type(release).__name__)
    unknown = sorted(set(release) - set(RELEASE_KEYS))
    if unknown:
        raise GenerationError("release: unknown key(s) %s (allowed: %s)" % (", ".join(unknown), ", ".join(RELEASE_KEYS)))
    rid = release.get("id")
    if not isinstance(rid, (str, int, float)) or not _RELEASE_ID_RE.match(str(rid)):
        raise GenerationError("release.id must be 1-128 letters, digits or . _ : + - (starting with a letter "
                              "or digit), got %r" % (rid,))
    out = {"id": str(rid), "compose": None, "nftables": None, "vms": {}}
    compose = release.get("compose")
    if compose is not None:
        if isinstance(compose, dict):
            if not isinstance(compose.get("services"), dict) or not compose["services"]:
                raise GenerationError("release.compose.services must be a non-empty mapping of services")
            # JSON is YAML: written sorted so that the same release always gives the same bytes.
            compose = json.dumps(compose, indent=2, sort_keys=True)
        elif not isinstance(compose, str) or not compose.strip():
            raise GenerationError("release.compose must be a mapping (compose v2 file) or its YAML text")
        out["compose"] = compose
    nft = release.get("nftables")
    if nft is not None:
        if not isinstance(nft, str) or not nft.strip():
            raise GenerationError("release.nftables must be the text of table %s %s" % (NFT_FAMILY, NFT_TABLE))
        check_nft_ruleset(nft)
        out["nftables"] = nft
    vms = release.get("vms") or {}
    if not isinstance(vms, dict):
        raise GenerationError("release.vms must be a mapping of domain name to libvirt XML or a VM spec")
    for name, value in sorted(vms.items(), key=lambda item: str(item[0])):
        if not _VM_NAME_RE.match(str(name)):
            raise GenerationError("release.vms: invalid domain name %r" % (name,))
        out["vms"][str(name)] = validate_vm(str(name), value)
    out["files"] = _validate_files(release.get("files") or [])
    try:
        out["health_checks"] = validate_probes(release.get("health_checks") or [], HEALTH_CHECKS, named=False,
                                               allow_empty=True)
    except ProbeError as exc:
        raise GenerationError(str(exc))
    return out


def render_artifacts(release):
    """Map artifact path (relative to the generation directory) to its bytes."""
    arts = {}
    if release["compose"] is not None:
        arts["compose.yaml"] = release["compose"].encode("utf-8")
    if release["nftables"] is not None:
        arts["nftables.nft"] = release["nftables"].encode("utf-8")
    for name, spec in release["vms"].items():
        arts["vms/%s.xml" % name] = spec["domain"].encode("utf-8")
        if is_managed(spec):  # what the device supplies (disks, seed, ports): read back by activation
            arts["vms/%s.json" % name] = json.dumps(dict((k, v) for k, v in spec.items() if k != "domain"),
                                                    indent=2, sort_keys=True).encode("utf-8")
    for index, item in enumerate(release["files"]):
        arts["files/%d" % index] = item["content"].encode("utf-8")
    arts["health.json"] = json.dumps(release["health_checks"], indent=2, sort_keys=True).encode("utf-8")
    return arts


def content_digest(release_id, artifacts, files):
    """Identity of a release's content: the same digest means staging it again changes nothing."""
    blob = json.dumps({
        "release": release_id,
        "artifacts": dict((k, sha256_bytes(v)) for k, v in artifacts.items()),
        "files": [(f["path"], f["mode"]) for f in files],
    }, sort_keys=True).encode("utf-8")
    return sha256_bytes(blob)


def build_manifest(generation, release, artifacts, created, images=()):
    return {
        "format": STATE_FORMAT,
        "generation": generation,
        "release": release["id"],
        "created": created,
        "content_digest": content_digest(release["id"], artifacts, release["files"]),
        "artifacts": dict((k, {"sha256": sha256_bytes(v), "size": len(v)}) for k, v in sorted(artifacts.items())),
        "files": [{"path": f["path"], "mode": f["mode"], "artifact": "files/%d" % i}
                  for i, f in enumerate(release["files"])],
        "vms": sorted(release["vms"]),
        "images": sorted(set(images)),
    }
