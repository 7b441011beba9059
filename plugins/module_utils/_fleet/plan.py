# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy plan: desired services against fleetctl list-unit-files rows, and what check and diff mode show.

Nothing here runs a command or renders one (script.py turns a plan into the script that applies it).

Planning (desired services against list-unit-files rows):
- validate_services(services) -> [dict]: the services checked and normalised; ValidationError on bad input.
- plan_units(services, current, line_continuation="keep") -> plan: what to destroy, submit (and which of
  those are replacements), unload, stop, load and start; plan["changed"] says whether anything is to do.
- describe_plan(plan) -> str: one line for a task result.

Diff mode:
- unit_diff(plan, before_texts=None) -> [{"before_header", "after_header", "before", "after"[, "prepared"]}]
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Set

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import (
    _check_continuation,
    _natural,
    _unit_key,
    canonical_unit,
    normalize_content,
    parse_unit,
    template_instances,
    unit_hash,
    unit_name_info,
    validate_unit_name,
)

STATES = ("launched", "loaded", "inactive", "absent")
DEFAULT_STATE = "launched"

_SERVICE_KEYS = ("name", "content", "state", "count", "instances")


# ---------------------------------------------------------------------------------------------------
# Planning


def _service_entry(index: int, service: Any) -> Dict[str, Any]:
    where = f"services[{index}]"
    if not isinstance(service, Mapping):
        raise ValidationError(f"{where} must be a dict with name, content and state, got {type(service).__name__}")
    unknown = sorted(str(key) for key in service if key not in _SERVICE_KEYS)
    if unknown:
        raise ValidationError(f"{where}: unknown option(s) {', '.join(unknown)}; expected {', '.join(_SERVICE_KEYS)}")
    name = service.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{where}: name must be a unit name such as web.service, got {name!r}")
    where = f"services[{index}] ({name})"
    try:
        info = validate_unit_name(name)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.msg}") from None

    state = service.get("state")
    state = DEFAULT_STATE if state is None else state
    if state not in STATES:
        raise ValidationError(f"{where}: state must be one of {', '.join(STATES)}, got {state!r}")
    count, instances = service.get("count"), service.get("instances")
    if count is not None and instances is not None:
        raise ValidationError(f"{where}: give count or instances, not both")
    if (count is not None or instances is not None) and not info["is_template"]:
        raise ValidationError(f"{where}: count and instances apply to template units (a name like foo@.service) only")
    if (count is not None or instances is not None) and state == "absent":
        raise ValidationError(f"{where}: state=absent removes the template and all its instances; drop count/instances")
    if info["is_template"] and count is None and instances is None and state in ("launched", "loaded"):
        # api/units.go refuses any state but inactive for a template ("cannot activate template").
        raise ValidationError(
            f"{where}: fleet cannot {'start' if state == 'launched' else 'load'} a template itself; give count or "
            "instances to run instances of it, or state=inactive to only submit it"
        )
    try:
        names = template_instances(name, count, instances) if count is not None or instances is not None else None
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.msg}") from None

    content = None
    if state != "absent":
        if service.get("content") is None:
            raise ValidationError(f"{where}: content (the unit file text) is required unless state=absent")
        content = normalize_content(service.get("content"), name)
        if not parse_unit(content, name):
            # api/units.go: "unit does not exist and options field empty".
            raise ValidationError(f"{where}: the unit file has no options; fleet refuses an empty unit")
    return {"name": name, "state": state, "content": content, "instances": names, "info": info}


def validate_services(services: Any) -> List[Dict[str, Any]]:
    """The desired services checked and normalised, before anything is listed or changed.

    Each service is a dict: name (a unit name), content (the unit file text; not needed for absent),
    state (launched, loaded, inactive or absent; default launched) and, for a template (foo@.service),
    count (instances foo@1..foo@<count>) or instances (their names). Returns dicts with name, state,
    content (normalize_content, None when absent), instances (the instance unit names of a template with
    count or instances, else None) and info (unit_name_info). Raises ValidationError naming the service.
    """
    if services is None:
        return []
    if isinstance(services, (str, bytes, Mapping)) or not isinstance(services, Iterable):
        raise ValidationError(f"services must be a list of dicts, got {type(services).__name__}")
    entries = [_service_entry(index, service) for index, service in enumerate(services)]

    seen: Dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry["name"] in seen:
            raise ValidationError(f"services[{index}] ({entry['name']}): already listed as services[{seen[entry['name']]}]")
        seen[entry["name"]] = index
    by_name = {entry["name"]: entry for entry in entries}
    for index, entry in enumerate(entries):
        template = by_name.get(entry["info"]["template"]) if entry["info"]["is_instance"] else None
        if template is not None and (template["instances"] is not None or template["state"] == "absent"):
            # The template's entry decides every instance: it would destroy this one or fight over it.
            how = "state=absent" if template["state"] == "absent" else "count/instances"
            raise ValidationError(
                f"services[{index}] ({entry['name']}): its template {template['name']} is listed with {how}, which "
                "manages all its instances; list the instance there instead"
            )
    return entries


