# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validating the desired services, the deploy plan and the diff mode entries."""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import canonical_unit, unit_hash
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.fleetctl import parse_list_unit_files
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.plan import (
    describe_plan,
    plan_units,
    unit_diff,
    validate_services,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.script import render_script

from fleet_cases import DB, LIST_UNIT_FILES, NOTHING, SLEEP, SLEEP_HASH, WEB, WEB2, actions, expect, row, sha1, web_rows


# ---------------------------------------------------------------------------------------------------
# Validating services


@pytest.mark.parametrize("services,message", [
    ("web.service", "services must be a list of dicts"),
    ({"name": "web.service"}, "services must be a list of dicts"),
    (["web.service"], r"services\[0\] must be a dict"),
    ([{"content": SLEEP}], r"services\[0\]: name must be a unit name"),
    ([{"name": "web.service", "content": SLEEP, "instance": ["a"]}], r"services\[0\]: unknown option\(s\) instance"),
    ([{"name": "web.target", "content": SLEEP}], r"services\[0\] \(web.target\): Unit name 'web.target': fleet schedules"),
    ([{"name": "web.service", "content": SLEEP, "state": "started"}],
     r"services\[0\] \(web.service\): state must be one of launched, loaded, inactive, absent, got 'started'"),
    ([{"name": "web.service", "content": SLEEP, "count": 2}], "count and instances apply to template units"),
    ([{"name": "web@1.service", "content": SLEEP, "instances": ["a"]}], "count and instances apply to template units"),
    ([{"name": "web@.service", "content": SLEEP, "count": -1}], r"services\[0\] \(web@.service\): web@.service: count must be 0 or more"),
    ([{"name": "web@.service", "content": SLEEP, "count": 2, "instances": ["a"]}], "give count or instances, not both"),
    ([{"name": "web@.service", "state": "absent", "count": 2}], "state=absent removes the template"),
    ([{"name": "web@.service", "content": SLEEP}], "fleet cannot start a template itself"),
    ([{"name": "web@.service", "content": SLEEP, "state": "loaded"}], "fleet cannot load a template itself"),
    ([{"name": "web.service"}], "content \\(the unit file text\\) is required unless state=absent"),
    ([{"name": "web.service", "content": "# nothing\n"}], "the unit file has no options"),
    ([{"name": "web.service", "content": "[Service]\nbroken\n"}], "Unit web.service: line 2: expected Name=Value"),
    ([{"name": "web.service", "content": ["[Service]"]}], "content must be the unit file as text"),
    ([{"name": "web.service", "content": SLEEP}, {"name": "db.service", "content": SLEEP},
      {"name": "web.service", "state": "absent"}], r"services\[2\] \(web.service\): already listed as services\[0\]"),
    ([{"name": "web@.service", "content": WEB, "count": 3}, {"name": "web@2.service", "content": WEB}],
     r"services\[1\] \(web@2.service\): its template web@.service is listed with count/instances"),
    ([{"name": "web@9.service", "content": WEB}, {"name": "web@.service", "content": WEB, "instances": ["a"]}],
     r"services\[0\] \(web@9.service\): its template web@.service is listed with count/instances"),
    ([{"name": "web@.service", "state": "absent"}, {"name": "web@9.service", "state": "absent"}],
     "is listed with state=absent"),
])
def test_validate_services_refuses(services, message):
    with pytest.raises(ValidationError, match=message):
        validate_services(services)


def test_validation_comes_before_looking_at_the_cluster():
    with pytest.raises(ValidationError, match="state must be one of"):
        plan_units([{"name": "web.service", "content": SLEEP, "state": "running"}], current="not rows")
    with pytest.raises(ValidationError, match="current must be the rows"):
        plan_units([{"name": "web.service", "content": SLEEP}], current="not rows")


def test_validate_services_normalises():
    entries = validate_services([
        {"name": "web@.service", "content": "[Service]\nExecStart=/w", "count": "2"},
        {"name": "db.service", "content": DB, "state": None},
        {"name": "old.service", "state": "absent"},
        {"name": "tmpl@.service", "content": SLEEP, "state": "inactive"},
        {"name": "other@x.service", "content": SLEEP},  # an instance of its own, its template not managed here
    ])
    assert [(e["name"], e["state"], e["instances"]) for e in entries] == [
        ("web@.service", "launched", ["web@1.service", "web@2.service"]),
        ("db.service", "launched", None),
        ("old.service", "absent", None),
        ("tmpl@.service", "inactive", None),
        ("other@x.service", "launched", None),
    ]
    assert entries[0]["content"] == "[Service]\nExecStart=/w\n"
    assert entries[2]["content"] is None
    assert validate_services(None) == []


# ---------------------------------------------------------------------------------------------------
# Planning


def test_fresh_cluster():
    plan = plan_units([
        {"name": "web@.service", "content": WEB, "count": 3},
        {"name": "db.service", "content": DB, "state": "loaded"},
        {"name": "cron.timer", "content": "[Timer]\nOnCalendar=daily\n", "state": "inactive"},
    ], [])
    assert actions(plan) == expect(
        submit=["web@.service", "cron.timer", "db.service", "web@1.service", "web@2.service", "web@3.service"],
        load=["db.service"], start=["web@1.service", "web@2.service", "web@3.service"],
    )
    assert plan["write"] == ["cron.timer", "db.service", "web@.service"]
    assert plan["changed"] is True
    web1 = next(u for u in plan["units"] if u["name"] == "web@1.service")
    assert web1 == {"name": "web@1.service", "source": "web@.service", "before": None,
                    "after": {"hash": unit_hash(WEB), "dstate": "launched"}, "actions": ["submit", "start"]}


def test_idempotent_plan_is_empty():
    services = [
        {"name": "web@.service", "content": WEB, "count": 2},
        {"name": "db.service", "content": DB, "state": "loaded"},
        {"name": "cron.timer", "content": "[Timer]\nOnCalendar=daily\n", "state": "inactive"},
        {"name": "gone.service", "state": "absent"},
    ]
    current = web_rows(1, 2) + [row("db.service", DB, "loaded"), row("cron.timer", "[Timer]\nOnCalendar=daily\n", "inactive")]
    plan = plan_units(services, current)
    assert actions(plan) == NOTHING
    assert plan["changed"] is False and plan["write"] == []
    assert all(unit["actions"] == [] for unit in plan["units"])
    assert render_script(plan) == ""
    assert unit_diff(plan) == []
    assert describe_plan(plan) == "all fleet units are as desired"


def test_the_listing_of_an_applied_plan_plans_nothing():
    # What parse_list_unit_files reads after a deploy is enough for the next plan to be empty.
    services = [{"name": "web@.service", "content": WEB, "count": 1}, {"name": "db.service", "content": DB}]
    current = parse_list_unit_files(LIST_UNIT_FILES)
    plan = plan_units(services, current)
    assert actions(plan) == NOTHING


def test_count_three_to_five_to_two():
    services = [{"name": "web@.service", "content": WEB, "count": 3}]
    plan = plan_units(services, [])
    assert actions(plan) == expect(submit=["web@.service", "web@1.service", "web@2.service", "web@3.service"],
                                   start=["web@1.service", "web@2.service", "web@3.service"])

    services[0]["count"] = 5
    plan = plan_units(services, web_rows(1, 2, 3))
    assert actions(plan) == expect(submit=["web@4.service", "web@5.service"], start=["web@4.service", "web@5.service"])
    # The template is in the registry already; its file is still written for fleetctl to fall back on.
    assert plan["write"] == ["web@.service"]

    services[0]["count"] = 2
    plan = plan_units(services, web_rows(1, 2, 3, 4, 5))
    assert actions(plan) == expect(destroy=["web@3.service", "web@4.service", "web@5.service"])
    assert plan["write"] == []

    services[0]["count"] = 0
    plan = plan_units(services, web_rows(1, 2))
    assert actions(plan) == expect(destroy=["web@1.service", "web@2.service"])


def test_surplus_includes_every_instance_outside_the_desired_set():
    current = web_rows(1, 2, 10, "blue") + [row("web@x.socket", SLEEP), row("webx@1.service", SLEEP)]
    plan = plan_units([{"name": "web@.service", "content": WEB, "instances": ["blue", 1, "green"]}], current)
    # Other templates' instances (webx@, web@.socket) are not this template's.
    assert actions(plan) == expect(destroy=["web@2.service", "web@10.service"], submit=["web@green.service"],
                                   start=["web@green.service"])


def test_a_changed_unit_only_replaces_that_unit():
    services = [{"name": "db.service", "content": DB.replace("/usr/bin/db", "/usr/bin/db --fast")},
                {"name": "web@.service", "content": WEB, "count": 2}]
    plan = plan_units(services, [row("db.service", DB)] + web_rows(1, 2))
    assert actions(plan) == expect(destroy=["db.service"], submit=["db.service"], replace=["db.service"],
                                   start=["db.service"])
    assert plan["write"] == ["db.service"]
    db = next(u for u in plan["units"] if u["name"] == "db.service")
    assert db["actions"] == ["destroy", "submit", "start"]
    assert describe_plan(plan) == "destroy db.service; submit db.service (replaced); start db.service"


def test_a_changed_template_replaces_it_and_its_instances():
    plan = plan_units([{"name": "web@.service", "content": WEB2, "count": 2}], web_rows(1, 2, 3))
    assert actions(plan) == expect(
        destroy=["web@.service", "web@1.service", "web@2.service", "web@3.service"],
        submit=["web@.service", "web@1.service", "web@2.service"],
        replace=["web@.service", "web@1.service", "web@2.service"],
        start=["web@1.service", "web@2.service"],
    )
    assert all(u["after"] is None or u["after"]["hash"] == unit_hash(WEB2) for u in plan["units"])


def test_an_instance_with_a_stale_hash_is_replaced_alone():
    current = web_rows(1, 2) + [row("web@3.service", WEB2)]
    plan = plan_units([{"name": "web@.service", "content": WEB, "count": 3}], current)
    assert actions(plan) == expect(destroy=["web@3.service"], submit=["web@3.service"], replace=["web@3.service"],
                                   start=["web@3.service"])
    assert plan["write"] == ["web@.service"]


def test_reformatting_a_unit_changes_nothing():
    reformatted = "# managed by ansible\n[Service]\n\n  ExecStart = /bin/sleep 100  \n"
    plan = plan_units([{"name": "sleep.service", "content": reformatted}], [row("sleep.service", SLEEP)])
    assert actions(plan) == NOTHING


def test_short_hashes_compare_by_prefix():
    current = [dict(row("sleep.service", SLEEP), hash=SLEEP_HASH[:7])]
    assert actions(plan_units([{"name": "sleep.service", "content": SLEEP}], current)) == NOTHING
    current = [dict(row("sleep.service", SLEEP), hash="0000000")]
    assert plan_units([{"name": "sleep.service", "content": SLEEP}], current)["replace"] == ["sleep.service"]


@pytest.mark.parametrize("services,current,expected", [
    ([{"name": "db.service", "state": "absent"}], [row("db.service", DB), row("other.service", SLEEP)],
     expect(destroy=["db.service"])),
    ([{"name": "db.service", "state": "absent"}], [], NOTHING),
    # An absent template takes every instance along, whatever their hash.
    ([{"name": "web@.service", "state": "absent"}], web_rows(1, 2) + [row("web@x.service", SLEEP)],
     expect(destroy=["web@.service", "web@1.service", "web@2.service", "web@x.service"])),
    ([{"name": "web@.service", "state": "absent"}], web_rows(1, template=False),
     expect(destroy=["web@1.service"])),
    # One instance can be removed on its own when its template is not managed here.
    ([{"name": "web@2.service", "state": "absent"}], web_rows(1, 2), expect(destroy=["web@2.service"])),
])
def test_absent(services, current, expected):
    assert actions(plan_units(services, current)) == expected


def test_units_nobody_names_are_left_alone():
    current = [row("other.service", SLEEP), row("foo@1.service", SLEEP), row("foo@.service", SLEEP, "inactive")]
    plan = plan_units([{"name": "web@.service", "content": WEB, "count": 0}], current)
    assert actions(plan) == expect(submit=["web@.service"])


def test_a_template_alone_is_only_submitted_and_keeps_its_instances():
    plan = plan_units([{"name": "web@.service", "content": WEB, "state": "inactive"}], web_rows(1, 2, template=False))
    assert actions(plan) == expect(submit=["web@.service"])


def test_an_instance_may_be_listed_with_its_own_content():
    services = [{"name": "web@.service", "content": WEB, "state": "inactive"},
                {"name": "web@special.service", "content": SLEEP, "state": "loaded"}]
    plan = plan_units(services, [])
    assert actions(plan) == expect(submit=["web@.service", "web@special.service"], load=["web@special.service"])
    assert plan["write"] == ["web@.service", "web@special.service"]


@pytest.mark.parametrize("dstate,state,wanted,verb", [
    ("inactive", "inactive", "launched", "start"),
    ("loaded", "loaded", "launched", "start"),
    ("inactive", "inactive", "loaded", "load"),
    ("launched", "launched", "loaded", "stop"),
    # fleetctl stop refuses a unit that is currently inactive and skips one already loaded; load sets it.
    ("launched", "inactive", "loaded", "load"),
    ("launched", "loaded", "loaded", "load"),
    ("launched", None, "loaded", "load"),  # a global unit has no current state
    ("launched", "launched", "inactive", "unload"),
    ("loaded", "loaded", "inactive", "unload"),
    (None, None, "inactive", "unload"),
    (None, None, "launched", "start"),
    ("launched", "inactive", "launched", None),  # desired already; fleet is still scheduling it
    ("loaded", "launched", "loaded", None),
    ("inactive", "inactive", "inactive", None),
])
def test_state_changes(dstate, state, wanted, verb):
    current = [row("db.service", DB, dstate, state=state)]
    plan = plan_units([{"name": "db.service", "content": DB, "state": wanted}], current)
    assert actions(plan) == (expect(**{verb: ["db.service"]}) if verb else NOTHING)


def test_plan_sorts_instances_naturally():
    plan = plan_units([{"name": "web@.service", "content": WEB, "count": 11}], web_rows(1, 2, 3, 4, 5, 6, 7, 8))
    assert plan["submit"] == ["web@9.service", "web@10.service", "web@11.service"]


@pytest.mark.parametrize("current,message", [
    ("db.service", "current must be the rows"),
    ([{"hash": SLEEP_HASH}], r"current\[0\] is not a list-unit-files row"),
])
def test_plan_refuses_bad_rows(current, message):
    with pytest.raises(ValidationError, match=message):
        plan_units([], current)


def test_plan_with_join_continuations():
    text = "[Service]\nExecStart=/bin/sh -c \\\n  'sleep 100'\n"
    joined = {"unit": "s.service", "hash": sha1("[Service]\nExecStart=/bin/sh -c    'sleep 100'\n"),
              "dstate": "launched", "state": "launched"}
    services = [{"name": "s.service", "content": text}]
    assert actions(plan_units(services, [joined], line_continuation="join")) == NOTHING
    assert plan_units(services, [joined])["replace"] == ["s.service"]


# ---------------------------------------------------------------------------------------------------
# Diff mode


def test_unit_diff():
    services = [
        {"name": "new.service", "content": "# mine\n[Service]\nExecStart=/new\n"},
        {"name": "db.service", "content": DB.replace("/usr/bin/db", "/usr/bin/db2")},
        {"name": "sleep.service", "content": SLEEP, "state": "loaded"},
        {"name": "gone.service", "state": "absent"},
        {"name": "same.service", "content": SLEEP},
    ]
    current = [row("db.service", DB), row("sleep.service", SLEEP, "launched"), row("gone.service", SLEEP),
               row("same.service", SLEEP)]
    plan = plan_units(services, current)
    diffs = {d["after_header"].split()[0]: d for d in unit_diff(plan, before_texts={"db.service": DB})}
    assert sorted(diffs) == ["db.service", "gone.service", "new.service", "sleep.service"]
    assert diffs["new.service"] == {
        "before_header": "new.service (absent)", "after_header": "new.service (launched)",
        "before": "", "after": "[Service]\nExecStart=/new\n",  # canonical: the comment is not stored
        "prepared": "new.service: absent -> launched (submit, start)\n",
    }
    assert diffs["db.service"] == {
        "before_header": "db.service (launched)", "after_header": "db.service (launched)",
        "before": DB, "after": canonical_unit(DB.replace("/usr/bin/db", "/usr/bin/db2")),
    }
    # State only: the text is the same on both sides, the prepared line tells the change.
    assert diffs["sleep.service"]["before"] == diffs["sleep.service"]["after"] == SLEEP
    assert diffs["sleep.service"]["prepared"] == "sleep.service: launched -> loaded (stop)\n"
    assert diffs["gone.service"]["after"] == "" and diffs["gone.service"]["after_header"] == "gone.service (absent)"
    assert diffs["gone.service"]["before"] == f"# gone.service: fleet unit with hash {SLEEP_HASH} (text not fetched)\n"
