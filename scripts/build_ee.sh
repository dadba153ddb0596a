#!/usr/bin/env bash
# Build the execution environment for AWX / Automation Platform (execution-environment.yml, ansible-builder v3):
# the collection's tarball first (what galaxy.yml's build_ignore leaves in it is what the EE gets), then the image.
#
#   bash scripts/build_ee.sh [TAG] [BASE_IMAGE]
#     TAG         default edgeops-fleet-ee:<collection version>; `-`: the recipe tag only (below)
#     BASE_IMAGE  default the definition's (docker.io/library/debian:bookworm-slim); any Debian or Ubuntu image
#                 with apt works. `lab`: the lab's minimal Debian base (edgeops/workload-base, the recipe
#                 playbooks/samples/build_images.yml uses: debootstrap + docker import, built here when missing),
#                 for machines that reach no container registry.
#
# The image is cached by recipe: it is also tagged edgeops-fleet-ee:<version>-<recipe>, the recipe being a digest
# of everything that goes into it (the generated Containerfile, so the definition and what this script adds to it;
# every file of the build context, the collection's tarball by its members' names and contents, not its
# timestamps; the base image's id, or its name when it is not here yet). When that tag exists nothing is built:
# TAG is pointed at it. The last line printed is the recipe tag.
#
# Environment (the lab's plumbing; none of it changes the definition a normal build uses):
#   EE_WHEELHOUSE=1      every Python package the build installs is downloaded here first (`pip download` with this
#                        machine's pip configuration: index, CA bundle, find-links), for the base image's Python and
#                        platform, into the build context; pip inside the build installs from it with no index
#                        (no TLS inside the build). Removed again at the end of the build.
#   EE_CA_BUNDLE=<file>  pip inside the build trusts this CA bundle (a TLS-intercepting proxy); removed at the end
#   EE_NO_PYC=1          the final stage installs the Python requirements without compiling them to bytecode: the
#                        `ansible` package's 15,000 modules took 35 of the build's 100 s (idle 2-CPU machine), and a
#                        controller imports few of them (Python compiles those in memory; ansible-galaxy's collections,
#                        edgeops.fleet among them, have no bytecode either)
#   EE_BUILD_DIR=<dir>   where the tarball and the build context go (default .ee-build); builds side by side
#                        need one each (what an earlier build left there is replaced)
#   EE_BUILD_OPTS="..."  extra options for `docker build` (e.g. --cpu-shares=256 beside a busy lab)
#   EE_RUNTIME=podman    the container runtime (default docker)
#   EE_FORCE=1           build even when the recipe's image exists
#   EE_KEEP_STALE=1      keep the images of older recipes (by default a build removes their tags)
#   EE_CREATE_ONLY=1     write the build context (<build dir>/context: Containerfile and files) without building it
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[ -x .venv/bin/ansible-builder ] && PATH="$repo/.venv/bin:$PATH"
runtime=${EE_RUNTIME:-docker}

version=$(python3 -c 'import yaml, sys; print(yaml.safe_load(open("galaxy.yml"))["version"])')
tag=${1:-edgeops-fleet-ee:$version}
[ "$tag" != - ] || tag=
base=${2:-}
build=${EE_BUILD_DIR:-$repo/.ee-build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
context=$build/context

say() { printf 'build_ee: %s\n' "$*" >&2; }
now() { cut -d' ' -f1 /proc/uptime; }  # a monotonic clock (this machine's wall clock can jump)
started=$(now)

if [ "$base" = lab ]; then
  # The module caches by recipe too: an existing image is only named. Its defaults (trixie, deb.debian.org) are
  # those of playbooks/samples/build_images.yml, so the suite's lab-images step has made it already.
  out=$(ANSIBLE_DEPRECATION_WARNINGS=False ansible localhost -i localhost, -c local -o -e 'ansible_python_interpreter={{ ansible_playbook_python }}' \
    -m edgeops.fleet.lab_image -a '{"repository": "edgeops/workload-base", "variant": "minimal"}') \
    || { printf '%s\n' "$out" >&2; exit 1; }
  base=$(printf '%s\n' "$out" | python3 -c 'import json, sys; t = sys.stdin.read(); print(json.loads(t[t.index("{"):])["image"])')
  say "base image $base (the lab's minimal Debian)"
fi

rm -rf "$build/context" "$build/tarball" "$build/edgeops-fleet.tar.gz" "$build/execution-environment.yml" "$build/pip.log"
mkdir -p "$build/tarball"
ansible-galaxy collection build --force --output-path "$build/tarball" >/dev/null
# One name for the definition's additional_build_files, whatever the version (the tarball carries its own).
mv "$build"/tarball/edgeops-fleet-*.tar.gz "$build/edgeops-fleet.tar.gz"
rmdir "$build/tarball"

# The definition ansible-builder reads: the repository's, its relative paths made absolute (the definition's
# `.ee-build/` is the build directory), plus the steps the options above add.
EE_WHEELHOUSE=${EE_WHEELHOUSE:-0} EE_CA_BUNDLE=${EE_CA_BUNDLE:-} EE_NO_PYC=${EE_NO_PYC:-0} python3 - "$repo" "$build" <<'EOF'
import os
import sys

import yaml

repo, build = sys.argv[1:3]
with open(os.path.join(repo, "execution-environment.yml")) as handle:
    definition = yaml.safe_load(handle)


def absolute(path):
    if os.path.isabs(path):
        return path
    if path.split("/")[0] == ".ee-build":
        return os.path.join(build, path.split("/", 1)[1])
    return os.path.join(repo, path)


for entry in definition.get("additional_build_files", []):
    entry["src"] = absolute(entry["src"])
for kind, value in (definition.get("dependencies") or {}).items():
    if kind in ("python", "system", "galaxy") and isinstance(value, str):
        definition["dependencies"][kind] = absolute(value)

pip_conf = []
if os.environ["EE_WHEELHOUSE"] == "1":
    pip_conf += ["no-index = true", "find-links = /ee-build/wheels"]
if os.environ["EE_CA_BUNDLE"]:
    pip_conf += ["cert = /ee-build/ca-bundle.crt"]
if pip_conf:
    steps = definition.setdefault("additional_build_steps", {})
    # After the definition's own base steps (Python and pip from the distribution), before the first pip install;
    # every later stage starts FROM base. The last final step removes it all again.
    steps["prepend_base"] = list(steps.get("prepend_base") or []) + [
        "COPY _build/ee-plumbing/ /ee-build/",
        "RUN printf '%s\\n' '[global]' " + " ".join("'%s'" % line for line in pip_conf) + " > /etc/pip.conf",
    ]
    steps["append_final"] = list(steps.get("append_final") or []) + ["RUN rm -rf /ee-build /etc/pip.conf"]
if os.environ["EE_NO_PYC"] == "1":
    # Read by ansible-builder's install-from-bindep only; emptied again before the image is done.
    steps = definition.setdefault("additional_build_steps", {})
    steps["prepend_final"] = list(steps.get("prepend_final") or []) + ["ENV PIP_OPTS=--no-compile"]
    steps["append_final"] = list(steps.get("append_final") or []) + ["ENV PIP_OPTS="]
if os.environ["EE_WHEELHOUSE"] == "1":
    # The builder stage's pip install only fills pip's cache for the final stage, which installs everything again:
    # with every wheel here already, resolving is enough (ansible's 30,000 files installed and committed once).
    steps["prepend_builder"] = list(steps.get("prepend_builder") or []) + ["ENV PIP_OPTS=--dry-run"]
with open(os.path.join(build, "execution-environment.yml"), "w") as handle:
    yaml.safe_dump(definition, handle, sort_keys=False)
EOF

ansible-builder create -f "$build/execution-environment.yml" --context "$context" --output-filename Containerfile >/dev/null
[ -f "$context/_build/collections/edgeops-fleet.tar.gz" ] || { say "the collection's tarball is not in $context"; exit 1; }
if [ "${EE_WHEELHOUSE:-0}" = 1 ] || [ -n "${EE_CA_BUNDLE:-}" ]; then
  mkdir -p "$context/_build/ee-plumbing/wheels"
  [ -z "${EE_CA_BUNDLE:-}" ] || cp "$EE_CA_BUNDLE" "$context/_build/ee-plumbing/ca-bundle.crt"
fi
if [ "${EE_CREATE_ONLY:-0}" = 1 ]; then
  say "build context in $context"
  exit 0
fi

base_ref=${base:-$(sed -n 's/^ARG EE_BASE_IMAGE="\(.*\)"$/\1/p' "$context/Containerfile")}
base_id=$("$runtime" image inspect --format '{{.Id}}' "$base_ref" 2>/dev/null || echo "$base_ref")
recipe=$(python3 - "$context" "$base_id" <<'EOF'
import hashlib
import os
import sys
import tarfile

context, base_id = sys.argv[1:3]
digest = hashlib.sha256(("base %s\n" % base_id).encode())
for root, dirs, files in os.walk(context):
    dirs.sort()
    for name in sorted(files):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, context)
        if rel.startswith("_build/ee-plumbing/wheels/"):
            continue  # downloaded below, from the requirements the Containerfile and the collection name
        digest.update(("file %s\n" % rel).encode())
        if name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                for member in sorted(tar.getmembers(), key=lambda m: m.name):
                    digest.update(("member %s %s %s\n" % (member.name, member.type, member.linkname)).encode())
                    if member.isfile():
                        digest.update(tar.extractfile(member).read())
        else:
            with open(path, "rb") as handle:
                digest.update(handle.read())
print(digest.hexdigest()[:12])
EOF
)
recipe_tag=edgeops-fleet-ee:$version-$recipe

