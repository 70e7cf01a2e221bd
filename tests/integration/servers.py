"""Start real backends for the integration tests: Arize Phoenix and Prometheus.

Each server is installed when missing (Prometheus through apt, as root), started
on 127.0.0.1 on a free port with a temporary working directory, waited for
(bounded), and stopped afterwards. Where a server cannot be had the test is
skipped with the reason, except under ``CI=true``, where it fails instead: CI
must run these tests, never skip them quietly.

Every install and start is timed into :data:`TIMINGS`; ``conftest.py`` prints
them at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
TIMINGS: list[tuple[str, float]] = []
"""(what, seconds) for every install and server start in this session."""

START_TIMEOUT_S = 120.0
INSTALL_TIMEOUT_S = 600.0


def in_ci() -> bool:
    """Return True when running under CI (``CI`` set to a true value)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``, or fail it under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: integration tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Record how long the block took under ``what`` in :data:`TIMINGS`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        TIMINGS.append((what, time.perf_counter() - t0))


@dataclass
class Server:
    """A server process this session started; ``stop()`` ends it and only it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    workdir: Path
    extra: dict[str, object] = field(default_factory=dict)

    def log_tail(self, n: int = 40) -> str:
        """Return the last ``n`` lines of the server's log."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        """Terminate the server's process group (it was started in its own session)."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _spawn(
    argv: list[str], *, env: dict[str, str], log: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends exactly this tree
        )


def wait_http(server: Server, path: str, *, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``server.url + path`` until it answers 200; fail (bounded) with the log tail."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(
        f"{server.name} not ready after {timeout_s:.0f}s ({last}):\n{server.log_tail()}"
    )


def listening_addresses(pid_tree_root: int) -> set[str]:
    """Return the local addresses (``ip:port``) the process group of ``pid_tree_root`` listens on.

    Reads ``/proc/net/tcp{,6}`` and the processes' socket inodes, so it needs no ``ss``.
    """
    inodes: set[str] = set()
    pgid = os.getpgid(pid_tree_root)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (OSError, ProcessLookupError):
            continue
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            port = int(hex_port, 16)
            if width == 8:
                ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_ip)[::-1])
            else:
                raw = bytes.fromhex(hex_ip)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, raw)
            found.add(f"{ip}:{port}")
    return found


# -- Phoenix ---------------------------------------------------------------------------

# Phoenix's OTLP/gRPC server binds "[::]:<port>" unconditionally (phoenix/server/grpc_server.py);
# PHOENIX_HOST only moves the HTTP server. We start it through this launcher, which rewrites
# the gRPC bind address to loopback so nothing listens beyond 127.0.0.1.
_PHOENIX_LAUNCHER = """
import sys
from grpc.aio import _server

def _loopback(address):
    return address.replace("[::]", "127.0.0.1").replace("0.0.0.0", "127.0.0.1")

_insecure = _server.Server.add_insecure_port
_secure = _server.Server.add_secure_port
_server.Server.add_insecure_port = lambda self, a: _insecure(self, _loopback(a))
_server.Server.add_secure_port = lambda self, a, c: _secure(self, _loopback(a), c)

from phoenix.server.main import main
sys.argv = ["phoenix", "serve"]
main()
"""


def phoenix_installed() -> bool:
    """Return True when the arize-phoenix server is installed in this interpreter.

    Checked through package metadata: importing ``phoenix`` costs ~15 s of CPU.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("arize-phoenix")
    except PackageNotFoundError:
        return False
    return True


def start_phoenix(workdir: Path) -> Server:
    """Start Phoenix on 127.0.0.1 (free HTTP and gRPC ports), no telemetry; wait until ready."""
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": HOST,
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        # No phoning home: telemetry pixels off, and no fetches of public resources at all.
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_LOG_MIGRATIONS": "false",
    }
    for key in [k for k in env if k.startswith(("PHOENIX_SQL", "PHOENIX_POSTGRES"))]:
        del env[key]  # always the temp SQLite database in workdir
    log = workdir / "phoenix.log"
    with timed("phoenix start (until /healthz answers)"):
        proc = _spawn([sys.executable, "-c", _PHOENIX_LAUNCHER], env=env, log=log, cwd=workdir)
        server = Server("phoenix", f"http://{HOST}:{port}", proc, log, workdir)
        server.extra["grpc_port"] = grpc_port
        try:
            wait_http(server, "/healthz")
        except BaseException:
            server.stop()
            raise
    return server


# -- Prometheus ---------------------------------------------------------------------------


def ensure_prometheus() -> str | None:
    """Return the prometheus binary, installing Debian's package when missing and root."""
    found = shutil.which("prometheus")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with timed("apt-get update + install prometheus"):
        for argv in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
        ):
            subprocess.run(
                argv,
                env=env,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=INSTALL_TIMEOUT_S,
            )
    return shutil.which("prometheus")


def stop_fleet(prometheus: Server | None, workers: list[subprocess.Popen[bytes]]) -> None:
    """Stop Prometheus (when it started) and the worker processes scraped by it."""
    if prometheus is not None:
        prometheus.stop()
    for proc in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in workers:
        proc.wait(timeout=20)


def start_prometheus(binary: str, workdir: Path, targets: list[str]) -> Server:
    """Start Prometheus on 127.0.0.1 scraping ``targets`` every second; wait until ready."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "coordgap-workers",
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": targets}],
                    }
                ],
            }
        )
    )
    data = workdir / "data"
    data.mkdir()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={HOST}:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    log = workdir / "prometheus.log"
    with timed("prometheus start (until /-/ready answers)"):
        proc = _spawn(argv, env=dict(os.environ), log=log, cwd=workdir)
        server = Server("prometheus", f"http://{HOST}:{port}", proc, log, workdir)
        try:
            wait_http(server, "/-/ready")
        except BaseException:
            server.stop()
            raise
    return server
