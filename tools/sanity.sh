#!/usr/bin/env bash
# Runs `ansible-test sanity` (all default tests, Python 3.11, no ignore files) on a copy of this
# collection, without the internet access ansible-test normally assumes.
#
# Why a copy: ansible-test needs the collection at .../ansible_collections/coreos_ec2/cluster with
# amazon.aws in the same tree; the checkout can live anywhere, so we mirror its files (tracked and
# untracked-but-not-ignored, i.e. what would be committed) into
# .build/sanity/ansible_collections/coreos_ec2/cluster and link amazon.aws beside it.
# Why a stand-in get-pip: every sanity venv bootstraps pip with a script ansible-test downloads from
# ci-files.testing.ansible.com; tools/get_pip_offline.py, put where ansible-test caches that script,
# installs pip from a locally downloaded wheel instead. The venvs then install their pinned
# requirements from the package index as usual (the first run needs PyPI or a local mirror).
#
# Usage: tools/sanity.sh [extra ansible-test sanity args, e.g. --test pep8 | -v]
# Needs: tools/setup.sh dev. Writes only under .build/ and .cache/ (HOME is pointed into .build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
real_home=${HOME:-/nonexistent}
start=$SECONDS

ansible_test=$root/.venv/bin/ansible-test
amazon_aws=$root/.build/collections/ansible_collections/amazon/aws
if [ ! -x "$ansible_test" ] || [ ! -e "$amazon_aws/MANIFEST.json" ]; then
  echo "sanity: .venv/bin/ansible-test or amazon.aws missing; run tools/setup.sh dev first" >&2
  exit 2
fi

build=$root/.build/sanity
dest=$build/ansible_collections/coreos_ec2/cluster
log=$build/sanity.log
mkdir -p "$dest" "$build/ansible_collections/amazon"
# One run at a time: two runs would mirror into and test the same copy.
exec 9>"$build/.lock"
if ! flock -w 900 9; then
  echo "sanity: another tools/sanity.sh run holds $build/.lock" >&2
  exit 2
fi

# The project keeps no ignore files: every finding is fixed, not waived.
shopt -s nullglob
ignores=(tests/sanity/ignore-*.txt)
shopt -u nullglob
if [ "${#ignores[@]}" -gt 0 ]; then
  echo "sanity: ${ignores[*]} present; this collection keeps no sanity ignore files (fix the findings)" >&2
  exit 2
fi

# --- 1. Mirror the collection's files into the copy --------------------------------------------
# NUL-separated, relative paths of the files that belong to the collection. git -c also lists
# tracked files deleted from the work tree, so keep only what exists.
list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard
  else
    # No git: the same directories .gitignore names. -prune never descends into .build, so the
    # .build/collections/.../cluster link back to this root is never followed.
    find . \( -name .git -o -name .venv -o -name .build -o -name .cache -o -name .sandbox \
      -o -name .ansible -o -name __pycache__ -o -name .pytest_cache -o -path ./tests/output \) -prune \
      -o \( -type f -o -type l \) -printf '%P\0'
  fi
}
src_list=$build/files.src
dst_list=$build/files.dst
list_files | while IFS= read -r -d '' f; do
  if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
done | sort -z >"$src_list"

# Copy (tar keeps modes, times and symlinks as links), then delete what is no longer in the list.
# tests/output is ansible-test's own output and stays.
tar -c --null -T "$src_list" -f - | tar -x -f - -C "$dest"
(cd "$dest" && find . -path ./tests/output -prune -o \( -type f -o -type l \) -printf '%P\0') \
  | sort -z >"$dst_list"
comm -z -13 "$src_list" "$dst_list" | (cd "$dest" && xargs -0 -r rm -f --)
find "$dest" -mindepth 1 -type d -empty ! -path "$dest/tests/output" ! -path "$dest/tests/output/*" -delete
echo "sanity: $(tr -cd '\0' <"$src_list" | wc -c) files mirrored into ${dest#"$root"/}"

