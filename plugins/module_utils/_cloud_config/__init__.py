# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the `#cloud-config` user data every machine of a cluster boots with.

The user's own base file (their units and files) is merged with what the collection generates: etcd
with the cluster's discovery setting, flannel's network config, fleet, and the EBS data volume. The
rule: generated settings win where they collide with the base file, and each overridden unit,
drop-in, file or key is named in a warning; base units and files that do not collide are kept as
they are. Nothing here talks to the outside world: it is text in, text out.

Two flavours of the OS read this user data with coreos-cloudinit:
- flatcar (Flatcar Container Linux): etcd runs as etcd-member.service (an etcd container whose image
  tag a drop-in pins), and there is no fleet any more, so fleetd and fleetctl are copied out of
  fleet's last container image into /opt/bin and run from a unit of our own.
- coreos (legacy CoreOS Container Linux): the built-in coreos.etcd2 and coreos.fleet sections and
  the etcd2/fleet services.

Flatcar's parser reads a unit's drop-ins as `drop_ins` (the yaml tag in coreos-cloudinit's
config/unit.go) and turns `-` into `_` in every key first (config.go NewCloudConfig), so both
spellings parse there; old CoreOS documented `drop-ins`. We accept either in a base file and emit
the flavour's own spelling.

Submodules (import each name from the one that defines it; this package re-exports nothing):
- settings: the module's options as CloudConfigSettings, their defaults, settings_from_params and
  validate_settings.
- entries: rules for coreos.units and write_files entries (systemd unit names, commands, drop-ins,
  file paths), the `-`/`_` key spellings, validate_cloud_config, and readers of a config's units.
- scripts: the shell scripts written into the machines (EBS prepare, fleet install) and their paths.
- units: the generated units and drop-ins (etcd-member, flannel, EBS, fleet), systemd path
  escaping, and the generated and units/write_files-option layers.
- merge: laying one cloud-config over another, and finalising drop-in spelling for a flavour.
- legacy: an existing CoreOS cloud-config as the base: refuse_volume_wipes (units that would wipe or
  format the data volume), translate_for_flatcar (coreos.etcd2/coreos.fleet to etcd-member and fleet
  drop-ins, etcd2.service/fleet.service dropped) and replace_discovery_urls (the fresh URL everywhere).
- user_data: PyYAML, parsing and loading a base file, rendering and checking the user data.
- build: build_user_data, everything together, and its CloudConfigResult.

Dependencies run one way: entries and scripts import nothing of the package; settings imports
entries; units imports entries, scripts and settings; user_data and merge import entries; build
imports the rest; legacy imports entries, merge, settings and units.
"""
