"""Run one untrusted Python program in its own isolated, resource-limited OS process.

Isolation modes (probed once per process, see docs/code_execution.md):
  - ``bwrap``: bubblewrap; the root holds only the interpreter's files (see :mod:`.view`), read-only,
    plus /dev, /proc and a fresh /tmp; no network, own PID/IPC/UTS namespaces.
  - ``namespace``: util-linux ``unshare`` (mount, network, PID, IPC, UTS; plus user namespace when
    not root); the child builds the same root on a tmpfs itself and pivots into it.
  - ``none``: NO isolation, a plain child process (resource limits + guard only); it sees every file
    the user can and reaches the network. Only when asked for by name (``isolation="none"``): ``auto``
    never falls back to it, it fails with one line that says how to get a strong mode or opt in.
In every mode the child gets its own session/process group, rlimits (CPU, address space, no new
processes, file size, open files, no core), runs unprivileged, and a wall-clock timeout kills the
whole process group.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Literal

from xlm_core.errors import UsageError
from xlm_core.tasks.code_exec.view import (
    CHILD_IN_SANDBOX,
    CHILD_SCRIPT,
    PYTHON_FLAGS,
    bwrap_view_args,
    interpreter,
    sandbox_env,
    sandbox_view,
)

logger = logging.getLogger(__name__)

IsolationMode = Literal["bwrap", "namespace", "none"]
ISOLATION_CHOICES = ("auto", "bwrap", "namespace", "none")
STRONG_MODES: tuple[IsolationMode, ...] = ("bwrap", "namespace")
# Root-run sandboxes drop to a fresh, otherwise unused uid per program, so one program cannot signal
# another (kill(-1) as a shared "nobody" would reach every concurrent sandbox).
_SANDBOX_UID_BASE = 1_500_000_000
_EXIT_SETUP_FAILED = 97
MAX_SOURCE_BYTES = 200_000


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. ``timeout_s`` is wall clock; CPU time is capped at ceil(timeout_s)."""

    timeout_s: float = 2.0
    memory_mb: int = 512
    max_output_bytes: int = 65_536
    max_file_bytes: int = 8 * 1024 * 1024
    max_open_files: int = 64
    tmp_size_mb: int = 32
    recursion_limit: int = 1000

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64 (the interpreter needs it), got {self.memory_mb!r}")
        if self.max_output_bytes < 0:
            raise ValueError(f"max_output_bytes must be >= 0, got {self.max_output_bytes!r}")


@dataclass
class ExecResult:
    """Outcome of one program. ``status``: ok | error | timeout | cpu_limit | output_limit |
    crashed | no_result | sandbox_error. ``value`` is the child's description of the return value."""

    status: str
    value: dict[str, Any] | None = None
    error: str | None = None
    output: str = ""
    returncode: int | None = None
    wall_s: float = 0.0
    isolation: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class _Launch:
    """How to start the child in one mode and what it must do itself (build its root, drop privileges)."""

    argv_prefix: tuple[str, ...]
    child_script: str
    env: dict[str, str]
    setup_mounts: bool
    drop_uid: bool
    drop_caps: bool
    chown_workdir: bool = False
    workdir_is_home: bool = False  # mode none: the host work dir is the program's home and cwd
    view: tuple[tuple[str, str, str], ...] = ()