def _check_rows(rows: Any) -> Dict[str, Mapping[str, Any]]:
    if rows is None:
        return {}
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise ValidationError(f"current must be the rows of parse_list_unit_files, got {type(rows).__name__}")
    by_name: Dict[str, Mapping[str, Any]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("unit"), str):
            raise ValidationError(f"current[{index}] is not a list-unit-files row: expected a dict with 'unit'")
        by_name.setdefault(row["unit"], row)
    return by_name


def _is_template(name: str) -> bool:
    info = unit_name_info(name)
    return bool(info and info["is_template"])


def _hash_matches(listed: Any, wanted: str) -> bool:
    # Without --full fleetctl prints 7 characters (unit.Hash.Short); accept a prefix so such rows still compare.
    return isinstance(listed, str) and len(listed) >= 7 and wanted.startswith(listed.lower())


def _state_action(current: Optional[str], wanted: str, current_state: Optional[str]) -> Optional[str]:
    """The fleetctl command that moves a unit's desired state from `current` to `wanted`, None if none."""
    if current == wanted:
        return None
    if wanted == "launched":
        return "start"
    if wanted == "inactive":
        return "unload"
    # wanted == "loaded". fleetctl stop refuses a unit whose current state is inactive and skips one that is
    # already loaded without changing its desired state (fleetctl/stop.go); load sets it in every case.
    if current == "launched" and current_state == "launched":
        return "stop"
    return "load"


