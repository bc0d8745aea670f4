"""The gateway keeps one aiohttp session per engine socket: requests that arrive together
for a freshly loaded engine share one, and sessions of stopped engines are closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dsdeploy.gateway.proxy import EngineProxy


def test_requests_arriving_together_for_a_new_engine_share_one_session(tmp_path: Path) -> None:
    old, new = tmp_path / "old.sock", tmp_path / "new.sock"
    old.touch()
    new.touch()

    async def scenario() -> None:
        async with EngineProxy() as proxy:
            stale = await proxy.session_for(old)
            old.unlink()  # that engine was unloaded to make room
            first, second = await asyncio.gather(proxy.session_for(new), proxy.session_for(new))
            assert first is second
            assert proxy.sessions == {new: first}
            assert stale.closed

    asyncio.run(scenario())
