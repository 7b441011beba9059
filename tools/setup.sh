#!/usr/bin/env bash
# Installs everything the project needs, idempotently: apt packages (when missing), the pinned Python
# packages into .venv, and the amazon.aws collection into .build/collections beside a link to this
# collection, so `ansible-playbook playbooks/*.yml` run from the repository root finds both.
# Usage: tools/setup.sh [runtime|dev]   (dev adds test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
profile=${1:-dev}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Debian packages. The sandbox: etcd-server and etcd-discovery (the discovery service), openssh-client (the
# sandbox key, SSH to the nodes), and for its nodes systemd-container (systemd-nspawn), debootstrap (the node
# image), iproute2 (the bridge), util-linux (loop devices for volumes) and nftables (the metadata address).
# For tests also shellcheck (ansible-test's shebang/shellcheck sanity test counts as passed without it) and
# systemd (systemd-analyze verify for the generated units).
apt_pkgs=(etcd-server etcd-discovery openssh-client systemd-container debootstrap iproute2 util-linux nftables)
[ "$profile" = dev ] && apt_pkgs+=(shellcheck systemd)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages ${missing[*]}; run as root or install them first" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]} with apt"
  # policy-rc.d keeps Debian's etcd and etcd-discovery services from starting: the sandbox runs its own.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.coreos-ec2 && chmod +x /usr/sbin/policy-rc.d.coreos-ec2
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ "$had_policy" = 1 ] || cp /usr/sbin/policy-rc.d.coreos-ec2 /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.coreos-ec2
fi

# Python packages, pinned. A stamp keyed on the requirement files skips pip when nothing changed.
reqs=(requirements.txt requirements-sandbox.txt)
[ "$profile" = dev ] && reqs+=(requirements-dev.txt)
stamp=.venv/.installed-$(cat "${reqs[@]}" | sha1sum | cut -c1-12)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -e "$stamp" ]; then
  args=(); for r in "${reqs[@]}"; do args+=(-r "$r"); done
  .venv/bin/pip install -q --disable-pip-version-check "${args[@]}"
  rm -f .venv/.installed-*; touch "$stamp"
fi

# amazon.aws: taken from the `ansible` distribution's wheel (it bundles the collection), without
# installing the other 450 MB of collections. Users with Galaxy access can use requirements.yml instead.
ANSIBLE_DIST_VERSION=12.3.0
colls=.build/collections
if [ ! -e "$colls/ansible_collections/amazon/aws/MANIFEST.json" ]; then
  mkdir -p .cache "$colls/ansible_collections"
  wheel=.cache/ansible-$ANSIBLE_DIST_VERSION-py3-none-any.whl
  [ -e "$wheel" ] || .venv/bin/pip download -q --disable-pip-version-check --no-deps \
    "ansible==$ANSIBLE_DIST_VERSION" -d .cache
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  .venv/bin/python - "$wheel" "$tmp" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith("ansible_collections/amazon/aws/")])
PY
  .venv/bin/ansible-galaxy collection install --offline --force -p "$colls" \
    "$tmp/ansible_collections/amazon/aws" >/dev/null
fi
# This collection itself, by a relative link, so the checkout can live anywhere.
mkdir -p "$colls/ansible_collections/coreos_ec2"
ln -sfn ../../../.. "$colls/ansible_collections/coreos_ec2/cluster"
echo "setup: ready ($profile) in $root/.venv"
