"""Sandbox child: run one untrusted program and report its entry function's return value.

Started by :mod:`xlm_core.tasks.code_exec.sandbox` as ``python -I -S _child.py`` (standalone: it
imports nothing from xlm_core). It reads one JSON request from stdin, sets up isolation (mounts,
privilege drop, resource limits, reliability guard), execs the program, calls the entry function
and writes ``<marker> <json>`` to a private result fd. Everything before ``exec`` is trusted code.
"""

import json
import os
import sys

# Modules a program may import; loaded now, before privileges drop (the interpreter may live in a
# directory the unprivileged user cannot read) and before the import guard is installed.
ALLOWED_MODULES = (
    "math", "cmath", "fractions", "decimal", "statistics", "itertools", "functools",
    "collections", "datetime", "re", "random", "string", "operator", "numbers", "typing",
    "heapq", "bisect", "copy", "calendar", "time",
)
for _name in ALLOWED_MODULES:
    __import__(_name)
import builtins  # noqa: E402
import ctypes  # noqa: E402
import resource  # noqa: E402

EXIT_SETUP_FAILED = 97

_MS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
       "relatime": 1 << 21, "strictatime": 1 << 24}
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _fail(msg: str) -> None:
    """Abort before running the program: setup failed, so fail closed."""
    os.write(2, f"sandbox setup failed: {msg}\n".encode())
    os._exit(EXIT_SETUP_FAILED)