# --- 2. amazon.aws beside it --------------------------------------------------------------------
# A relative link is enough: ansible-test and Python follow it (checked: validate-modules and the
# import test resolve amazon.aws doc fragments and module_utils through it).
ln -sfn ../../../collections/ansible_collections/amazon/aws "$build/ansible_collections/amazon/aws"

# --- 3. HOME inside the build, with the stand-in get-pip in ansible-test's cache -----------------
# ansible-test keeps its sanity venvs in ~/.ansible/test/venv and their paths end up in shebangs
# (Linux limit: 127 bytes; ansible-test adds about 75), so fall back to a short path for deep checkouts.
home=$root/.build/home
if [ "${#home}" -gt 50 ]; then
  home=${TMPDIR:-/tmp}/coreos-ec2-sanity-$(printf '%s' "$root" | sha1sum | cut -c1-8)
  echo "sanity: checkout path is long; sanity venvs live in $home"
fi
export HOME=$home
# pyenv shims (if python comes from pyenv) find their versions through HOME unless PYENV_ROOT is set.
[ -n "${PYENV_ROOT:-}" ] || [ ! -d "$real_home/.pyenv" ] || export PYENV_ROOT=$real_home/.pyenv
# The pip version ansible-test bootstraps, read from its own code so an ansible-core update that
# changes it fails loudly here instead of in every venv.
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',\$/\1/p" \
  "$("$root/.venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" \
  | head -n1)
if [ -z "$pip_version" ]; then
  echo "sanity: cannot find the pip version ansible-test bootstraps (python_requirements.py changed?)" >&2
  exit 2
fi
pip_wheel=pip-$pip_version-py3-none-any.whl
if [ ! -e "$root/.cache/$pip_wheel" ]; then
  mkdir -p "$root/.cache"
  "$root/.venv/bin/pip" download -q --disable-pip-version-check --no-deps "pip==$pip_version" -d "$root/.cache"
fi
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
cp "$root/tools/get_pip_offline.py" "$cache/get_pip_${pip_version//./_}.py"
cp -p "$root/.cache/$pip_wheel" "$cache/$pip_wheel"

# --- 4. Run ----------------------------------------------------------------------------------------
# ANSIBLE_TEST_CONTENT_ROOT pins the content root to the copy: otherwise ansible-test walks up, finds
# this checkout's .git and asks git for the copy's files, which .gitignore hides (.build/).
# --python 3.11: without it ansible-test tries every Python version it knows.
# No --requirements: each sanity venv installs its own pinned requirements.
# The caller's Ansible settings (the Makefile exports ANSIBLE_CONFIG) must not leak into the tests.
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
set +e
(cd "$dest" && ANSIBLE_TEST_CONTENT_ROOT=$dest PATH=$root/.venv/bin:$PATH \
  "$ansible_test" sanity --python 3.11 --color no "$@") 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# --- 5. Summary ------------------------------------------------------------------------------------
ran=$(grep -c '^Running sanity test "' "$log" || true)
failed=$(sed -n 's/^FATAL: The \([0-9]*\) sanity test(s) listed below.*/\1/p' "$log" | tail -n1)
echo "------------------------------------------------------------------------"
# ansible-test only warns when a test's program is missing (e.g. shellcheck) and counts it as passed.
grep -E '^WARNING: (Required program|Skipping)' "$log" | sed 's/^WARNING: /sanity: NOT RUN: /' || true
if [ "$rc" -eq 0 ]; then
  echo "sanity: PASS, $ran tests ran, $((SECONDS - start)) s (log: ${log#"$root"/})"
else
  grep -E '^ERROR: Found [0-9]+ ' "$log" | sed 's/^ERROR: /sanity: /' || true
  echo "sanity: FAIL (exit $rc), ${failed:-?} of $ran tests failed, $((SECONDS - start)) s (log: ${log#"$root"/})"
fi
exit "$rc"
