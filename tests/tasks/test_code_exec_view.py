"""What a sandboxed program can see of the host: only the interpreter's files, a private /tmp.

The bwrap and namespace modes must refuse reads of the project directory, $HOME (a planted one and
the real one), the parent's working directory, /etc and site-packages, while the standard library
keeps working; host file text must never reach the prediction rows. A mode's tests are skipped
when that mode does not work on this machine.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from xlm_core.tasks.code_exec import Gsm8kCodeEval, SandboxLimits, probe_isolation, run_programs
from xlm_core.tasks.code_exec.view import path_chain, sandbox_view

REPO = Path(__file__).resolve().parents[2]
MODES = [m for m in ("none", "namespace", "bwrap") if probe_isolation(m) is None]
STRONG_MODES = [m for m in MODES if m != "none"]
REFUSED = ("FileNotFoundError",)  # the path is not in the view at all (not merely unreadable)
# Real libc and os through the guard's own globals: the checks below are about the OS-level view,
# not the (bypassable) Python guard.
OS = "open.__globals__['os']"


def prog(body: str) -> str:
    """Wrap ``body`` as the entry function."""
    return "def simple_math_problem():\n" + "".join(f"    {ln}\n" for ln in body.splitlines())


def read_prog(path: str | Path) -> str:
    """A program returning the text of ``path``."""
    return prog(f"return open({str(path)!r}).read()")


def real_home() -> str:
    """The user's home from the password database (not $HOME, which tests repoint)."""
    return pwd.getpwuid(os.getuid()).pw_dir


def assert_refused(res, secret: str | None = None) -> None:
    """The read failed because the path does not exist in the sandbox, and no host text came back."""
    assert res.status == "error" and res.error.startswith(REFUSED), res
    if secret is not None:
        assert secret not in json.dumps([res.value, res.error, res.output]), res


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """Secret files in the repository, a temporary $HOME and the parent's cwd; yields name -> (path, text)."""
    token = secrets.token_hex(8)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    files = {"repo": REPO / f".sandbox_secret_{token}", "home": home / "secret.txt", "cwd": cwd / "secret.txt"}
    for name, path in files.items():
        path.write_text(f"SECRET-{name}-{token}")
        path.chmod(0o644)
    for d in (tmp_path, home, cwd):
        d.chmod(0o755)  # readable by the sandbox's unprivileged uid: only the view may refuse
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    try:
        yield {name: (path, path.read_text()) for name, path in files.items()}
    finally:
        files["repo"].unlink(missing_ok=True)


def site_package_files() -> list[str]:
    """One existing file in each site-packages the evaluator's Python uses (venv and base)."""
    dirs = {
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"],
    }
    found = []
    for d in sorted(dirs):
        files = sorted(p for p in Path(d).glob("*/__init__.py")) if os.path.isdir(d) else []
        if files:
            found.append(str(files[0]))
    return found


# ---------------------------------------------------------------- the view itself
def test_view_binds_only_interpreter_files():
    view = sandbox_view()
    binds = [e.path for e in view.entries if e.kind == "bind"]
    stdlib = os.path.dirname(os.__file__)
    assert view.interpreter in binds and stdlib in binds
    for path in binds:
        assert path == view.interpreter or path.startswith(stdlib) or ".so" in os.path.basename(path), path
        assert not path.startswith(("/etc", "/home", "/tmp", "/var", str(REPO), os.getcwd() + "/")), path
        assert "site-packages" not in path and "dist-packages" not in path, path
        if path.startswith(real_home() + "/"):
            assert path.startswith(sys.base_prefix), f"{path} is in $HOME but not the interpreter's"
    masked = [e.path for e in view.entries if e.kind == "mask"]
    for d in ("site-packages", "dist-packages"):
        if os.path.isdir(os.path.join(stdlib, d)):
            assert os.path.join(stdlib, d) in masked