def _mount(src, target, fstype, flags, data) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({src!r}, {target!r}, {fstype!r}, {flags:#x}): {os.strerror(err)}")


def _setup_mounts(tmp_size_mb: int) -> str:
    """Make every mount read-only, put a fresh tmpfs on /tmp and return a work dir inside it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    for row in sorted(rows, key=lambda r: r[4].count("/")):
        target = row[4].replace("\\040", " ")
        flags = MS_REMOUNT | MS_BIND | _MS["ro"]
        for opt in row[5].split(","):
            flags |= _MS.get(opt, 0)
        try:
            _mount(None, target, None, flags, None)
        except OSError:
            if target == "/":
                raise
            # Mounts shadowed by later mounts cannot be remounted; fail closed only if still writable.
            if os.access(target, os.W_OK) and _is_writable_mount(target):
                raise
    for tmp in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(tmp):
            _mount("tmpfs", tmp, "tmpfs", _MS["nosuid"] | _MS["nodev"],
                   f"size={tmp_size_mb}m,mode=1777")
    work = "/tmp/work"
    os.mkdir(work, 0o777)
    os.chmod(work, 0o777)
    return work


def _is_writable_mount(target: str) -> bool:
    st = os.statvfs(target)
    return not (st.f_flag & os.ST_RDONLY)


def _drop_privileges(drop_uid: bool, drop_caps: bool, uid: int) -> None:
    """Become an unprivileged user (root on the host) or shed all capabilities (user namespace)."""
    _libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    if drop_uid and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if os.geteuid() == 0 or os.getuid() == 0:
            _fail("could not drop root")
    if drop_caps:
        # Lock "root has no special powers" so an execve as uid 0 cannot regain capabilities.
        if _libc.prctl(28, 0x2F, 0, 0, 0) != 0:  # PR_SET_SECUREBITS: NOROOT|NO_SETUID_FIXUP (+locks)
            _fail(f"PR_SET_SECUREBITS: {os.strerror(ctypes.get_errno())}")
        for cap in range(64):
            _libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (EINVAL past the last cap is fine)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        data = (ctypes.c_uint32 * 6)()
        if _libc.capset(header, data) != 0:
            _fail(f"capset: {os.strerror(ctypes.get_errno())}")


def _set_limits(req: dict) -> None:
    cpu = int(req["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (req["file_bytes"], req["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (req["open_files"], req["open_files"]))
    mem = req["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))


_OS_BLOCKED = (
    "system", "popen", "kill", "killpg", "fork", "forkpty", "vfork", "execv", "execve", "execl",
    "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
    "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "putenv",
    "unsetenv", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
    "truncate", "ftruncate", "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "chroot",
    "chdir", "fchdir", "setuid", "seteuid", "setgid", "setegid", "setreuid", "setregid",
    "setresuid", "setresgid", "setsid", "setpgid", "setpgrp", "link", "symlink", "mkfifo",
    "mknod", "mkdir", "makedirs", "open", "write", "writev", "pwrite", "pwritev", "sendfile",
    "close", "closerange", "dup", "dup2", "pidfd_open", "plock", "nice", "register_at_fork",
    "sched_setaffinity", "abort", "_exit",
)
_MODULES_BLOCKED = (
    "os", "posix", "sys", "subprocess", "_posixsubprocess", "socket", "_socket", "ssl", "ctypes",
    "_ctypes", "multiprocessing", "_multiprocessing", "threading", "_thread", "signal", "_signal",
    "pty", "fcntl", "resource", "shutil", "asyncio", "select", "selectors", "mmap", "urllib",
    "http", "ftplib", "smtplib", "importlib", "gc", "inspect", "pickle", "marshal", "io", "_io",
    "tempfile", "pathlib", "glob", "builtins", "code", "pdb", "faulthandler",
)


def _blocked(name: str):
    def refuse(*args, **kwargs):
        raise PermissionError(f"{name} is disabled in the sandbox")
    return refuse


def _install_guard(workdir: str) -> dict:
    """Defence in depth (not a security boundary): strip process, file and network powers."""
    real_open = builtins.open
    work_prefix = os.path.realpath(workdir) + os.sep

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, int):
            raise PermissionError("open() on a file descriptor is disabled in the sandbox")
        if any(c in mode for c in "wax+"):
            path = os.path.realpath(os.fspath(file))
            if not path.startswith(work_prefix):
                raise PermissionError(f"writing {path!r} is disabled in the sandbox (only {workdir})")
        return real_open(file, mode, *args, **kwargs)

    real_import = builtins.__import__
    allowed = frozenset(ALLOWED_MODULES)

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name.partition(".")[0] not in allowed:
            raise ImportError(f"import of {name!r} is blocked in the sandbox")
        return real_import(name, globals, locals, fromlist, level)

    for mod_name in ("os", "posix"):
        mod = sys.modules.get(mod_name)
        for attr in _OS_BLOCKED:
            if hasattr(mod, attr):
                setattr(mod, attr, _blocked(f"{mod_name}.{attr}"))
    for mod_name in ("signal", "_signal"):
        mod = sys.modules.get(mod_name)
        for attr in ("signal", "alarm", "setitimer", "pthread_kill", "pthread_sigmask", "raise_signal",
                     "siginterrupt", "set_wakeup_fd", "pidfd_send_signal"):
            if mod is not None and hasattr(mod, attr):
                setattr(mod, attr, _blocked(f"{mod_name}.{attr}"))

    safe_builtins = dict(vars(builtins))
    safe_builtins["open"] = guarded_open
    safe_builtins["__import__"] = guarded_import
    for name in ("breakpoint", "input", "exit", "quit", "help", "copyright", "credits", "license"):
        safe_builtins.pop(name, None)
    builtins.open = guarded_open
    builtins.__import__ = guarded_import
    for name in _MODULES_BLOCKED:
        sys.modules.setdefault(name, None)
        if name not in ("os", "posix", "sys", "builtins", "io", "_io", "_thread", "_signal"):
            sys.modules[name] = None
    return safe_builtins


def _describe(value) -> dict:
    """JSON-safe description of a return value; numbers keep full precision as text."""
    if value is None:
        return {"kind": "none"}
    if isinstance(value, bool):
        return {"kind": "bool", "repr": repr(value)}
    if isinstance(value, int):
        try:
            return {"kind": "int", "value": str(int(value))}
        except ValueError:
            return {"kind": "other", "type": "int", "repr": "<int too large to print>"}
    if isinstance(value, float):
        return {"kind": "float", "value": repr(float(value))}
    if isinstance(value, str):
        return {"kind": "str", "value": value[:1000]}
    type_name = type(value).__name__
    try:
        import numbers
        if isinstance(value, numbers.Integral):
            return {"kind": "int", "value": str(int(value))}
        if isinstance(value, numbers.Real):
            return {"kind": "float", "value": repr(float(value)), "type": type_name}
    except Exception:
        pass
    try:
        text = repr(value)[:200]
    except Exception:
        text = "<unprintable>"
    return {"kind": "other", "type": type_name, "repr": text}


def main() -> None:
    req = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)

    # Move the result pipe to an unpredictable descriptor and keep private handles to it.
    result_fd = req["result_fd_target"]
    os.dup2(req["result_fd"], result_fd)
    os.close(req["result_fd"])
    marker = req["marker"].encode()
    write, exit_now = os.write, os._exit

    def report(payload: dict) -> None:
        line = marker + b" " + json.dumps(payload).encode() + b"\n"
        while line:
            line = line[write(result_fd, line):]

    try:
        workdir = _setup_mounts(req["tmp_size_mb"]) if req["setup_mounts"] else os.getcwd()
        os.chdir(workdir)
        _drop_privileges(req["drop_uid"], req["drop_caps"], req["uid"])
        _set_limits(req)
    except Exception as exc:  # fail closed: never run the program half-isolated
        _fail(repr(exc))
    sys.setrecursionlimit(req["recursion_limit"])
    safe_builtins = _install_guard(workdir)
    env = {"__name__": "__sandbox__", "__builtins__": safe_builtins}
    try:
        code = compile(req["source"], "<program>", "exec")
        exec(code, env)
        fn = env.get(req["entry"])
        if not callable(fn):
            payload = {"status": "error", "error": f"NameError: {req['entry']}() is not defined"}
        else:
            payload = {"status": "ok", "value": _describe(fn())}
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and MemoryError included
        try:
            detail = str(exc)
            name = type(exc).__name__
            payload = {"status": "error", "error": (f"{name}: {detail}" if detail else name)[:500]}
        except BaseException:
            payload = {"status": "error", "error": type(exc).__name__}
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        report(payload)
    except BaseException:
        exit_now(98)
    exit_now(0)


if __name__ == "__main__":
    main()
