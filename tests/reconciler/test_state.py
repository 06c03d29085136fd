"""Durable state: watermarks only move forward, the start-up marker is readable by others, and the
dedupe set and report state survive a restart."""

from __future__ import annotations

from pathlib import Path

from nats.js import JetStreamContext

from services.reconciler.state import LocalState, StartupMarker, Watermarks, read_startup_marker


async def test_watermarks_move_forward_only_and_marker_is_shared(js: JetStreamContext) -> None:
    wm = await Watermarks.open(js, "0xabc")
    assert await wm.get("fills") is None
    assert await wm.advance("fills", 1000, "r1") == 1000
    assert await wm.advance("fills", 900, "r2") == 1000  # a stale run never moves it back
    assert await (await Watermarks.open(js, "0xabc")).get("fills") == 1000
    assert await read_startup_marker(js, "0xabc") is None
    await wm.mark_startup(StartupMarker(account="0xabc", run_id="r1", ok=True, ts_ns=1, mass_status_seq=7))
    marker = await read_startup_marker(js, "0xabc")
    assert marker is not None and marker.ok and marker.mass_status_seq == 7


def test_dedupe_set_and_report_state_survive_a_restart(tmp_path: Path) -> None:
    st = LocalState(tmp_path, "0xabc")
    st.remember_emitted(["pdx:fill:0xabc:1", "pdx:fill:0xabc:2"])
    st.set_report_state("position", "BTC-USD-PERP", "42:0.01")
    st.close()
    again = LocalState(tmp_path, "0xabc")
    assert again.emitted("pdx:fill:0xabc:1") and again.emitted("pdx:fill:0xabc:2")
    assert not again.emitted("pdx:fill:0xabc:3")
    assert again.report_state("position", "BTC-USD-PERP") == "42:0.01"
    again.close()