def test_path_chain_reproduces_symlinks(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "lib.so.1.2").write_text("x")
    (tmp_path / "real" / "lib.so.1").symlink_to("lib.so.1.2")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    chain = [(e.kind, e.path, e.target) for e in path_chain(str(tmp_path / "alias" / "lib.so.1"))]
    assert chain == [
        ("symlink", str(tmp_path / "alias"), str(tmp_path / "real")),
        ("symlink", str(tmp_path / "real" / "lib.so.1"), "lib.so.1.2"),
        ("bind", str(tmp_path / "real" / "lib.so.1.2"), ""),
    ]
    # ".." after a symlink walks up from the link's target, as the kernel does
    (tmp_path / "real" / "sub").mkdir()
    (tmp_path / "hop").symlink_to(tmp_path / "real" / "sub")
    up = [(e.kind, e.path) for e in path_chain(str(tmp_path / "hop" / ".." / "lib.so.1.2"))]
    assert up == [("symlink", str(tmp_path / "hop")), ("bind", str(tmp_path / "real" / "lib.so.1.2"))]
    with pytest.raises(RuntimeError, match="does not exist"):
        path_chain(str(tmp_path / "missing"))


# ---------------------------------------------------------------- refused reads
@pytest.mark.parametrize("mode", STRONG_MODES)
def test_program_cannot_read_planted_files(mode, planted):
    (repo, repo_text), (home, home_text), (cwd, cwd_text) = planted["repo"], planted["home"], planted["cwd"]
    sources = [
        read_prog(repo),
        read_prog(home),
        read_prog(cwd),
        read_prog("secret.txt"),
        prog(f"return open({OS}.path.expanduser('~/secret.txt')).read()"),
        read_prog(REPO / "pyproject.toml"),
    ]
    texts = [repo_text, home_text, cwd_text, cwd_text, home_text, None]
    for res, text in zip(run_programs(sources, SandboxLimits(timeout_s=5.0), isolation=mode, num_workers=2), texts):
        assert_refused(res, text)


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_program_cannot_read_etc_site_packages_or_real_home(mode):
    home = real_home()
    home_files = (
        sorted(p for p in Path(home).iterdir() if p.is_file() and os.access(p, os.R_OK)) if os.path.isdir(home) else []
    )
    paths = ["/etc/passwd", "/etc/hostname", *site_package_files(), *[str(p) for p in home_files[:3]]]
    sources = [read_prog(p) for p in paths] + [prog(f"return str({OS}.listdir({home!r}))")]
    results = run_programs(sources, SandboxLimits(timeout_s=5.0), isolation=mode, num_workers=2)
    for res in results[:-1]:
        assert_refused(res)
    listing = results[-1]
    if sys.base_prefix.startswith(home + "/"):  # the interpreter lives in $HOME: only its path shows
        first = sys.base_prefix[len(home) + 1 :].split("/")[0]
        assert listing.value == {"kind": "str", "value": str([first])}, listing
    else:
        assert_refused(listing)


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_host_file_text_never_reaches_prediction_rows(mode, planted):
    numeric = Path(planted["home"][0]).with_name("number.txt")
    numeric.write_text("7312")
    numeric.chmod(0o644)
    secrets_ = [planted["home"][1], planted["repo"][1], "7312"]
    programs = [
        read_prog("/etc/passwd"),
        read_prog(planted["home"][0]),
        read_prog(planted["repo"][0]),
        prog(f"raise ValueError(open({str(planted['home'][0])!r}).read())"),
        prog(f"return int(open({str(numeric)!r}).read())"),
    ]
    preds = [{"generated_text": p, "answer": "7312"} for p in programs]
    rows, metrics = Gsm8kCodeEval(timeout_s=5, isolation=mode, allow_code_execution=True).eval(preds)
    assert metrics["n_correct"] == 0 and metrics["n_exec_failures"] == len(programs)
    for row in rows:
        assert row["pred_value"] is None
        assert row["exec_error"].startswith(tuple(f"error: {r}" for r in REFUSED)), row
    dumped = json.dumps([{k: r[k] for k in ("pred_value", "exec_error")} for r in rows])
    for text in [*secrets_, "root:x:0:0"]:
        assert text not in dumped


def test_mode_none_sees_host_files():
    """isolation=none has no file-system isolation: it reads what the user (or fresh uid) can."""
    if "none" not in MODES:
        pytest.skip("mode none unavailable")
    res = run_programs([read_prog("/etc/passwd")], SandboxLimits(timeout_s=5.0), isolation="none")[0]
    assert res.ok and res.value["value"].startswith("root:")


