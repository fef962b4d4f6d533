"""A private, throw-away Docker engine for tests.

`start_engine()` starts a real `dockerd` (with its own managed containerd)
whose data-root, exec-root, pidfile, config and unix socket all live in a
short temporary directory such as ``/tmp/od-k3j9/``. It uses no registry and
no network: the test image ``orchestrator-test/busybox:latest`` is imported
from a rootfs tarball built from the machine's static busybox. It returns a
`DockerEngine`, or a one-line reason string when an engine cannot run here
(not root, dockerd not installed, no cgroups, the daemon died...). It never
raises for those.

Engine settings: ``--iptables=false --ip6tables=false --bridge=none``, so
containers must use ``network_mode="none"`` (or ``"host"``); storage driver
overlay2, falling back to vfs; cgroups under a parent named after the temp
directory; its own ``daemon.json`` so the machine's ``/etc/docker`` is ignored.

Pytest use (``conftest.py``)::

    pytest_plugins = ["tests.support.dockerd"]

    def test_x(docker_engine: DockerEngine) -> None:
        c = docker_engine.client.containers.run(
            docker_engine.image, ["sh", "-c", "echo hi"], network_mode="none", detach=True
        )

``docker_engine`` is session scoped; ``docker_engine_clean`` is the same
engine but removes every container after each test; ``docker_host_env`` is
``docker_engine_clean`` with ``$DOCKER_HOST`` set (for ``docker.from_env()``). When the engine cannot
start, both skip with the reason; ``ORCHESTRATOR_TEST_DOCKER=require`` turns
that skip into a failure and ``ORCHESTRATOR_TEST_DOCKER=skip`` skips without
trying. ``ORCHESTRATOR_TEST_DOCKER_STORAGE_DRIVER`` forces a storage driver.

Needs the Debian packages installed by ``.ci/system-deps.sh`` (docker.io,
busybox-static) and root.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import DockerException
from requests.exceptions import RequestException

IMAGE = "orchestrator-test/busybox:latest"
ENV_MODE = "ORCHESTRATOR_TEST_DOCKER"
ENV_STORAGE_DRIVER = "ORCHESTRATOR_TEST_DOCKER_STORAGE_DRIVER"
STORAGE_DRIVERS = ("overlay2", "vfs")
DEFAULT_TIMEOUT = 60.0

_PREFIX = "od-"
_MARKER = ".orchestrator-dockerd"
_OWNER = "owner.json"
_SOCKET_MAX = 107  # sun_path is 108 bytes including the trailing NUL
_SBIN_DIRS = (
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
)
_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1

_live: set[_Daemon] = set()
_live_lock = threading.Lock()


# --------------------------------------------------------------------------- engine


@dataclass(eq=False)
class DockerEngine:
    """A running private dockerd. Call `stop()` (idempotent) when done."""

    client: docker.DockerClient
    base_url: str
    image: str
    storage_driver: str
    startup_seconds: float
    import_seconds: float
    _daemon: _Daemon = field(repr=False)

    @property
    def root(self) -> Path:
        """The temp directory holding data-root, exec-root, socket and log."""
        return self._daemon.root

    @property
    def log_path(self) -> Path:
        return self._daemon.log_path

    @property
    def pid(self) -> int:
        return self._daemon.proc.pid if self._daemon.proc else -1

    @property
    def env(self) -> dict[str, str]:
        """Environment for `docker.from_env(environment=...)` or the docker CLI."""
        return {"DOCKER_HOST": self.base_url}

    def new_client(self, **kwargs: Any) -> docker.DockerClient:
        """A fresh client on this engine (the caller closes it)."""
        return docker.DockerClient(base_url=self.base_url, **kwargs)

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)

    def reset(self) -> None:
        """Force-remove every container (and unused volumes); keep the test image."""
        for container in self.client.containers.list(all=True):
            with contextlib.suppress(DockerException):
                container.remove(force=True, v=True)
        with contextlib.suppress(DockerException):
            self.client.volumes.prune()

    def stop(self) -> None:
        """Remove containers, stop dockerd and its containerd, unmount, delete the temp dir."""
        if self._daemon.stopped:
            return
        if self._daemon.running():
            with contextlib.suppress(Exception):
                self.reset()
        with contextlib.suppress(Exception):
            self.client.close()
        self._daemon.shutdown()


def start_engine(
    *,
    timeout: float = DEFAULT_TIMEOUT,
    storage_driver: str | None = None,
    dockerd: str | None = None,
) -> DockerEngine | str:
    """Start a private dockerd with the test image imported, or say why it can't.

    `storage_driver` (or $ORCHESTRATOR_TEST_DOCKER_STORAGE_DRIVER) forces one
    driver; by default overlay2 is tried, then vfs. `dockerd` overrides the
    binary. Returns a `DockerEngine` or a one-line reason string.
    """
    path = _search_path()
    binaries, reason = _preflight(path, dockerd)
    if reason:
        return reason
    _sweep_stale()
    forced = storage_driver or os.environ.get(ENV_STORAGE_DRIVER, "").strip()
    drivers = (forced,) if forced else STORAGE_DRIVERS
    failures: list[str] = []
    for driver in drivers:
        result = _start_one(binaries, path, driver, timeout)
        if isinstance(result, DockerEngine):
            return result
        failures.append(f"[{driver}] {result}")
    return "private dockerd unavailable: " + "; ".join(failures)


# --------------------------------------------------------------------------- pytest


def _mode() -> str:
    return os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A real private dockerd for the whole session (skips with the reason if impossible)."""
    mode = _mode()
    if mode in {"skip", "off", "0", "no", "false"}:
        pytest.skip(f"{ENV_MODE}={mode}: real-dockerd tests disabled")
    result = start_engine()
    if isinstance(result, str):
        if mode == "require":
            pytest.fail(f"{ENV_MODE}=require but {result}", pytrace=False)
        pytest.skip(result)
    try:
        yield result
    finally:
        result.stop()


