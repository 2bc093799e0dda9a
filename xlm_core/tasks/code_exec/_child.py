"""Sandbox child: run one untrusted program and report its entry function's return value.

Started by :mod:`xlm_core.tasks.code_exec.sandbox` as ``python -I -S _child.py`` (standalone: it
imports nothing from xlm_core). It reads one JSON request from stdin, sets up isolation (in
namespace mode: a new root holding only the interpreter's files; privilege drop, resource limits,
reliability guard), execs the program, calls the entry function and writes ``<marker> <json>`` to a
private result fd. Everything before ``exec`` is trusted code.

``_child.py --loaded-objects`` instead prints the interpreter's ``sys.path`` and the shared objects
the dynamic loader opened for the modules imported below, so the sandbox can show exactly those.
"""

import json
import os
import sys

# Modules a program may import; loaded now, before privileges drop (the interpreter may live in a
# directory the unprivileged user cannot read) and before the import guard is installed.
ALLOWED_MODULES = (
    "math",
    "cmath",
    "fractions",
    "decimal",
    "statistics",
    "itertools",
    "functools",
    "collections",
    "datetime",
    "re",
    "random",
    "string",
    "operator",
    "numbers",
    "typing",
    "heapq",
    "bisect",
    "copy",
    "calendar",
    "time",
)
for _name in ALLOWED_MODULES:
    __import__(_name)
import builtins  # noqa: E402
import ctypes  # noqa: E402
import resource  # noqa: E402

EXIT_SETUP_FAILED = 97

_MS = {
    "ro": 1,
    "nosuid": 2,
    "nodev": 4,
    "noexec": 8,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
    "strictatime": 1 << 24,
}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
# Device nodes the namespace sandbox gets in its /dev (bound from the host's).
DEVICES = ("null", "zero", "full", "random", "urandom")
# pivot_root has no libc wrapper; its syscall number per machine.
PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203, "s390x": 217, "armv7l": 218}

_libc = ctypes.CDLL(None, use_errno=True)


def _fail(msg: str) -> None:
    """Abort before running the program: setup failed, so fail closed."""
    os.write(2, f"sandbox setup failed: {msg}\n".encode())
    os._exit(EXIT_SETUP_FAILED)


