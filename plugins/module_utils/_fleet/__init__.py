# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploying fleet units with fleetctl on one cluster machine, as pure functions the fleet actions call.

Nothing here runs a command: the action plugins (fleet_units, fleet_info) run the listing commands, feed
their output to a parser, ask for a plan, show it (check mode, diff mode) and run the rendered script over
their connection. Every fleet behaviour relied on names the fleet or go-systemd source file it comes from.

Submodules, each imported directly (this package re-exports nothing); each depends only on those above it:
- unit: go-systemd unit file parsing and serialisation, fleet's unit hash, unit names and templates.
- fleetctl: fleetctl command lines, parsing fleetctl's listings, several commands in one round trip.
- plan: the deploy plan (what to destroy, submit, unload, stop, load, start) and the check/diff data.
- script: rendering the one POSIX sh script that applies a plan, and reading back which step failed.
- spec: the argument specs of the fleet actions.
"""