def _launch_spec(mode: IsolationMode) -> _Launch:
    """The launch recipe for ``mode``; RuntimeError naming the fix when it cannot work here."""
    root = os.geteuid() == 0
    if mode == "bwrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError("isolation='bwrap' needs bubblewrap: apt-get install bubblewrap")
        view = sandbox_view()
        # As root, skip the user namespace so the child can drop to a real unprivileged uid.
        unshare = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts") if root else ("--unshare-all",)
        argv = (bwrap, *unshare, "--die-with-parent", "--new-session", *bwrap_view_args(view))
        return _Launch(argv, CHILD_IN_SANDBOX, sandbox_env(view), setup_mounts=False, drop_uid=root, drop_caps=False)
    if mode == "namespace":
        unshare = shutil.which("unshare")
        if unshare is None:
            raise RuntimeError("isolation='namespace' needs util-linux unshare on PATH")
        view = sandbox_view()
        user = () if root else ("--user", "--map-root-user")
        argv = (unshare, *user, "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--mount-proc", "--kill-child")
        rows = tuple((e.kind, e.path, e.target) for e in view.entries)
        return _Launch(
            argv, CHILD_SCRIPT, sandbox_env(view), setup_mounts=True, drop_uid=root, drop_caps=not root, view=rows
        )
    if mode == "none":
        return _Launch(
            (),
            CHILD_SCRIPT,
            {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            setup_mounts=False,
            drop_uid=root,
            drop_caps=False,
            chown_workdir=root,
            workdir_is_home=True,
        )
    raise ValueError(_unknown_mode(mode))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(
    source: str,
    limits: SandboxLimits = SandboxLimits(),
    isolation: IsolationMode = "bwrap",
    entry: str = "simple_math_problem",
) -> ExecResult:
    """Execute ``source`` in a fresh sandboxed process and return what ``entry()`` returned."""
    if len(source.encode("utf-8", "replace")) > MAX_SOURCE_BYTES:
        return ExecResult("error", error=f"program longer than {MAX_SOURCE_BYTES} bytes", isolation=isolation)
    spec = _launch_spec(isolation)
    marker = secrets.token_hex(16)
    sandbox_uid = _SANDBOX_UID_BASE + secrets.randbelow(500_000_000)
    workdir = tempfile.mkdtemp(prefix="xlm_sandbox_")
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    proc: subprocess.Popen | None = None
    try:
        if spec.chown_workdir:
            os.chown(workdir, sandbox_uid, sandbox_uid)
        request = {
            "source": source,
            "entry": entry,
            "marker": marker,
            "result_fd": write_fd,
            "result_fd_target": 200 + secrets.randbelow(700),
            "setup_mounts": spec.setup_mounts,
            "new_root": workdir,
            "view": spec.view,
            "drop_uid": spec.drop_uid,
            "uid": sandbox_uid,
            "drop_caps": spec.drop_caps,
            "cpu_s": max(1, math.ceil(limits.timeout_s)),
            "memory_bytes": limits.memory_mb << 20,
            "file_bytes": limits.max_file_bytes,
            "open_files": limits.max_open_files,
            "tmp_size_mb": limits.tmp_size_mb,
            "recursion_limit": limits.recursion_limit,
        }
        argv = [*spec.argv_prefix, interpreter(), *PYTHON_FLAGS, spec.child_script]
        env = {**spec.env, "HOME": workdir, "TMPDIR": workdir} if spec.workdir_is_home else spec.env
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,
            cwd=workdir,
            env=env,
            close_fds=True,
        )
        os.close(write_fd)
        write_fd = -1
        try:
            proc.stdin.write(json.dumps(request).encode("utf-8"))
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        result = _collect(proc, read_fd, marker, limits, start)
    except OSError as exc:
        result = ExecResult("sandbox_error", error=f"could not start sandbox: {exc!r}")
    finally:
        if proc is not None:
            _kill_group(proc.pid)  # the leader is not reaped yet, so the group id is still ours
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for fd in (read_fd, write_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        shutil.rmtree(workdir, ignore_errors=True)
    result.returncode = proc.returncode if proc is not None else None
    result.wall_s = time.monotonic() - start
    result.isolation = isolation
    return _classify_exit(result)


def _collect(proc: subprocess.Popen, read_fd: int, marker: str, limits: SandboxLimits, start: float) -> ExecResult:
    """Read output (capped) and the result line until both pipes close or the deadline passes."""
    deadline = start + limits.timeout_s
    out, res = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    out_fd = proc.stdout.fileno()
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(read_fd, selectors.EVENT_READ)
    open_fds = {out_fd, read_fd}
    status = None
    try:
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = "timeout"
                break
            for key, _ in sel.select(timeout=remaining):
                chunk = os.read(key.fd, 65_536)
                if not chunk:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                elif key.fd == out_fd:
                    out += chunk
                    if len(out) > limits.max_output_bytes:
                        status = "output_limit"
                elif len(res) < 1_000_000:
                    res += chunk
            if status:
                break
        if status is None:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 0.5)
            except subprocess.TimeoutExpired:
                status = "timeout"
    finally:
        sel.close()
    if status is not None:
        _kill_group(proc.pid)
    output = out[: limits.max_output_bytes].decode("utf-8", "replace")
    if status == "timeout":
        return ExecResult("timeout", error=f"wall-clock timeout after {limits.timeout_s:g} s", output=output)
    if status == "output_limit":
        return ExecResult("output_limit", error=f"output exceeded {limits.max_output_bytes} bytes", output=output)
    return _parse_result(bytes(res), marker, output)