def _before(row: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    if row is None:
        return None
    return {"hash": row.get("hash"), "dstate": row.get("dstate"), "state": row.get("state")}


def plan_units(services: Any, current: Any, line_continuation: str = "keep") -> Dict[str, Any]:
    """What to run to bring the cluster's fleet units to the desired services.

    `current` are the rows of parse_list_unit_files. Services are checked first (validate_services).
    A template is kept submitted (desired state inactive, which is all fleet allows it) and its instances
    take the service's state and share its hash, as fleetctl creates an instance from its template.
    - destroy: units of absent services (an absent template takes all its instances along), instances of a
      template with count/instances that are not in the desired set, and units whose hash differs.
    - submit: new units and those replaced (destroyed because the hash differs), templates first.
    - unload, stop, load, start: desired-state changes (submit leaves a unit inactive; load -> loaded,
      start -> launched, stop -> loaded from launched, unload -> inactive). A unit in its desired state
      with the desired hash needs nothing; units no service names are left alone.
    Also: replace (the units destroyed and submitted again), write (unit files the script writes: what is
    submitted, and the template of each submitted instance), texts (the desired text of every plain unit
    and template), units (one entry per desired or destroyed unit: name, source (whose text it uses),
    before {hash, dstate, state} or None, after {hash, dstate} or None, actions in the order they run),
    line_continuation, and changed.
    """
    _check_continuation(line_continuation)
    entries = validate_services(services)
    rows = _check_rows(current)

    texts: Dict[str, str] = {}
    desired: Dict[str, Dict[str, Any]] = {}
    destroy: Dict[str, str] = {}  # name -> why
    managed: Dict[str, Set[str]] = {}  # template -> the instances it keeps
    absent_templates: Set[str] = set()
    for entry in entries:
        name = entry["name"]
        if entry["state"] == "absent":
            if name in rows:
                destroy[name] = "absent"
            if entry["info"]["is_template"]:
                absent_templates.add(name)
            continue
        texts[name] = entry["content"]
        digest = unit_hash(entry["content"], name, line_continuation)
        if entry["info"]["is_template"]:
            desired[name] = {"hash": digest, "dstate": "inactive", "source": name}
            if entry["instances"] is not None:
                managed[name] = set(entry["instances"])
                for instance in entry["instances"]:
                    desired[instance] = {"hash": digest, "dstate": entry["state"], "source": name}
        else:
            desired[name] = {"hash": digest, "dstate": entry["state"], "source": name}

    for unit in rows:
        info = unit_name_info(unit)
        if not info or not info["is_instance"]:
            continue
        if info["template"] in absent_templates:
            destroy.setdefault(unit, "absent")
        elif info["template"] in managed and unit not in managed[info["template"]]:
            destroy.setdefault(unit, "surplus")

    submit: List[str] = []
    replace: List[str] = []
    transitions: Dict[str, List[str]] = {"unload": [], "stop": [], "load": [], "start": []}
    units: Dict[str, Dict[str, Any]] = {}
    for name, want in desired.items():
        row = rows.get(name)
        actions: List[str] = []
        current_dstate = row.get("dstate") if row is not None else None
        current_state = row.get("state") if row is not None else None
        if row is None or not _hash_matches(row.get("hash"), want["hash"]):
            if row is not None:
                destroy[name] = "replace"
                replace.append(name)
                actions.append("destroy")
            submit.append(name)
            actions.append("submit")
            current_dstate, current_state = "inactive", "inactive"
        action = _state_action(current_dstate, want["dstate"], current_state)
        if action:
            transitions[action].append(name)
            actions.append(action)
        units[name] = {"name": name, "source": want["source"], "before": _before(row),
                       "after": {"hash": want["hash"], "dstate": want["dstate"]}, "actions": actions}
    for name, why in destroy.items():
        if why != "replace":
            units[name] = {"name": name, "source": None, "before": _before(rows.get(name)), "after": None,
                           "actions": ["destroy"]}

    # Templates go first so that each instance submitted after them finds its template in the registry.
    submit.sort(key=lambda n: (0 if _is_template(n) else 1, _unit_key(n)))
    write = {name if name in texts else desired[name]["source"] for name in submit}
    plan: Dict[str, Any] = {
        "destroy": _natural(destroy), "submit": submit, "replace": _natural(replace),
        "unload": _natural(transitions["unload"]), "stop": _natural(transitions["stop"]),
        "load": _natural(transitions["load"]), "start": _natural(transitions["start"]),
        "write": _natural(write), "texts": texts,
        "units": [units[name] for name in _natural(units)],
        "line_continuation": line_continuation,
    }
    plan["changed"] = any(plan[key] for key in ("destroy", "submit", "unload", "stop", "load", "start"))
    return plan


def describe_plan(plan: Mapping[str, Any]) -> str:
    """One line for a task result: "destroy foo@4.service; submit web.service (replaced); start web.service"."""
    parts = []
    replaced = set(plan.get("replace") or [])
    for verb in ("destroy", "submit", "unload", "stop", "load", "start"):
        names = list(plan.get(verb) or [])
        if not names:
            continue
        if verb == "submit" and replaced:
            names = [f"{name} (replaced)" if name in replaced else name for name in names]
        parts.append(f"{verb} {', '.join(names)}")
    return "; ".join(parts) if parts else "all fleet units are as desired"


# ---------------------------------------------------------------------------------------------------
# Diff mode


def unit_diff(plan: Mapping[str, Any], before_texts: Optional[Mapping[str, str]] = None) -> List[Dict[str, str]]:
    """Ansible diff entries, one per unit the plan changes.

    Texts are the canonical form (what `fleetctl cat` prints) so formatting does not show as a change.
    `before_texts` maps unit names to their current text (`fleetctl cat <unit>`); without it a unit whose
    hash differs shows a one-line placeholder naming its hash, and a unit with the desired hash shows the
    desired text. Headers carry the desired state, and a state change adds a `prepared` line, since the
    text alone would not show it.
    """
    before_texts = before_texts or {}
    line_continuation = plan.get("line_continuation", "keep")
    canonical: Dict[str, str] = {}

    def text_of(source: str) -> str:
        if source not in canonical:
            canonical[source] = canonical_unit(plan["texts"][source], source, line_continuation)
        return canonical[source]

    diffs = []
    for entry in plan["units"]:
        if not entry["actions"]:
            continue
        name, before, after = entry["name"], entry["before"], entry["after"]
        after_text = text_of(entry["source"]) if after else ""
        if before is None:
            before_text = ""
        elif name in before_texts:
            before_text = before_texts[name]
        elif after and "destroy" not in entry["actions"]:
            before_text = after_text
        else:
            before_text = f"# {name}: fleet unit with hash {before.get('hash')} (text not fetched)\n"
        before_state = (before.get("dstate") or "unknown") if before else "absent"
        after_state = after["dstate"] if after else "absent"
        diff = {
            "before_header": f"{name} ({before_state})",
            "after_header": f"{name} ({after_state})",
            "before": before_text,
            "after": after_text,
        }
        if before_state != after_state:
            diff["prepared"] = f"{name}: {before_state} -> {after_state} ({', '.join(entry['actions'])})\n"
        diffs.append(diff)
    return diffs
