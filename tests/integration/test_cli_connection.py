"""A command-line verb's connection (``NatsAccess.connect_once``): one attempt that fails at once with
the server's reason, and, once connected, the server's refusals said on standard error rather than
swallowed (``status`` would otherwise report "no service heard" for a refused subscription)."""

from __future__ import annotations

import asyncio

import pytest

from infusion_monitor.runtime.access import CannotConnect, NatsAccess
from infusion_monitor.runtime.embedded import EmbeddedAuth, EmbeddedNats

pytestmark = pytest.mark.integration


async def test_a_refused_subscription_is_said_and_a_wrong_password_fails_at_once(tmp_path, capfd):
    with EmbeddedNats(tmp_path / "nats", auth=EmbeddedAuth(tmp_path / "credentials")) as server:
        producer = await server.access("producer").connect_once("producer")
        try:
            await producer.subscribe("im.alert.>")  # a producer may only publish
            await producer.flush()
            await asyncio.sleep(0.5)
        finally:
            await producer.close()
        assert capfd.readouterr().err == "nats: permissions violation for subscription to \"im.alert.>\"\n"

        wrong = NatsAccess(server.url)  # no credentials: anonymous access is refused
        with pytest.raises(CannotConnect, match="as operator"):
            await asyncio.wait_for(wrong.connect_once("operator"), 15)