def _parse_result(raw: bytes, marker: str, output: str) -> ExecResult:
    prefix = marker.encode() + b" "
    for line in raw.splitlines():
        if line.startswith(prefix):
            try:
                payload = json.loads(line[len(prefix) :])
            except ValueError:
                break
            if payload.get("status") == "ok":
                return ExecResult("ok", value=payload.get("value"), output=output)
            return ExecResult("error", error=str(payload.get("error")), output=output)
    return ExecResult("no_result", output=output)


def _classify_exit(result: ExecResult) -> ExecResult:
    """Name the reason when the child produced no result (signal, exit code, setup failure)."""
    if result.status != "no_result":
        return result
    rc = result.returncode
    if rc == _EXIT_SETUP_FAILED or (rc is not None and "sandbox setup failed" in result.output):
        result.status = "sandbox_error"
        result.error = result.output.strip()[-500:] or "sandbox setup failed"
    elif rc is not None and rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        result.status = "cpu_limit" if -rc == signal.SIGXCPU else "crashed"
        result.error = f"killed by {sig}"
    else:
        result.error = f"exited with code {rc} without returning a result"
    return result


_PROBE_OK = "def simple_math_problem():\n    return 6 * 7\n"


@functools.cache
def probe_isolation(mode: IsolationMode) -> str | None:
    """Return None when ``mode`` works on this machine, else the reason it does not (cached)."""
    try:
        _launch_spec(mode)
    except RuntimeError as exc:
        return str(exc)
    res = run_program(_PROBE_OK, SandboxLimits(timeout_s=10.0), isolation=mode)
    if res.status != "ok" or res.value != {"kind": "int", "value": "42"}:
        return f"probe program failed: status={res.status} error={res.error} output={res.output[-300:]!r}"
    return None


class SandboxUnavailable(UsageError, RuntimeError):
    """No isolating sandbox works here (or the one asked for does not); the message says how to get one."""


def _unknown_mode(requested: object) -> str:
    if requested == "process":
        return (
            "isolation='process' runs generated code with no isolation at all (it reads every file the user can "
            "and reaches the network); it is spelled isolation='none' now, so that a config says so"
        )
    return f"isolation={requested!r} is not one of {', '.join(ISOLATION_CHOICES)}"


def check_isolation_choice(requested: str) -> None:
    """Raise :class:`SandboxUnavailable` (one line) unless ``requested`` is one of ``ISOLATION_CHOICES``."""
    if requested not in ISOLATION_CHOICES:
        raise SandboxUnavailable(_unknown_mode(requested))


@functools.cache
def resolve_isolation(requested: str = "auto") -> IsolationMode:
    """The mode to run programs in: for ``auto`` the strongest that works (bwrap, then namespace); a mode
    named explicitly must work. ``auto`` never falls back to no isolation: without a strong mode it raises
    :class:`SandboxUnavailable` saying how to install one or how to opt in to ``isolation="none"``."""
    check_isolation_choice(requested)
    if requested != "auto":
        reason = probe_isolation(requested)  # type: ignore[arg-type]
        if reason is not None:
            raise SandboxUnavailable(
                f"isolation={requested!r} is not available here: {reason}; use isolation=auto to "
                "take whichever strong mode works"
            )
        if requested == "none":
            _warn_no_isolation()
        return requested  # type: ignore[return-value]
    reasons = {}
    for mode in STRONG_MODES:
        reasons[mode] = probe_isolation(mode)
        if reasons[mode] is None:
            logger.info("code execution sandbox: using isolation=%s", mode)
            return mode
    found = "; ".join(f"{mode}: {why}" for mode, why in reasons.items())
    raise SandboxUnavailable(
        f"no isolating sandbox works on this machine to run generated code ({found}); install bubblewrap "
        "(apt-get install bubblewrap) or allow unprivileged user namespaces for util-linux unshare, or opt in to running "
        "it WITHOUT isolation (it can read your files and reach the network) with isolation=none, e.g. "
        "post_hoc_evaluator.isolation=none"
    )


def _warn_no_isolation() -> None:
    logger.warning(
        "CODE EXECUTION WITHOUT ISOLATION: isolation=none has no filesystem, network or PID isolation (a program "
        "can read every file this user can, and its text can reach pred_value/exec_error), only rlimits, a "
        "separate session and a Python-level guard (see docs/code_execution.md)."
    )
