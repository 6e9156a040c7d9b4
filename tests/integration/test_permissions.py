"""Least privilege, proven (issue 14): the NATS permissions table (``services/runtime/permissions.py``)
against what the code really publishes and subscribes.

Every service and operator command runs under its own user on a real ``nats-server`` that traces
each client's protocol lines (``permission_scenario.py``). The test fails when a service needs a
subject it is not granted (the server reports a permissions violation, and the scenario itself
stalls) and when a grant is used by nobody. The shipped ``deploy/nats`` configurations must be
the table's rendering (a drift check, like the AsyncAPI document's).

To add a subject: add the grant to the role in ``permissions.py`` with the code that needs it,
run ``python -m infusion_monitor.runtime.permissions --write deploy/nats/accounts.conf
deploy/nats/single.conf deploy/nats/cluster-node*.conf``, and make the scenario exercise it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infusion_monitor.runtime.names import Names
from infusion_monitor.runtime.permissions import DEPLOY_MONITOR_INSTANCES, Role, rewrite_config, roles
from tests.integration.permission_scenario import INSTANCES, Observed, observe

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nats"
SHIPPED = ("accounts.conf", "single.conf", "cluster-node1.conf", "cluster-node2.conf", "cluster-node3.conf")


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or token not in ("*", got[i]):
            return False
    return len(want) == len(got)


@pytest.mark.parametrize(("pattern", "subject", "expected"), [
    ("im.in.>", "im.in.pk-1.vitals.recorded", True),
    ("im.in.>", "im.in", False),
    ("im.in.*.clock.tick", "im.in._.clock.tick", True),
    ("im.in.*.clock.tick", "im.in.a.b.clock.tick", False),
    ("$JS.API.CONSUMER.CREATE.IM_IN.*.im.in.>", "$JS.API.CONSUMER.CREATE.IM_IN.abc.im.in.>", True),
    ("$JS.API.STREAM.INFO.IM_IN", "$JS.API.STREAM.INFO.IM_INX", False),
])
def test_subject_matching(pattern, subject, expected):
    assert matches(pattern, subject) is expected


def test_the_shipped_configs_are_the_tables_rendering():
    """deploy/nats/*.conf carry exactly the table's accounts block (password hashes aside)."""
    table = roles(Names(), DEPLOY_MONITOR_INSTANCES)
    for name in SHIPPED:
        text = (DEPLOY / name).read_text()
        assert rewrite_config(text, table) == text, (
            f"{name} differs from services/runtime/permissions.py: run python -m infusion_monitor.runtime.permissions "
            "--write deploy/nats/*.conf")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    import asyncio

    return asyncio.run(observe(tmp_path_factory.mktemp("permissions"), roles(Names(), INSTANCES)))


def _used(role: Role, observed: Observed) -> tuple[set[str], set[str]]:
    return observed.published.get(role.user, set()), observed.subscribed.get(role.user, set())


def test_no_service_or_command_lacks_a_subject(observed):
    assert observed.violations == []
    for role in roles(Names(), INSTANCES):
        if not role.restricted:
            continue
        published, subscribed = _used(role, observed)
        assert published, f"{role.user} was not exercised"
        lacking = [s for s in published if not any(matches(g.subject, s) for g in role.publish or ())]
        lacking += [s for s in subscribed if not any(matches(g.subject, s) for g in role.subscribe)]
        assert lacking == [], f"{role.user} used subjects it is not granted: {sorted(lacking)}"
        denied = [s for s in published if any(matches(g.subject, s) for g in role.deny)]
        assert denied == [], f"{role.user} used denied subjects: {sorted(denied)}"


def test_every_grant_is_used(observed):
    unused = []
    for role in roles(Names(), INSTANCES):
        if not role.restricted:
            continue
        published, subscribed = _used(role, observed)
        unused += [(role.user, g.subject, g.why) for g in role.publish or () if not any(matches(g.subject, s) for s in published)]
        unused += [(role.user, g.subject, g.why) for g in role.subscribe if not any(matches(g.subject, s) for s in subscribed)]
    assert unused == [], "grants no service uses (remove them, or exercise them in permission_scenario.py):\n" + \
        "\n".join(f"  {user}: {subject}  ({why})" for user, subject, why in unused)


def test_only_admin_may_change_streams_and_publish_clock_ticks():
    """Read from the table itself: no restricted user is granted a stream or consumer deletion,
    a stream change or purge, and each may not publish clock.tick (a deny wins over any allow)."""
    forbidden = ("$JS.API.STREAM.CREATE", "$JS.API.STREAM.UPDATE", "$JS.API.STREAM.DELETE", "$JS.API.STREAM.PURGE",
                 "$JS.API.STREAM.MSG.DELETE", "$JS.API.>", "$JS.>", ">")
    for role in roles(Names(), DEPLOY_MONITOR_INSTANCES):
        if not role.restricted:
            assert role.user in ("admin", "sys")
            continue
        for grant in role.publish or ():
            assert not grant.subject.startswith(forbidden[:5]) and grant.subject not in forbidden[5:], (role.user, grant)
        if any(matches(g.subject, "im.in._.clock.tick") for g in role.publish or ()):
            assert any(matches(g.subject, "im.in._.clock.tick") for g in role.deny), role.user
