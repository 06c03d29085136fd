"""The Nautilus integration stays optional: nothing outside ``services.nautilus`` needs the extra,
the package imports without it, and using it without the extra says how to install it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["nautilus_trader"] = None  # as if the extra were not installed
    import schemas, bus, bus.sdk, bus.trading, services.execution.projection, services.cli.main
    import services.nautilus as n
    out = {"available": n.available(), "error": n.ConversionError.__mro__[1].__name__}
    for name in ("to_nautilus", "ParadexExecutionClient", "build_node"):
        try:
            getattr(n, name)
            out[name] = "imported"
        except n.NautilusUnavailable as exc:
            out[name] = str(exc)
    try:
        import services.nautilus.convert
    except n.NautilusUnavailable:
        out["convert"] = "NautilusUnavailable"
    out["loaded"] = sorted(m for m in sys.modules if m.startswith("nautilus_trader") and sys.modules[m] is not None)
    print(json.dumps(out))
    """
)


def test_the_project_works_without_the_extra_and_says_how_to_get_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["available"] is False and out["error"] == "ValueError" and out["loaded"] == []
    assert out["convert"] == "NautilusUnavailable"
    for name in ("to_nautilus", "ParadexExecutionClient", "build_node"):
        assert "pip install 'paradex-bus[nautilus]'" in out[name], out[name]
