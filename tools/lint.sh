#!/usr/bin/env bash
# Runs ansible-lint (production profile, settings in .ansible-lint) on the whole collection: roles,
# playbooks, galaxy.yml, meta/, changelogs/ and any other YAML it recognises.
#
# --offline: otherwise ansible-lint runs `ansible-galaxy collection install` for galaxy.yml's
# dependencies, which needs Galaxy. ANSIBLE_COLLECTIONS_PATH=.build/collections lets it find this
# collection (linked there by tools/setup.sh) and amazon.aws without installing anything.
# ansible-lint may keep a cache in .ansible/ at the root (gitignored, in galaxy.yml's build_ignore).
#
# Usage: tools/lint.sh [extra ansible-lint args, e.g. roles/launch | --fix]
# Needs: tools/setup.sh dev.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
real_home=${HOME:-/nonexistent}
start=$SECONDS

lint=$root/.venv/bin/ansible-lint
colls=$root/.build/collections
if [ ! -x "$lint" ] || [ ! -e "$colls/ansible_collections/amazon/aws/MANIFEST.json" ]; then
  echo "lint: .venv/bin/ansible-lint or amazon.aws missing; run tools/setup.sh dev first" >&2
  exit 2
fi

log=$root/.build/lint.log
# HOME inside the build: ansible-lint and ansible-compat otherwise create ~/.cache/ansible-lint,
# ~/.ansible/collections and ~/.ansible/roles in the real home.
home=$root/.build/home
mkdir -p "$home"
# pyenv shims (if python comes from pyenv) find their versions through HOME unless PYENV_ROOT is set.
[ -n "${PYENV_ROOT:-}" ] || [ ! -d "$real_home/.pyenv" ] || export PYENV_ROOT=$real_home/.pyenv
# PATH: ansible-lint runs ansible-playbook --syntax-check and ansible-galaxy from the venv.
set +e
HOME=$home ANSIBLE_COLLECTIONS_PATH=$colls PATH=$root/.venv/bin:$PATH NO_COLOR=1 \
  "$lint" --offline -c .ansible-lint "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

echo "------------------------------------------------------------------------"
# ansible-lint ends with "Passed: ..." or "Failed: N failure(s), M warning(s) in K files ...".
result=$(grep -E '^(Passed|Failed):' "$log" | tail -n1 || true)
if [ "$rc" -eq 0 ]; then
  echo "lint: PASS ${result:+($result) }$((SECONDS - start)) s (log: ${log#"$root"/})"
else
  echo "lint: FAIL (exit $rc) ${result:+($result) }$((SECONDS - start)) s (log: ${log#"$root"/})"
fi
exit "$rc"
