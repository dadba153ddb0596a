#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): installs what is missing (scripts/setup.sh),
# then unit tests, changelog lint, ansible-lint (production profile), ansible-test sanity, the
# molecule scenarios on lab devices, and the integration tests against a real lab.
# Every step runs even when an earlier one failed; the last line counts them.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

passed=0; failed=0; failed_steps=()
step() {
  local name=$1; shift
  printf '\n======== %s ========\n' "$name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); printf -- '-------- %s: PASSED (%ss)\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1)); failed_steps+=("$name"); printf -- '-------- %s: FAILED (%ss)\n' "$name" $((SECONDS - start))
  fi
}

unit() { PYTHONPATH="$repo/collections" python -m pytest -q -p no:cacheprovider tests/unit; }

sanity() {
  # ansible-test wants the collection under ansible_collections/<namespace>/<name>.
  local tree; tree=$(mktemp -d)
  mkdir -p "$tree/ansible_collections/edgeops/fleet"
  git ls-files -co --exclude-standard | grep -v '^collections/' \
    | tar -cf - -T - | tar -C "$tree/ansible_collections/edgeops/fleet" -xf - 2>/dev/null
  # ansible-test downloads its pip bootstrap from a host we cannot reach: use our stand-in.
  mkdir -p ~/.ansible/test/cache
  cp scripts/ansible_test_get_pip.py ~/.ansible/test/cache/get_pip_24_2.py
  local py; py=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  (cd "$tree/ansible_collections/edgeops/fleet" && ansible-test sanity --venv --python "$py" --color no)
  local rc=$?
  rm -rf "$tree"
  return $rc
}

molecule_all() {
  local rc=0 scenario
  for scenario in molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    molecule test -s "$scenario" || rc=1
  done
  return $rc
}

integration() { python -m pytest -v -p no:cacheprovider tests/integration; }

step "unit tests" unit
step "changelog lint" antsibull-changelog lint
step "ansible-lint (production)" ansible-lint
step "ansible-test sanity" sanity
step "molecule" molecule_all
step "integration (lab, site.yml, build)" integration

echo
[ "$failed" -eq 0 ] || printf 'failed steps: %s\n' "${failed_steps[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
