"""The pager core on event time: routing, re-page, escalation, failsafe, acknowledgement (no echo),
resolution on session close, on supersede and by a clinician (docs/paging.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infusion_monitor.schemas.vocab import Severity
from infusion_monitor.pager.core import alert_site
from tests.pager.fixtures import Driver, ack, alert, cleared, closed, minutes, routes

# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "site", "route", "first_pages"), [
    (Severity.CRITICAL, None, "emergency", [(0, "pd1", "trigger", 1)]),
    (Severity.HIGH, "site-north", "emergency", [(0, "pd1", "trigger", 1)]),
    (Severity.MEDIUM, None, "nurse", [(0, "nurse", "trigger", 1)]),
    (Severity.MEDIUM, "site-south", "nurse", [(0, "nurse", "trigger", 1)]),
    (Severity.MEDIUM, "site-north", "nurse-north", [(0, "nurse-north", "trigger", 1)]),
    (Severity.LOW, None, "record-only", []),
    (Severity.INFO, "site-north", "record-only", []),
])
def test_routing_by_severity_and_site(severity, site, route, first_pages):
    d = Driver().send(alert(0, severity, site=site))
    assert d.pages() == first_pages
    state = d.engine.state_of("pager", "pk-1")
    assert state.alerts[alert(0, severity).alert_id].route == route


def test_site_comes_from_a_site_id_field_or_the_evidence():
    class WithSite:
        site_id = "site-a"
        evidence = {"site_id": "site-b"}

    class InEvidence:
        evidence = {"site_id": "site-b"}

    assert alert_site(WithSite()) == "site-a"
    assert alert_site(InEvidence()) == "site-b"
    assert alert_site(alert(0)) is None


# -- re-page, escalation, failsafe on event time ----------------------------------------------

CRITICAL_TIMELINE = [  # (minute, destination, action, sequence) with nobody acknowledging
    (0, "pd1", "trigger", 1),
    (5, "pd1", "trigger", 2),    # re-page after 5 min
    (10, "pd2", "trigger", 1),   # tier 2 at +10 min
    (20, "fs", "trigger", 1),    # failsafe 10 min after tier 2
]


@pytest.mark.parametrize("horizon", [4.99, 5, 9.99, 10, 19.99, 20, 240])
def test_unacknowledged_critical_repages_escalates_then_failsafe(horizon):
    d = Driver().send(alert(0)).until(horizon)
    assert d.pages() == [p for p in CRITICAL_TIMELINE if p[0] <= horizon]


def test_escalation_events_name_the_tiers():
    d = Driver().send(alert(0)).until(60)
    steps = [(e.from_tier, e.to_tier, e.failsafe, e.destinations, e.occurred_at) for e in d.of_type("alert.escalated")]
    assert steps == [(1, 2, False, ["pd2"], minutes(10)), (2, 3, True, ["fs"], minutes(20))]


def test_timers_fire_before_a_later_event_is_handled():
    """A later event moves the clock past the due times first (clinical-rules.md, time)."""
    other = alert(12, Severity.MEDIUM, patient="pk-2")
    d = Driver().send(alert(0), other)
    assert [(m, dest) for m, dest, _, _ in d.pages()] == [(0, "pd1"), (5, "pd1"), (10, "pd2"), (12, "nurse")]


# -- acknowledgement ---------------------------------------------------------------------------

@pytest.mark.parametrize(("ack_at", "via", "extra", "expected_after_ack"), [
    # board / api: relayed to every destination that got a trigger; escalation stops
    (3, "board", {}, [(3, "pd1", "acknowledge", 2)]),
    (7, "api", {}, [(7, "pd1", "acknowledge", 3)]),
    (12, "board", {}, [(12, "pd1", "acknowledge", 3), (12, "pd2", "acknowledge", 2)]),
    # the pager it came from never gets it back (no echo); the other pagers do
    (12, "pager", {"destination": "pd2"}, [(12, "pd1", "acknowledge", 3)]),
    (3, "pager", {"destination": "pd1"}, []),
    # a pager acknowledgement without its origin is relayed to no one
    (12, "pager", {}, []),
])
def test_acknowledgement_stops_escalation_without_echo(ack_at, via, extra, expected_after_ack):
    a = alert(0)
    d = Driver().send(a, ack(a.alert_id, ack_at, via, **extra)).until(240)
    before = [p for p in CRITICAL_TIMELINE if p[0] < ack_at]
    assert d.pages() == before + expected_after_ack
    assert not [e for e in d.of_type("alert.escalated") if e.occurred_at > minutes(ack_at)]


def test_a_second_acknowledgement_and_an_unknown_one_change_nothing():
    a = alert(0)
    d = Driver().send(a, ack(a.alert_id, 1), ack(a.alert_id, 2, by="dr-z"), ack("al-unknown", 3))
    assert d.pages() == [(0, "pd1", "trigger", 1), (1, "pd1", "acknowledge", 2)]
    assert [n.reason for n in d.notices] == ["acknowledgement of an alert the pager does not know"]


# -- resolution --------------------------------------------------------------------------------

def test_session_close_resolves_every_open_alert_of_the_session():
    a, other_session, no_session = alert(0), alert(1, session="s2", condition="x"), alert(2, Severity.MEDIUM, session=None)
    d = Driver().send(a, ack(a.alert_id, 1), other_session, no_session, closed(30))
    resolved = d.of_type("alert.resolved")
    assert [(r.alert_id, r.reason.value, r.occurred_at) for r in resolved] == [(a.alert_id, "session_closed", minutes(30))]
    assert [p for p in d.pages() if p[0] == 30] == [(30, "pd1", "resolve", 3)]
    d.send(closed(31))  # a repeated close resolves nothing twice
    assert len(d.of_type("alert.resolved")) == 1


def test_unacknowledged_alert_goes_to_the_failsafe_when_its_session_closes():
    a = alert(0)
    d = Driver().send(a, closed(3))
    assert d.pages() == [(0, "pd1", "trigger", 1), (3, "fs", "trigger", 1), (3, "pd1", "resolve", 2)]
    assert [e.failsafe for e in d.of_type("alert.escalated")] == [True]
    d.until(240)
    assert d.pages()[-1] == (3, "pd1", "resolve", 2)  # timers stopped, the failsafe stays open


def test_failsafe_on_close_can_be_switched_off():
    a = alert(0)
    d = Driver(routes(failsafe_on_unacknowledged_close=False)).send(a, closed(3))
    assert d.pages() == [(0, "pd1", "trigger", 1), (3, "pd1", "resolve", 2)]


def test_superseding_alert_resolves_the_one_it_replaces():
    high = alert(0, Severity.HIGH, condition="mild")
    critical = alert(2, Severity.CRITICAL, condition="severe", supersedes=high.alert_id)
    d = Driver().send(high, critical).until(240)
    resolved = d.of_type("alert.resolved")
    assert [(r.alert_id, r.reason.value) for r in resolved] == [(high.alert_id, "superseded")]
    by_alert = {}
    for p in d.of_type("page.requested"):
        by_alert.setdefault(p.alert_id, []).append(((p.occurred_at - minutes(0)).total_seconds() / 60,
                                                    p.destination, p.event_action))
    assert by_alert[high.alert_id] == [(0, "pd1", "trigger"), (2, "pd1", "resolve")]  # no re-page at 5
    assert by_alert[critical.alert_id][:2] == [(2, "pd1", "trigger"), (7, "pd1", "trigger")]


def test_cleared_by_a_clinician_resolves_everywhere_it_was_sent():
    a = alert(0)
    d = Driver().send(a).until(12).send(cleared(a.alert_id, 13)).until(240)
    assert d.pages()[-2:] == [(13, "pd1", "resolve", 3), (13, "pd2", "resolve", 2)]
    assert all(p[0] <= 13 for p in d.pages())


def test_record_only_alerts_are_tracked_but_never_paged():
    low = alert(0, Severity.LOW)
    d = Driver().send(low, closed(10)).until(240)
    assert d.pages() == []
    assert [r.alert_id for r in d.of_type("alert.resolved")] == [low.alert_id]


def test_the_same_alert_twice_pages_once():
    d = Driver().send(alert(0), alert(0))
    assert d.pages() == [(0, "pd1", "trigger", 1)]


def test_alerts_are_forgotten_after_resolution_plus_memory():
    a = alert(0)
    d = Driver().send(a, closed(3)).until(3 + 72 * 60 + 1)
    assert d.engine.state_of("pager", "pk-1").alerts == {}


# -- page.requested carries what the adapters need --------------------------------------------

def test_page_requested_shape_and_deterministic_ids():
    a = alert(0)
    d1, d2 = Driver().send(a, ack(a.alert_id, 1)), Driver().send(a, ack(a.alert_id, 1))
    assert d1.jsonl() == d2.jsonl()
    trigger, acknowledge = d1.of_type("page.requested")
    assert trigger.alert["alert_id"] == a.alert_id and trigger.alert["type"] == "alert.raised"
    assert (trigger.adapter, trigger.route, trigger.tier, trigger.dedup_key) == ("pagerduty", "emergency", 1, a.dedup_key)
    assert trigger.lifecycle is None
    assert acknowledge.lifecycle["type"] == "alert.acknowledged" and acknowledge.lifecycle["by"] == "dr-a"
    assert len({trigger.event_id, acknowledge.event_id}) == 2


# -- the session's close resolves its alerts, whatever their age and whatever arrives first ------
# (issue 17, point 8: alerts dated months before the pager's clock were forgotten at once by
# their acknowledged_memory_days timer, so the session.closed found nothing to resolve and
# `infusion-monitor alerts` showed them `raised` for good)

DAY = 24 * 60


@pytest.mark.parametrize("age_days", [0, 1, 29, 30, 31, 400])
def test_an_alert_of_any_age_is_resolved_when_its_session_closes(age_days):
    d = Driver().until(age_days * DAY + 10)  # the pager's clock (live: the wall clock) is this far ahead
    a = alert(0)
    d.send(a)
    assert a.alert_id in d.engine.state_of("pager", "pk-1").alerts  # not forgotten before its session closed
    d.send(closed(3))
    assert [(r.alert_id, r.reason.value) for r in d.of_type("alert.resolved")] == [(a.alert_id, "session_closed")]


def test_an_alert_arriving_after_its_session_closed_is_resolved_with_the_pages_of_the_order_made():
    """The alert and output streams have no common order: a session.closed may reach the pager
    before an alert raised before the close. The pages are those of the order they were made in:
    a trigger, then at the close the failsafe (nobody acknowledged it) and a resolve."""
    a = alert(0)
    as_made = Driver().send(a, closed(3))
    close_first = Driver().send(closed(3), a)
    assert [r.alert_id for r in close_first.of_type("alert.resolved")] == [a.alert_id]
    assert close_first.pages() == as_made.pages() == [
        (0, "pd1", "trigger", 1), (3, "fs", "trigger", 1), (3, "pd1", "resolve", 2)]


def test_an_old_alert_arriving_after_its_session_closed_is_resolved_at_once():
    a = alert(0)
    d = Driver().until(400 * DAY).send(closed(3), a)
    assert [(r.alert_id, r.occurred_at) for r in d.of_type("alert.resolved")] == [(a.alert_id, minutes(3))]
    assert [(m, dest, action) for m, dest, action, _ in d.pages()] == [
        (0, "pd1", "trigger"), (3, "fs", "trigger"), (3, "pd1", "resolve")]


def test_an_alert_dated_after_its_sessions_close_stays_open_and_is_paged():
    """A reading judged after the close still raises its alert (clinical-rules.md): it is not
    swept up by a close that came before it."""
    late = alert(10)
    d = Driver().send(closed(3), late)
    assert d.of_type("alert.resolved") == []
    assert d.pages()[0] == (10, "pd1", "trigger", 1)


@given(st.integers(0, 120), st.integers(0, 120), st.integers(0, 800), st.booleans())
def test_resolved_iff_raised_before_the_close_arrived_or_dated_at_or_before_it(alert_m, close_m, clock_days, close_first):
    a = alert(alert_m)
    d = Driver().until(clock_days * DAY)
    d.send(*((closed(close_m), a) if close_first else (a, closed(close_m))))
    resolved = [r.alert_id for r in d.of_type("alert.resolved")] == [a.alert_id]
    assert resolved == (not close_first or alert_m <= close_m)


def test_an_open_sessions_alert_is_kept_past_the_memory_then_forgotten_after_the_close():
    a = alert(0)
    d = Driver().send(a).until(45 * DAY)  # acknowledged_memory_days (30) passed, the session still open
    assert a.alert_id in d.engine.state_of("pager", "pk-1").alerts
    d.send(closed(45 * DAY)).until(45 * DAY + 72 * 60 + 1)
    assert [r.alert_id for r in d.of_type("alert.resolved")] == [a.alert_id]
    assert d.engine.state_of("pager", "pk-1").alerts == {}


def test_an_alert_without_a_session_is_still_forgotten_after_the_memory():
    a = alert(0, session=None)
    d = Driver().send(a).until(30 * DAY + 1)
    assert d.engine.state_of("pager", "pk-1").alerts == {}


def test_the_closed_sessions_remembered_are_bounded():
    from infusion_monitor.pager.state import CLOSED_SESSIONS_KEPT

    d = Driver().send(*(closed(m, session=f"s{m}") for m in range(CLOSED_SESSIONS_KEPT + 5)))
    kept = d.engine.state_of("pager", "pk-1").closed_sessions
    assert list(kept) == [f"s{m}" for m in range(5, CLOSED_SESSIONS_KEPT + 5)]