# ---------------------------------------------------------------- what still works
STDLIB = prog(
    "import math, fractions, decimal, re, datetime, statistics, collections, itertools, random\n"
    "a = fractions.Fraction(1, 3) + fractions.Fraction(1, 6)\n"
    "b = decimal.Decimal('1.10') * 3\n"
    "c = int(re.sub(r'[^0-9]', '', 'x4y2'))\n"
    "d = (datetime.date(2024, 3, 1) - datetime.timedelta(days=1)).day\n"
    "e = statistics.mean([1, 2, 3]) + math.comb(5, 2) + collections.Counter('aab')['a']\n"
    "f = len(list(itertools.permutations(range(3)))) + random.Random(0).randint(0, 0)\n"
    "g = len(open.__globals__['json'].dumps({'k': [1, 2]}))\n"
    "return float(a) + float(b) + c + d + e + f + g\n"
)
STDLIB_VALUE = 0.5 + 3.3 + 42 + 29 + (2 + 10 + 2) + 6 + 13


@pytest.mark.parametrize("mode", MODES)
def test_standard_library_still_works(mode):
    res = run_programs([STDLIB], SandboxLimits(timeout_s=5.0), isolation=mode)[0]
    assert res.ok, res
    assert abs(float(res.value["value"]) - STDLIB_VALUE) < 1e-9


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_modules_not_preloaded_load_from_the_view(mode):
    """Stdlib sources and an extension module the child did not preload are readable in the view."""
    load = "imp = open.__globals__['sys'].modules['_frozen_importlib'].__import__\n"
    textwrap = os.path.join(os.path.dirname(os.__file__), "textwrap.py")
    sources = [
        prog(f"return open({textwrap!r}).read()[:20]"),
        prog(load + "return sum(imp('array').array('i', [3, 4]))"),
    ]
    results = run_programs(sources, SandboxLimits(timeout_s=5.0), isolation=mode, num_workers=2)
    with open(textwrap) as f:
        head = f.read()[:20]
    assert [r.value for r in results] == [{"kind": "str", "value": head}, {"kind": "int", "value": "7"}], results


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_private_tmp_home_and_cwd(mode):
    name = f"xlm_sandbox_probe_{secrets.token_hex(8)}"
    with tempfile.NamedTemporaryFile("w", dir="/tmp", prefix="xlm_host_") as host:
        host.write("HOST-TEXT")
        host.flush()
        os.chmod(host.name, 0o644)
        sources = [
            prog(f"open('/tmp/{name}', 'w').write('mine')\nreturn open('/tmp/{name}').read()"),
            read_prog(f"/tmp/{name}"),  # another program's /tmp is a different, fresh one
            read_prog(host.name),
            prog(f"o = {OS}\nreturn ','.join([o.getcwd(), o.environ['HOME'], o.environ['TMPDIR']])"),
        ]
        res = run_programs(sources, SandboxLimits(timeout_s=5.0), isolation=mode, num_workers=2)
    assert res[0].value == {"kind": "str", "value": "mine"}, res[0]
    assert not os.path.exists(f"/tmp/{name}")
    assert_refused(res[1])
    assert_refused(res[2], "HOST-TEXT")
    assert res[3].value == {"kind": "str", "value": "/tmp,/tmp,/tmp"}, res[3]


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_only_tmp_is_writable(mode):
    """Raw libc creat (guard bypassed) fails everywhere in the view except the private /tmp."""
    stdlib = os.path.dirname(os.__file__)
    targets = ["/x", "/usr/x", f"{stdlib}/x", f"{stdlib}/site-packages/x", "/dev/shm/x", "/proc/x", "/tmp/x"]
    libc = "libc = open.__globals__['ctypes'].CDLL(None)\n"
    sources = [prog(libc + f"return libc.creat({t.encode()!r}, 420) >= 0") for t in targets]
    results = run_programs(sources, SandboxLimits(timeout_s=5.0), isolation=mode, num_workers=2)
    got = {t: r.value for t, r in zip(targets, results)}
    assert got == {t: {"kind": "bool", "repr": repr(t == "/tmp/x")} for t in targets}, got