def _mount(src, target, fstype, flags, data) -> None:
    """mount(2), raising OSError naming the call on failure."""
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({src!r}, {target!r}, {fstype!r}, {flags:#x}): {os.strerror(err)}")


def _setup_root(req: dict) -> str:
    """Build the view, /dev, /proc and a private /tmp on a tmpfs, pivot into it; return the work dir."""
    root = req["new_root"]
    os.umask(0o022)
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for kind, path, target in req["view"]:
        if kind == "dir":
            os.makedirs(root + path, 0o755, exist_ok=True)
        elif kind == "bind":
            _bind(path, root + path)
        elif kind == "symlink":
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(target, root + path)
        else:  # mask: an empty read-only directory over third-party packages
            _mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    for dev in DEVICES:
        _bind(f"/dev/{dev}", f"{root}/dev/{dev}")
    _bind("/proc", root + "/proc")  # the PID namespace's own procfs (unshare --mount-proc)
    _remount_tree_ro(root)
    os.mkdir(root + "/tmp")
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(req['tmp_size_mb'])}m,mode=1777")
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    _pivot_root(root)
    return "/tmp"


def _bind(src: str, dest: str) -> None:
    """Bind ``src`` (with its submounts) at ``dest``, creating the mount point."""
    if os.path.isdir(src):
        os.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(src, dest, None, MS_BIND | MS_REC, None)


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (space, tab, newline, backslash)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _remount_tree_ro(root: str) -> None:
    """Remount every mount below ``root`` read-only, keeping each one's other (possibly locked) flags."""
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    prefix = root.rstrip("/") + "/"
    for row in sorted(rows, key=lambda r: r[4].count("/")):
        target = _unescape(row[4])
        if not target.startswith(prefix):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt in row[5].split(","):
            flags |= _MS.get(opt, 0)
        _mount(None, target, None, flags, None)


def _pivot_root(root: str) -> None:
    """Make ``root`` the root directory and detach the host's root from this mount namespace."""
    nr = PIVOT_ROOT_NR.get(os.uname().machine)
    if nr is None:
        raise OSError(f"pivot_root: syscall number unknown on {os.uname().machine}; use isolation='bwrap'")
    os.chdir(root)
    if _libc.syscall(ctypes.c_long(nr), b".", b".") != 0:
        raise OSError(ctypes.get_errno(), f"pivot_root: {os.strerror(ctypes.get_errno())}")
    if _libc.umount2(b".", MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), f"umount2(old root): {os.strerror(ctypes.get_errno())}")
    os.chdir("/")


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
    "system",
    "popen",
    "kill",
    "killpg",
    "fork",
    "forkpty",
    "vfork",
    "execv",
    "execve",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execvp",
    "execvpe",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "posix_spawn",
    "posix_spawnp",
    "putenv",
    "unsetenv",
    "remove",
    "unlink",
    "rmdir",
    "removedirs",
    "rename",
    "renames",
    "replace",
    "truncate",
    "ftruncate",
    "chmod",
    "fchmod",
    "lchmod",
    "chown",
    "fchown",
    "lchown",
    "chroot",
    "chdir",
    "fchdir",
    "setuid",
    "seteuid",
    "setgid",
    "setegid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setsid",
    "setpgid",
    "setpgrp",
    "link",
    "symlink",
    "mkfifo",
    "mknod",
    "mkdir",
    "makedirs",
    "open",
    "write",
    "writev",
    "pwrite",
    "pwritev",
    "sendfile",
    "close",
    "closerange",
    "dup",
    "dup2",
    "pidfd_open",
    "plock",
    "nice",
    "register_at_fork",
    "sched_setaffinity",
    "abort",
    "_exit",
)
_MODULES_BLOCKED = (
    "os",
    "posix",
    "sys",
    "subprocess",
    "_posixsubprocess",
    "socket",
    "_socket",
    "ssl",
    "ctypes",
    "_ctypes",
    "multiprocessing",
    "_multiprocessing",
    "threading",
    "_thread",
    "signal",
    "_signal",
    "pty",
    "fcntl",
    "resource",
    "shutil",
    "asyncio",
    "select",
    "selectors",
    "mmap",
    "urllib",
    "http",
    "ftplib",
    "smtplib",
    "importlib",
    "gc",
    "inspect",
    "pickle",
    "marshal",
    "io",
    "_io",
    "tempfile",
    "pathlib",
    "glob",
    "builtins",
    "code",
    "pdb",
    "faulthandler",
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
        for attr in (
            "signal",
            "alarm",
            "setitimer",
            "pthread_kill",
            "pthread_sigmask",
            "raise_signal",
            "siginterrupt",
            "set_wakeup_fd",
            "pidfd_send_signal",
        ):
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


class _LinkMap(ctypes.Structure):
    """The public head of glibc's ``struct link_map``."""


_LinkMap._fields_ = [
    ("l_addr", ctypes.c_void_p),
    ("l_name", ctypes.c_char_p),
    ("l_ld", ctypes.c_void_p),
    ("l_next", ctypes.POINTER(_LinkMap)),
    ("l_prev", ctypes.POINTER(_LinkMap)),
]


class _RDebug(ctypes.Structure):
    """The head of the dynamic loader's ``struct r_debug``."""

    _fields_ = [("r_version", ctypes.c_int), ("r_map", ctypes.POINTER(_LinkMap))]


def _loaded_objects() -> list:
    """Paths under which the dynamic loader opened this process's shared objects (glibc)."""
    node = _RDebug.in_dll(_libc, "_r_debug").r_map
    names = []
    while node:
        name = (node.contents.l_name or b"").decode("utf-8", "surrogateescape")
        if name.startswith("/"):
            names.append(name)
        node = node.contents.l_next
    return names


def _print_discovery() -> None:
    """Print what the sandbox must show for this interpreter to run this file (one JSON line)."""
    print(json.dumps({"path": sys.path, "objects": _loaded_objects(), "executable": sys.executable}))


def main() -> None:
    """Run one request from stdin (see the module docstring)."""
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
            line = line[write(result_fd, line) :]

    try:
        workdir = _setup_root(req) if req["setup_mounts"] else os.getcwd()
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
    if sys.argv[1:] == ["--loaded-objects"]:
        _print_discovery()
    else:
        main()
