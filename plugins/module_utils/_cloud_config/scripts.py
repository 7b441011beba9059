# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shell scripts the user data writes into the machines, and where they go.

- coreos-ebs-prepare gives the EBS data volume a filesystem when it has none.
- coreos-fleet-install copies fleetd and fleetctl out of fleet's container image (Flatcar only).
"""

from __future__ import annotations


EBS_SCRIPT_PATH = "/opt/bin/coreos-ebs-prepare"
FLEET_INSTALL_SCRIPT_PATH = "/opt/bin/coreos-fleet-install"


# Runs at every boot (coreos-cloudinit starts it each time), so it must never format twice: it
# formats only when `blkid -p` finds no filesystem or partition table. EBS_DEV_ROOT/EBS_SYS_ROOT
# exist so tests can point the NVMe scan at a fake /dev and /sys instead of the host's disks.
EBS_PREPARE_SCRIPT = r"""#!/bin/bash
# coreos-ebs-prepare DEVICE LABEL FSTYPE: find the EBS volume attached as DEVICE and give it a
# filesystem, only when it has none (a reboot must never lose the volume's data).
set -euo pipefail
want=${1:?usage: coreos-ebs-prepare DEVICE LABEL FSTYPE} label=${2:?label} fstype=${3:-ext4}
wait=${EBS_WAIT_SECONDS:-120} devroot=${EBS_DEV_ROOT:-/dev} sysroot=${EBS_SYS_ROOT:-/sys}
name=${want##*/} dir=${want%/*} twin=
case $name in sd*) twin=$dir/xvd${name#sd} ;; xvd*) twin=$dir/sd${name#xvd} ;; esac
log() { echo "coreos-ebs-prepare: $*" >&2; }
# Nitro: EBS records the attachment name in the vendor area (bytes 3072+) of NVMe id-ctrl.
ebs_name() {
  command -v nvme >/dev/null 2>&1 || return 1
  local n
  n=$(nvme id-ctrl -b "$1" 2>/dev/null | tail -c +3073 | head -c 32 | tr -d '\0 ') || return 1
  echo "${n#/dev/}"
}
root_disk() {
  local src
  src=$(findmnt -no SOURCE / 2>/dev/null) || return 0
  lsblk -no PKNAME "$src" 2>/dev/null | head -n1 || true
}
resolve() {
  local d n base root found=()
  for d in "$want" $twin; do [ -b "$d" ] && { echo "$d"; return 0; }; done
  for d in "$devroot"/nvme*n1; do
    [ -b "$d" ] || continue
    n=$(ebs_name "$d") || continue
    if [ "$n" = "$name" ] || { [ -n "$twin" ] && [ "$n" = "${twin##*/}" ]; }; then echo "$d"; return 0; fi
  done
  root=$(root_disk)
  for d in "$devroot"/nvme*n1; do
    base=${d##*/}
    if [ ! -b "$d" ] || [ "$base" = "$root" ]; then continue; fi
    grep -qs "Amazon Elastic Block Store" "$sysroot/class/block/$base/device/model" || continue
    compgen -G "$sysroot/class/block/$base/${base}p*" >/dev/null && continue
    found+=("$d")
  done
  [ "${#found[@]}" -gt 0 ] || return 1
  [ "${#found[@]}" -eq 1 ] || log "several unpartitioned EBS NVMe disks (${found[*]}); taking ${found[0]}"
  echo "${found[0]}"
}
for ((i = 0; ; i++)); do
  dev=$(resolve) && break
  if [ "$i" -ge "$wait" ]; then log "no block device for $want${twin:+ or $twin} (nor an EBS NVMe disk) after ${wait}s"; exit 1; fi
  sleep 1
done
# blkid also says "nothing found" when it cannot read the device: make sure it can.
dd if="$dev" of=/dev/null bs=4096 count=1 status=none
rc=0; blkid -p "$dev" >/dev/null 2>&1 || rc=$?
case $rc in
  0) log "$dev ($want) already holds a filesystem or partition table; not formatting" ;;
  2) log "formatting $dev ($want) as $fstype with label $label"
     "mkfs.$fstype" -L "$label" "$dev"
     if command -v udevadm >/dev/null 2>&1; then udevadm settle --timeout=30 || true; fi ;;
  *) log "blkid -p $dev failed (exit $rc); refusing to format"; exit 1 ;;
esac
"""

# Flatcar ships no fleet: copy fleetd and fleetctl out of fleet's last image once.
FLEET_INSTALL_SCRIPT = r"""#!/bin/bash
# coreos-fleet-install IMAGE: copy fleetd and fleetctl out of fleet's container image into /opt/bin.
set -euo pipefail
image=${1:?usage: coreos-fleet-install IMAGE} dest=${FLEET_BIN_DIR:-/opt/bin}
mkdir -p "$dest"
# First boot may come before the network is fully up: a few bounded tries (unit timeout: 10 min).
for try in 1 2 3 4 5; do
  docker pull "$image" && break
  [ "$try" -lt 5 ] || exit 1
  sleep $((try * 10))
done
cid=$(docker create "$image")
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
for bin in fleetd fleetctl; do
  rm -f "$dest/.$bin.new"
  # fleet v1.0.0's Dockerfile puts them in /usr/local/bin; /opt/fleet for images built otherwise.
  for src in /usr/local/bin /opt/fleet; do
    docker cp "$cid:$src/$bin" "$dest/.$bin.new" 2>/dev/null && break
  done
  [ -f "$dest/.$bin.new" ] || { echo "coreos-fleet-install: no $bin in $image" >&2; exit 1; }
  chmod 0755 "$dest/.$bin.new"
  mv -f "$dest/.$bin.new" "$dest/$bin"
done
"""
