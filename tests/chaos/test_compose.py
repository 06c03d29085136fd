"""``compose.yaml``, ``Dockerfile`` and ``deploy/``: validated without Docker (it cannot run here).

Structure: every service has the image/build, a ``python -m services.<pkg>`` command that exists,
its own NATS user with a password from ``.env``, the 3-node seed list and ``BUS_REPLICAS=3``, a
health check that names a known service, ``depends_on`` on healthy NATS nodes; the feed handler
has replicas; the simulator sits behind the ``sim`` profile; the NATS nodes form one cluster.
Then the NATS node config of the compose file is run for real: three nats-server processes from
``deploy/nats/cluster.conf`` + ``auth.conf`` (only ports, routes and the store directory are
changed for loopback), a service user provisions R3 streams and is refused a foreign subject, and
``deploy/healthcheck.py`` judges a ServiceHealth in KV.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import yaml

from bus import Bucket, NatsSettings, connect, ensure_streams, jetstream
from bus.auth import ROLES, user_inbox_prefix
from bus.embedded import free_port, nats_server_binary
from schemas import ServiceHealth, encode

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
NATS_CONF = ROOT / "deploy" / "nats" / "cluster.conf"
SERVICES = {
    "signer": "services.signer",
    "feed-handler": "services.feed_handler",
    "book-builder": "services.book_builder",
    "order-router": "services.order_router",
    "reconciler": "services.reconciler",
}
NATS_NODES = ("nats-1", "nats-2", "nats-3")

sys.path.insert(0, str(ROOT / "deploy"))
import render  # noqa: E402 - deploy/ is not a package


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


_VAR = re.compile(r"\$\{([A-Z0-9_]+)(:?[-?])?([^}]*)\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Docker compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3)
        have = name in env
        val = env.get(name, "")
        if op == ":?" and not val:
            raise KeyError(f"{name}: {arg}")
        if op == ":-":
            return val or arg
        if op == "-":
            return val if have else arg
        return val

    return _VAR.sub(sub, value)


def test_compose_services_structure() -> None:
    doc = _compose()
    services = doc["services"]
    assert set(SERVICES) | set(NATS_NODES) | {"paradex-sim"} <= set(services)
    env_file = dict(
        line.split("=", 1) for line in render.render_env().splitlines() if line and not line.startswith("#")
    )
    for name, module in SERVICES.items():
        svc = services[name]
        assert svc.get("build") or svc.get("image"), name
        assert svc["build"]["dockerfile"] == "Dockerfile"
        cmd = svc["command"]
        assert cmd[:2] == ["python", "-m"] and cmd[2] == module, (name, cmd)
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} is not runnable"
        env = {k: interpolate(str(v), env_file) for k, v in svc["environment"].items()}
        assert env["NATS_USER"] == name and name in ROLES, name
        assert env["NATS_INBOX_PREFIX"] == user_inbox_prefix(name)  # auth.conf has no shared _INBOX.>
        assert env["NATS_PASSWORD"] == env_file[render.password_var(name)], name
        assert env["NATS_URL"].split(",") == [f"nats://{n}:4222" for n in NATS_NODES]
        assert env["BUS_REPLICAS"] == "3"
        assert env["PARADEX_REST_URL"] == "http://paradex-sim:8000/v1"
        assert env["PARADEX_WS_URL"] == "ws://paradex-sim:8001/v1"
        # A missing .env must stop compose with a message, not start services without passwords.
        with pytest.raises(KeyError, match=r"render\.py env"):
            interpolate(str(svc["environment"]["NATS_PASSWORD"]), {})
        hc = svc["healthcheck"]
        assert hc["test"][:3] == ["CMD", "python", "/app/deploy/healthcheck.py"] and hc["test"][3] == name
        assert hc["interval"] and hc["retries"] >= 3 and hc["start_period"]
        deps = svc["depends_on"]
        for node in NATS_NODES:
            assert deps[node]["condition"] == "service_healthy", (name, node)
        assert deps["paradex-sim"]["required"] is False  # the simulator is optional (profile)
        assert svc["restart"] == "unless-stopped" and svc["stop_signal"] == "SIGTERM"
        for dep in deps:
            assert dep in services, (name, dep)
    for name in ("order-router", "reconciler"):
        assert services[name]["depends_on"]["signer"]["condition"] == "service_healthy"
    assert services["feed-handler"]["deploy"]["replicas"] >= 2
    assert services["feed-handler"]["environment"]["FEED_MODE"] == "shard"
    assert services["signer"]["environment"]["SIGNER_KEY_DIR"].startswith("/var/lib/pdx/")
    assert any(v.startswith("signer-keys:") for v in services["signer"]["volumes"])
    sim = services["paradex-sim"]
    assert sim["profiles"] == ["sim"]
    assert sim["command"][:3] == ["python", "-m", "services.paradex_sim"] and "0.0.0.0" in sim["command"]
    assert {"8000:8000", "8001:8001", "8002:8002"} <= set(sim["ports"])
    assert "healthcheck" in sim
    # Declared volumes are the named ones used.
    used = {v.split(":", 1)[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert used <= set(doc["volumes"]), used - set(doc["volumes"])


def test_compose_nats_cluster_structure() -> None:
    services = _compose()["services"]
    conf = NATS_CONF.read_text()
    routes = re.findall(r"nats-route://([a-z0-9-]+):(\d+)", conf)
    assert sorted(routes) == [(n, "6222") for n in NATS_NODES]
    assert re.search(r"^jetstream \{", conf, re.M) and "store_dir: /data/jetstream" in conf
    assert "server_name: $SERVER_NAME" in conf and "include ./auth.conf" in conf
    assert "lame_duck_duration" in conf
    host_ports = set()
    for node in NATS_NODES:
        svc = services[node]
        assert svc["command"] == ["nats-server", "-c", "/etc/nats/cluster.conf"]
        assert svc["hostname"] == node
        assert svc["stop_signal"] == "SIGUSR2"  # lame-duck mode on `docker compose stop`
        grace = int(svc["stop_grace_period"].rstrip("s"))
        ldm = re.search(r"lame_duck_duration: (\d+)s", conf) and re.search(r"lame_duck_grace_period: (\d+)s", conf)
        assert ldm, conf
        durations = [int(x) for x in re.findall(r"lame_duck_(?:duration|grace_period): (\d+)s", conf)]
        assert grace > sum(durations), (grace, durations)
        assert svc["environment"]["SERVER_NAME"] == node
        # nats-server expands the passwords of auth.conf from its environment: all of .env.
        assert svc["env_file"] == [".env"], node
        assert "./deploy/nats:/etc/nats:ro" in svc["volumes"]
        assert any(v.startswith(f"{node}-data:/data") for v in svc["volumes"])
        assert "8222/healthz" in " ".join(svc["healthcheck"]["test"])
        for p in svc["ports"]:
            host_ports.add(p.split(":")[0])
    assert len(host_ports) == 6  # 3 client + 3 monitoring ports, no clash


def test_dockerfile_and_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("FROM python:3.11") == 2
    for src in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for part in src.split()[:-1]:
            assert (ROOT / part).exists(), f"Dockerfile copies missing {part}"
    assert "pip install ." in text and "USER pdx" in text
    assert 'ENTRYPOINT ["/bin/sh", "/app/deploy/entrypoint.sh"]' in text
    out = subprocess.run(
        ["/bin/sh", str(ROOT / "deploy" / "entrypoint.sh"), "sh", "-c", "echo $INSTANCE_ID"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "INSTANCE_ID"},
        check=True,
    )
    assert out.stdout.strip() == os.uname().nodename


def test_auth_conf_is_current_with_bus_auth() -> None:
    """``deploy/nats/auth.conf`` is generated from ``bus.auth``; a permission change must be re-rendered
    (``python deploy/render.py auth``), and ``.env`` has a password for every role it names."""
    assert (ROOT / "deploy" / "nats" / "auth.conf").read_text() == render.render_auth(), (
        "deploy/nats/auth.conf is out of date with bus/auth.py: run `python deploy/render.py auth`"
    )
    env = render.render_env()
    for role in ROLES:
        assert f"password: ${render.password_var(role)}," in render.render_auth()
        assert f"\n{render.password_var(role)}=pdx" in env, role


@pytest.fixture
def compose_cluster(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str], list[subprocess.Popen[bytes]]]]:
    """The compose NATS nodes for real, on loopback: the same config files, ports/routes by flag."""
    env_file = dict(
        line.split("=", 1) for line in render.render_env().splitlines() if line and not line.startswith("#")
    )
    (tmp_path / "auth.conf").write_text((NATS_CONF.parent / "auth.conf").read_text())
    ports = [(free_port(), free_port(), free_port()) for _ in NATS_NODES]
    routes = ",".join(f"nats://127.0.0.1:{c}" for _, _, c in ports)
    procs: list[subprocess.Popen[bytes]] = []
    for i, (client, http, cluster) in enumerate(ports):
        # nats-server refuses a second store_dir from the command line, so only that line changes.
        conf = tmp_path / f"n{i + 1}.conf"
        conf.write_text(NATS_CONF.read_text().replace("/data/jetstream", str(tmp_path / f"data{i + 1}")))
        procs.append(
            subprocess.Popen(
                [
                    nats_server_binary(),
                    "-c",
                    str(conf),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(client),
                    "-m",
                    str(http),
                    "--cluster",
                    f"nats://127.0.0.1:{cluster}",
                    "--routes",
                    routes,
                ],
                env={**os.environ, **env_file, "SERVER_NAME": f"nats-{i + 1}"},
                stdout=open(tmp_path / f"n{i + 1}.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield [f"nats://127.0.0.1:{c}" for c, _, _ in ports], env_file, procs
    finally:
        for p in procs:
            p.kill()
            p.wait(5)


async def test_compose_nats_config_runs_as_a_cluster(compose_cluster, tmp_path: Path) -> None:
    urls, env_file, procs = compose_cluster
    assert all(p.poll() is None for p in procs), (tmp_path / "n1.log").read_text()
    fh = NatsSettings(
        servers=tuple(urls),
        user="feed-handler",
        password=env_file["PDX_NATS_PASSWORD_FEED_HANDLER"],
        inbox_prefix=user_inbox_prefix("feed-handler"),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            nc = await connect("compose-test", fh, max_reconnect_attempts=1)
            js = jetstream(nc)
            actions = await ensure_streams(js, replicas=3)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)  # the meta leader is being elected
    try:
        assert actions["MD"] in ("created", "ok")
        info = await js.stream_info("MD")
        assert info.config.num_replicas == 3 and info.cluster is not None
        assert len(info.cluster.replicas or []) == 2
        ack = await js.publish("md.paradex.trades.BTC-USD-PERP", b"x", headers={"Nats-Msg-Id": "t1"})
        assert ack.stream == "MD"
        with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
            await js.publish("cmd.paradex.0xabc.BTC-USD-PERP", b"x", timeout=1)  # not the feed handler's
        # Without its own inbox prefix a service gets no replies: the shared _INBOX.> is not allowed.
        shared = await nats.connect(
            urls[0], user="feed-handler", password=env_file["PDX_NATS_PASSWORD_FEED_HANDLER"], allow_reconnect=False
        )
        try:
            with pytest.raises(Exception):  # noqa: B017 - a timeout or the permissions error, by nats-py version
                await shared.jetstream(timeout=1).stream_info("MD")
        finally:
            await shared.close()
        # A wrong password is refused.
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(urls[0], user="signer", password="wrong", allow_reconnect=False, connect_timeout=2)
    finally:
        await nc.close()

    # deploy/healthcheck.py judges the container's own KV health entry.
    admin = NatsSettings(servers=tuple(urls), user="admin", password=env_file["PDX_NATS_PASSWORD_ADMIN"])
    nc = await connect("compose-admin", admin, max_reconnect_attempts=1)
    try:
        bucket = await Bucket.open(jetstream(nc), "health")
        now = time.time_ns()
        await bucket.put(
            "book-builder.ctr-1",
            encode(ServiceHealth(service="book-builder", instance="ctr-1", state="Running", ts_event=now, ts_init=now)),
        )
        await bucket.put(
            "book-builder.ctr-2",
            encode(
                ServiceHealth(service="book-builder", instance="ctr-2", state="Recovering", ts_event=now, ts_init=now)
            ),
        )
    finally:
        await nc.close()
    env = {
        **os.environ,
        "NATS_URL": ",".join(urls),
        "NATS_USER": "book-builder",
        "NATS_PASSWORD": env_file["PDX_NATS_PASSWORD_BOOK_BUILDER"],
        "NATS_INBOX_PREFIX": user_inbox_prefix("book-builder"),
    }
    script = str(ROOT / "deploy" / "healthcheck.py")

    def run(instance: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, "book-builder", "--instance", instance],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    ok, starting, missing = await asyncio.gather(
        asyncio.to_thread(run, "ctr-1"), asyncio.to_thread(run, "ctr-2"), asyncio.to_thread(run, "ctr-3")
    )
    assert ok.returncode == 0 and "Running" in ok.stdout, ok.stdout + ok.stderr
    assert starting.returncode == 1 and "Recovering" in starting.stdout, starting.stdout + starting.stderr
    assert missing.returncode == 1 and "no health report" in missing.stdout, missing.stdout + missing.stderr
