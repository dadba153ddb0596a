#!/usr/bin/env bash
# Build the execution environment for AWX / Automation Platform (execution-environment.yml, ansible-builder v3):
# the collection's tarball first (what galaxy.yml's build_ignore leaves in it is what the EE gets), then the image.
#
#   bash scripts/build_ee.sh [TAG] [BASE_IMAGE]
#     TAG         default edgeops-fleet-ee:<collection version>
#     BASE_IMAGE  default the definition's (docker.io/library/debian:bookworm-slim); any Debian or Ubuntu image
#                 with apt works, e.g. one built here where no registry is reachable
#   EE_CREATE_ONLY=1  write the build context (.ee-build/context: Containerfile and files) without building it
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[ -x .venv/bin/ansible-builder ] && PATH="$repo/.venv/bin:$PATH"

version=$(python3 -c 'import yaml, sys; print(yaml.safe_load(open("galaxy.yml"))["version"])')
tag=${1:-edgeops-fleet-ee:$version}
base=${2:-}

rm -rf .ee-build
mkdir -p .ee-build/tarball
ansible-galaxy collection build --force --output-path .ee-build/tarball >/dev/null
# One name for the definition's additional_build_files, whatever the version (the tarball carries its own).
mv .ee-build/tarball/edgeops-fleet-*.tar.gz .ee-build/edgeops-fleet.tar.gz
rmdir .ee-build/tarball

if [ "${EE_CREATE_ONLY:-0}" = 1 ]; then
  exec ansible-builder create -f execution-environment.yml --context .ee-build/context --output-filename Containerfile
fi
args=(build -f execution-environment.yml --context .ee-build/context --container-runtime docker -t "$tag")
[ -n "$base" ] && args+=(--build-arg "EE_BASE_IMAGE=$base")
exec ansible-builder "${args[@]}"
