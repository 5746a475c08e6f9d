"""Start, find, reuse and stop a local server running as a background process.

One server per port. Its record (pid, port, model, engine, log) lives in
``<data dir>/local/server-<port>.json``; the data dir is ``$INTENTMESH_HOME`` or the platform's
user data dir. A record whose process is gone (or whose pid now belongs to another process) is
stale and is removed. The server runs in its own process group so that stopping it leaves no
child behind. Starting is serialised across processes with a lock file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from intentmesh.errors import ConfigurationError
from intentmesh.local_backend._engines import EngineName, check_installed, command, pick_engine
from intentmesh.local_backend._errors import PortInUse, ServerStartFailed, ServerStartTimeout
from intentmesh.local_backend._models import ModelRef, resolve_model
from intentmesh.local_backend._serve import DEFAULT_HOST, DEFAULT_PORT, port_is_free

__all__ = ["LocalServer", "ServerRecord", "data_dir"]

_START_TIMEOUT_S: dict[str, float] = {
    "torch": 180.0, "llamacpp": 120.0, "xllamacpp": 120.0, "vllm": 900.0,
}  # fmt: skip


def data_dir() -> Path:
    """``$INTENTMESH_HOME``, else the platform's user data dir for intentmesh."""
    home = os.environ.get("INTENTMESH_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("intentmesh", appauthor=False))


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """What a running server's record file says about it."""

    pid: int
    host: str
    port: int
    engine: str
    model: str
    model_path: str
    log: str
    started_at: float
    proc_start: str | None = None
    own_group: bool = True  # False: a foreground `local serve` inside the caller's group

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def foreground(self) -> bool:
        """Started by ``intentmesh local serve`` (its output on that terminal, no log file)."""
        return not self.log


class LocalServer:
    """A managed local server on one port: :meth:`ensure_running`, :meth:`stop`, :meth:`status`."""

    def __init__(
        self,
        model: str | None = None,
        *,
        engine: str = "auto",
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        vllm_python: str | None = None,
        vllm_args: Sequence[str] = (),
        start_timeout_s: float | None = None,
        home: Path | None = None,
        threads: int | None = None,
    ):
        self.threads = threads
        self.model = model
        self.engine = engine
        self.host = host
        self.port = port
        self.vllm_python = vllm_python
        self.vllm_args = list(vllm_args)
        self.start_timeout_s = start_timeout_s
        self._dir = (home or data_dir()) / "local"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def record_path(self) -> Path:
        return self._dir / f"server-{self.port}.json"

    @property
    def log_path(self) -> Path:
        return self._dir / f"server-{self.port}.log"

    def status(self) -> ServerRecord | None:
        """The live server on this port, or None (a stale record is removed)."""
        record = self._read_record()
        if record is None:
            return None
        if not _same_process(record):
            self.record_path.unlink(missing_ok=True)
            return None
        return record

    def ensure_running(self) -> ServerRecord:
        """Reuse the server on this port when it serves the same model, else start one."""
        ref = resolve_model(self.model)
        engine = pick_engine(self.engine, ref, vllm_python=self.vllm_python)
        with self._lock():
            record = self.status()
            if record is not None:
                return self._reuse(record, ref, engine)
            return self._start(ref, engine)

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop this port's server and its whole process group; False if none was running."""
        record = self.status()
        if record is None:
            return False
        _kill_group(record.pid, timeout_s, group=record.own_group)
        self.record_path.unlink(missing_ok=True)
        return True

    def register_foreground(self, engine: str, ref: ModelRef) -> ServerRecord:
        """Record this process as the server on the port (``local serve``, once it serves)."""
        pid = os.getpid()
        record = ServerRecord(
            pid=pid, host=self.host, port=self.port, engine=engine, model=ref.name,
            model_path=str(ref.path), log="", started_at=time.time(),
            proc_start=_proc_start(pid), own_group=_leads_group(pid),
        )  # fmt: skip
        self._dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self.record_path.write_text(json.dumps(asdict(record), indent=2))
        return record

    def unregister_foreground(self) -> None:
        """Remove this process's record, if the record on the port is still ours."""
        record = self._read_record()
        if record is not None and record.pid == os.getpid():
            self.record_path.unlink(missing_ok=True)

    def _reuse(self, record: ServerRecord, ref: ModelRef, engine: EngineName) -> ServerRecord:
        if record.model_path != str(ref.path) or (
            self.engine != "auto" and record.engine != engine
        ):
            raise ConfigurationError(
                f"port {self.port} already serves {record.model} with {record.engine} "
                f"(pid {record.pid}); stop it with `intentmesh local stop --port {self.port}` "
                "or choose another port"
            )
        self._wait_ready(record, self._timeout(record.engine))
        return record

    def _start(self, ref: ModelRef, engine: EngineName) -> ServerRecord:
        check_installed(engine, ref, self.vllm_python)
        if not port_is_free(self.host, self.port):
            raise PortInUse(self.host, self.port, "and not by a server intentmesh started")
        cmd = command(
            engine, ref, self.host, self.port,
            vllm_python=self.vllm_python, vllm_args=self.vllm_args, threads=self.threads,
        )  # fmt: skip
        self._dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.ctime()}: {' '.join(cmd)}\n".encode())
            log.flush()
            pid = _spawn(cmd, log.fileno())
        record = ServerRecord(
            pid=pid, host=self.host, port=self.port, engine=engine, model=ref.name,
            model_path=str(ref.path), log=str(self.log_path), started_at=time.time(),
            proc_start=_proc_start(pid),
        )  # fmt: skip
        self.record_path.write_text(json.dumps(asdict(record), indent=2))
        try:
            self._wait_ready(record, self._timeout(engine))
        except BaseException:
            _kill_group(record.pid, 5.0, group=True)
            self.record_path.unlink(missing_ok=True)
            raise
        return record

    def _timeout(self, engine: str) -> float:
        return self.start_timeout_s or _START_TIMEOUT_S.get(engine, 180.0)

    def _wait_ready(self, record: ServerRecord, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://{record.host}:{record.port}/health"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                code = _exit_code(record.pid)
                if code is not None:
                    raise ServerStartFailed(
                        f"the {record.engine} server exited with code {code} while "
                        f"starting; log: {record.log}",
                        log_tail=_tail(record.log),
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                time.sleep(0.2)
        raise ServerStartTimeout(
            f"the {record.engine} server was not ready after {timeout_s:.0f}s; log: {record.log}",
            log_tail=_tail(record.log),
        )

    def _read_record(self) -> ServerRecord | None:
        try:
            data: dict[str, Any] = json.loads(self.record_path.read_text())
            return ServerRecord(**data)
        except (OSError, ValueError, TypeError):
            return None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self._dir.mkdir(parents=True, exist_ok=True)
        with open(self._dir / f"server-{self.port}.lock", "w") as handle:
            if sys.platform != "win32":
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _spawn(cmd: list[str], log_fd: int) -> int:
    """Start ``cmd`` in a new session with its output in ``log_fd``; return its pid.

    No ``Popen`` object: the server outlives the manager that started it on purpose.
    """
    if sys.platform == "win32":  # pragma: no cover - no posix_spawn there
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        proc = subprocess.Popen(cmd, stdout=log_fd, stderr=log_fd, creationflags=flags)
        proc.returncode = 0  # detached: nothing waits for it here
        return proc.pid
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log_fd, 1),
        (os.POSIX_SPAWN_DUP2, log_fd, 2),
    ]
    return os.posix_spawn(cmd[0], cmd, _child_env(), file_actions=actions, setsid=True)


def _exit_code(pid: int) -> int | None:
    """The exit code of ``pid`` once it has ended (reaping it when it is our child), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: all we can tell is whether it still runs
        return None if _pid_alive(pid) else -1
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")  # the local server never downloads
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a reused pid from ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # no signal-0 probe there; readiness checks decide
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state not in {"Z", "X"}


def _same_process(record: ServerRecord) -> bool:
    if not _pid_alive(record.pid):
        return False
    return record.proc_start is None or _proc_start(record.pid) in {None, record.proc_start}


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except (OSError, AttributeError):  # pragma: no cover - no process groups
        return False


def _kill_group(pid: int, timeout_s: float, *, group: bool) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it.

    Without ``group`` (a foreground server inside someone else's group) only ``pid`` is
    signalled: it stops its own children (vLLM) when it gets SIGTERM.
    """
    if sys.platform == "win32":  # pragma: no cover
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        return
    kill = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _exit_code(pid) is None:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _exit_code(pid) is None:
        time.sleep(0.05)


def _tail(path: str, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