if [ "${EE_FORCE:-0}" != 1 ] && "$runtime" image inspect "$recipe_tag" >/dev/null 2>&1; then
  [ -z "$tag" ] || [ "$tag" = "$recipe_tag" ] || "$runtime" tag "$recipe_tag" "$tag"
  say "$recipe_tag exists (recipe $recipe): nothing to build ($(python3 -c "print('%.1f' % ($(now) - $started))") s)"
  echo "$recipe_tag"
  exit 0
fi

if [ "${EE_WHEELHOUSE:-0}" = 1 ]; then
  # What pip installs in the build: the Containerfile's pip installs (ansible-core and ansible-runner, ansible-builder's
  # bindep and dumb-init), the definition's Python requirements and the collection's (meta/execution-environment.yml),
  # resolved together, for the Python and the platform of the base image.
  read -r py_version libc arch < <("$runtime" run --rm --entrypoint "" "$base_ref" /usr/bin/python3 -c \
    'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1].replace(".", "_"), platform.machine())')
  mapfile -t requirements < <(python3 - "$context" "$repo" <<'EOF'
import os
import re
import shlex
import sys

import yaml

context, repo = sys.argv[1:3]
with open(os.path.join(context, "Containerfile")) as handle:
    text = handle.read()
args = dict(re.findall(r'^ARG (\w+)="(.*)"$', text, re.M))
for line in re.findall(r"^RUN .*-m pip install (.*)$", text, re.M):
    for word in shlex.split(re.sub(r"\$(\w+)", lambda m: args.get(m.group(1), ""), line)):
        if not word.startswith("-"):
            print(word)
files = [os.path.join(context, "_build", "requirements.txt")]
with open(os.path.join(repo, "meta", "execution-environment.yml")) as handle:
    python = (yaml.safe_load(handle).get("dependencies") or {}).get("python")
if python:
    files.append(os.path.join(repo, python))
for path in files:
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                line = line.split("#", 1)[0].strip()
                if line:
                    print(line)
EOF
)
  # Every manylinux tag the base's glibc runs (pip does not widen an explicit --platform to the older ones).
  platforms=()
  for ((minor = 5; minor <= 10#${libc#*_}; minor++)); do platforms+=(--platform "manylinux_2_${minor}_${arch}"); done
  say "wheelhouse for Python $py_version ($arch, glibc ${libc//_/.}): ${requirements[*]}"
  python3 -m pip download --quiet --dest "$context/_build/ee-plumbing/wheels" --only-binary=:all: \
    --python-version "$py_version" --implementation cp "${platforms[@]}" "${requirements[@]}" >"$build/pip.log" 2>&1 \
    || { grep -v "is ignored: it is neither a file nor a directory" "$build/pip.log" >&2; say "pip download failed"; exit 1; }
fi

say "building $recipe_tag FROM ${base_ref} (recipe $recipe)"
build_args=(build -f "$context/Containerfile" -t "$recipe_tag" --label "org.edgeops.ee.recipe=$recipe")
[ -z "$tag" ] || [ "$tag" = "$recipe_tag" ] || build_args+=(-t "$tag")
[ -z "$base" ] || build_args+=(--build-arg "EE_BASE_IMAGE=$base")
read -ra extra <<<"${EE_BUILD_OPTS:-}"
"$runtime" "${build_args[@]}" "${extra[@]}" "$context" >&2
say "built $recipe_tag in $(python3 -c "print('%.1f' % ($(now) - $started))") s"
if [ "${EE_KEEP_STALE:-0}" != 1 ]; then
  # Images of older recipes (about 1 GB each): their tags go; one a container still uses stays (rmi refuses it).
  "$runtime" image ls edgeops-fleet-ee --filter label=org.edgeops.ee.recipe --format '{{.Repository}}:{{.Tag}}' \
    | grep -x "edgeops-fleet-ee:$version-[0-9a-f]\{12\}" | grep -vx "$recipe_tag" \
    | while read -r stale; do "$runtime" rmi "$stale" >/dev/null 2>&1 && say "removed $stale (an older recipe)"; done || true
fi
echo "$recipe_tag"