@pytest.fixture
def docker_engine_clean(docker_engine: DockerEngine) -> Iterator[DockerEngine]:
    """`docker_engine`, with every container removed after the test."""
    try:
        yield docker_engine
    finally:
        docker_engine.reset()


@pytest.fixture
def docker_host_env(docker_engine_clean: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> DockerEngine:
    """`docker_engine_clean` with $DOCKER_HOST pointing at it (for code using `docker.from_env()`)."""
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", docker_engine_clean.base_url)
    return docker_engine_clean


# --------------------------------------------------------------------------- daemon


@dataclass(eq=False)
class _Daemon:
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False

    @property
    def socket(self) -> Path:
        return self.root / "d.sock"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return self.root.name

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self) -> list[str]:
        """Stop everything belonging to this root; return problems (best effort, no raise)."""
        if self.stopped:
            return []
        self.stopped = True
        problems: list[str] = []
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                problems.append("dockerd ignored SIGTERM for 20s; killed")
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        # Whatever outlived dockerd: managed containerd, shims, container processes.
        for _ in range(3):
            pids = set(_pids_referencing(self.root)) | set(_cgroup_pids(self.cgroup_parent))
            pids.discard(os.getpid())
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        _remove_cgroups(self.cgroup_parent)
        problems.extend(_unmount_under(self.root))
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"could not remove {self.root}")
        with _live_lock:
            _live.discard(self)
        return problems


def _start_one(binaries: dict[str, str], path: str, driver: str, timeout: float) -> DockerEngine | str:
    root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=_short_tmp()))
    daemon = _Daemon(root)
    with _live_lock:
        _live.add(daemon)
    try:
        return _boot(daemon, binaries, path, driver, timeout)
    except Exception as exc:
        daemon.shutdown()
        return f"{type(exc).__name__}: {exc}"


def _boot(daemon: _Daemon, binaries: dict[str, str], path: str, driver: str, timeout: float) -> DockerEngine | str:
    root = daemon.root
    (root / _MARKER).write_text("private dockerd started by tests/support/dockerd.py\n")
    (root / "daemon.json").write_text("{}\n")
    socket = daemon.socket
    if len(str(socket)) > _SOCKET_MAX:
        daemon.shutdown()
        return f"socket path {socket} is longer than {_SOCKET_MAX} bytes"
    base_url = f"unix://{socket}"
    argv = [
        binaries["dockerd"],
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'd.pid'}",
        f"--config-file={root / 'daemon.json'}",
        f"--host={base_url}",
        f"--storage-driver={driver}",
        f"--cgroup-parent={daemon.cgroup_parent}",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--shutdown-timeout=2",
    ]
    env = {"PATH": path, "HOME": str(root), "LANG": "C.UTF-8"}
    started = time.monotonic()
    with open(daemon.log_path, "ab") as log:
        daemon.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    (root / _OWNER).write_text(
        json.dumps(
            {
                "owner_pid": os.getpid(),
                "owner_start": _start_time(os.getpid()),
                "dockerd_pid": daemon.proc.pid,
            }
        )
    )

    client = _wait_for_ping(daemon, base_url, started + timeout)
    if isinstance(client, str):
        daemon.shutdown()
        return client
    startup = time.monotonic() - started
    try:
        actual = client.info().get("Driver")
        if actual != driver:
            raise RuntimeError(f"dockerd chose storage driver {actual!r}, not {driver!r}")
        began = time.monotonic()
        _import_image(client, binaries["busybox"])
        _smoke(client)
        imported = time.monotonic() - began
    except Exception as exc:
        client.close()
        tail = _error_lines(daemon.log_path)
        daemon.shutdown()
        return f"dockerd started but {type(exc).__name__}: {exc}" + (f" (log: {tail})" if tail else "")
    return DockerEngine(
        client=client,
        base_url=base_url,
        image=IMAGE,
        storage_driver=driver,
        startup_seconds=startup,
        import_seconds=imported,
        _daemon=daemon,
    )


def _wait_for_ping(daemon: _Daemon, base_url: str, deadline: float) -> docker.DockerClient | str:
    assert daemon.proc is not None
    last_error = "socket never appeared"
    while time.monotonic() < deadline:
        code = daemon.proc.poll()
        if code is not None:
            tail = _error_lines(daemon.log_path) or _tail(daemon.log_path, 3)
            return f"dockerd exited with code {code} during startup: {tail}"
        if daemon.socket.exists():
            client: docker.DockerClient | None = None
            try:
                client = docker.DockerClient(base_url=base_url, timeout=10)
                if client.ping():
                    return client
            except (DockerException, RequestException, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if client is not None:
                client.close()
        time.sleep(0.1)
    tail = _error_lines(daemon.log_path)
    return f"dockerd did not answer ping on {base_url} within the timeout ({last_error}); log: {tail}"


# --------------------------------------------------------------------------- image


def _import_image(client: docker.DockerClient, busybox: str) -> None:
    repository, tag = IMAGE.rsplit(":", 1)
    client.api.import_image_from_data(
        build_rootfs_tar(busybox),
        repository=repository,
        tag=tag,
        changes=[
            'CMD ["sh"]',
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
    )
    client.images.get(IMAGE)


def _smoke(client: docker.DockerClient) -> None:
    container = client.containers.run(IMAGE, ["sh", "-c", "echo hello"], network_mode="none", detach=True)
    try:
        status = container.wait(timeout=30)
        output = container.logs().decode(errors="replace").strip()
    finally:
        container.remove(force=True)
    if status.get("StatusCode") != 0 or output != "hello":
        raise RuntimeError(f"smoke container exited {status} and printed {output!r}")


def build_rootfs_tar(busybox: str) -> bytes:
    """A minimal rootfs: static busybox at /bin/busybox, every applet symlinked to it."""
    applets = subprocess.run(
        [busybox, "--list-full"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for name in (
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "etc",
            "dev",
            "proc",
            "sys",
            "var",
            "run",
            "home",
        ):
            add_dir(name)
        add_dir("root", 0o700)
        add_dir("tmp", 0o1777)
        add_dir("var/tmp", 0o1777)
        add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        add_file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        seen = {"bin/busybox"}
        for applet in applets:
            name = applet.lstrip("/")
            if name in seen or "/" not in name:
                continue
            seen.add(name)
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
            tar.addfile(info)
    return buf.getvalue()


# --------------------------------------------------------------------------- checks


def _search_path() -> str:
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*parts, *_SBIN_DIRS]))


def _preflight(path: str, dockerd: str | None) -> tuple[dict[str, str], str]:
    if not sys.platform.startswith("linux"):
        return {}, f"a private dockerd needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return {}, f"a private dockerd needs root (euid is {os.geteuid()})"
    binaries: dict[str, str] = {}
    wanted = {
        "dockerd": dockerd or "dockerd",
        "containerd": "containerd",
        "runc": "runc",
    }
    for name, command in wanted.items():
        found = shutil.which(command, path=path)
        if not found:
            return (
                {},
                f"{command} not found (install the docker.io package: bash .ci/system-deps.sh)",
            )
        binaries[name] = found
    busybox = next(
        (p for p in (*_BUSYBOX_CANDIDATES, shutil.which("busybox", path=path)) if p and os.access(p, os.X_OK)),
        None,
    )
    if busybox is None:
        return {}, "busybox not found (install busybox-static: bash .ci/system-deps.sh)"
    if _has_interpreter(busybox):
        return (
            {},
            f"{busybox} is dynamically linked (install busybox-static: bash .ci/system-deps.sh)",
        )
    binaries["busybox"] = busybox
    cgroup = Path("/sys/fs/cgroup")
    if not cgroup.is_dir() or not any(cgroup.iterdir()):
        return {}, "no cgroup filesystem mounted at /sys/fs/cgroup"
    return binaries, ""


def _has_interpreter(path: str) -> bool:
    """True when the ELF file asks for a dynamic loader (PT_INTERP). Unknown formats: False."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
                return False
            order = "<" if header[5] == 1 else ">"
            phoff = struct.unpack_from(order + "Q", header, 0x20)[0]
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return any(struct.unpack_from(order + "I", table, i * phentsize)[0] == 3 for i in range(phnum))


def _short_tmp() -> str:
    for candidate in ("/tmp", tempfile.gettempdir()):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return candidate
    return tempfile.gettempdir()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies without stopping us."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# --------------------------------------------------------------------------- cleanup


def _pids_referencing(root: Path) -> Iterator[int]:
    """Pids whose command line mentions `root` (dockerd, its containerd, shims)."""
    needle = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            yield int(entry.name)


def _cgroup_dirs(parent: str) -> list[Path]:
    """Existing cgroup directories named `parent`, in every hierarchy.

    runc puts a relative cgroup parent under the caller's own cgroup for some
    controllers (memory here) and under the root for others, so try both.
    """
    base = Path("/sys/fs/cgroup")
    own = {"/"}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            own.add(line.split(":", 2)[-1] or "/")
    tops = [base]
    with contextlib.suppress(OSError):
        tops += [d for d in base.iterdir() if d.is_dir()]
    candidates = [top / p.lstrip("/") / parent for top in tops for p in sorted(own)]
    return [d for d in dict.fromkeys(candidates) if d.is_dir()]


def _cgroup_pids(parent: str) -> Iterator[int]:
    for top in _cgroup_dirs(parent):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                yield from (int(line) for line in procs.read_text().split())


def _remove_cgroups(parent: str) -> None:
    for top in _cgroup_dirs(parent):
        dirs = sorted(
            (d for d in top.rglob("*") if d.is_dir()),
            key=lambda d: len(d.parts),
            reverse=True,
        )
        for d in [*dirs, top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if len(fields) > 4:
                point = _unescape(fields[4])
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    return found


def _unescape(value: str) -> str:
    return value.encode().decode("unicode_escape") if "\\" in value else value


def _unmount_under(root: Path) -> list[str]:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(5):
        points = _mounts_under(root)
        if not points:
            return []
        for point in reversed(points):  # newest first: children before parents
            libc.umount2(point.encode(), _MNT_DETACH)
    left = _mounts_under(root)
    return [f"still mounted: {', '.join(left)}"] if left else []


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _sweep_stale() -> None:
    """Clean temp dirs left by a test process that died without stopping its engine."""
    for root in Path(_short_tmp()).glob(_PREFIX + "*"):
        if not (root / _MARKER).exists():
            continue
        try:
            owner = json.loads((root / _OWNER).read_text())
        except (OSError, ValueError):
            owner = None
        if owner is None:
            with contextlib.suppress(OSError):
                if time.time() - root.stat().st_mtime < 120:
                    continue  # probably being set up right now by another process
        else:
            pid = int(owner.get("owner_pid", 0))
            if pid and _start_time(pid) == owner.get("owner_start"):
                continue  # its owner is alive: a concurrent test session
        _Daemon(root).shutdown()


def _stop_all() -> None:
    with _live_lock:
        daemons = list(_live)
    for daemon in daemons:
        daemon.shutdown()


atexit.register(_stop_all)


# --------------------------------------------------------------------------- logs


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _error_lines(path: Path, limit: int = 2) -> str:
    """The daemon's own fatal/error lines (grpc reconnect chatter left out)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    fatal = [ln for ln in lines if "level=fatal" in ln or ln.startswith("failed to start")]
    errors = [ln for ln in lines if "level=error" in ln and "module=grpc" not in ln]
    picked = (errors[-limit:] + fatal[-limit:]) if fatal else errors[-limit:]
    return " | ".join(_shorten(line) for line in picked)


def _shorten(line: str) -> str:
    marker = "msg="
    return line[line.index(marker) :] if marker in line else line


def running_engines() -> list[Path]:
    """Roots of engines started by this process and not yet stopped (for diagnostics)."""
    with _live_lock:
        return [d.root for d in _live if not d.stopped]
