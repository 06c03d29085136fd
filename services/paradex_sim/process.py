"""The simulator as a child process on free ports: start it, read its URLs, drain its output, stop it.

``python -m services.paradex_sim`` prints one JSON line with its ports and URLs when it is ready;
everything after that, and its stderr, goes to ``log_path`` -- or, without one, into a bounded
in-memory tail (``output_tail``) so a failed start can say why. Used by the chaos runner, the
benchmarks and the tests, which all need the same thing: a real simulator over loopback sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
_TAIL_LINES = 1000


class SimProcess:
    """One simulator process; ``args`` are extra command-line options (``--seed``, ``--flow-rate``)."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.env = dict(env or {})
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, object] = {}
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def start(self, timeout: float = 30.0) -> SimProcess:
        cmd = [sys.executable, "-m", "services.paradex_sim", "--rest-port", "0", "--ws-port", "0", "--admin-port", "0"]
        log: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child and the drain thread
        self.proc = subprocess.Popen(
            [*cmd, *self.args],
            env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log if log is not None else subprocess.PIPE,
            start_new_session=self.new_session,
        )
        if log is None:
            threading.Thread(target=self._drain, args=(self.proc.stderr, None), daemon=True).start()
        first: list[bytes] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not first or not first[0]:
            self.stop()
            where = f"see {self.log_path}" if self.log_path else self.output_tail()
            raise RuntimeError(f"simulator did not start: {where}")
        self.ports = json.loads(first[0])
        # Keep draining stdout so the simulator never blocks on a full pipe.
        threading.Thread(target=self._drain, args=(self.proc.stdout, log), daemon=True).start()
        return self

    def _drain(self, stream: IO[bytes] | None, log: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in stream:
            if log is not None:
                log.write(raw)
            else:
                self._tail.append(raw.decode(errors="replace"))
        if log is not None:
            log.close()

    def output_tail(self, lines: int = 20) -> str:
        """The last lines the simulator wrote (only kept when there is no ``log_path``)."""
        return "".join(list(self._tail)[-lines:])

    @property
    def rest_url(self) -> str:
        return str(self.ports["rest_url"])

    @property
    def ws_url(self) -> str:
        return str(self.ports["ws_url"])

    @property
    def admin_url(self) -> str:
        return str(self.ports["admin_url"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode
