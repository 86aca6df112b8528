"""Trust and leftovers around devices (issue 21): a devices.toml in the working folder is never read, a named file
that is not the user's own cannot run commands through ssh_options, `devices clean` ends only a benchmark it can
prove is edgebnn's, a SIGKILLed emulated run leaves no emulator and clean-up finds its folders, folders and FIFOs
are named as such, a truncated runner and a read-only ~/.cache end in one line (or, for the cache, a private
fallback). Every refusal is asserted as one `error:` line, exit 2, and what is kept or absent afterwards."""

import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from arm64_helpers import aarch64_runner
from cli_checks import assert_one_error_line
from profile_fixtures import started_sshd, tiny_tflite

import edgebnn  # noqa: F401
from edgebnn.devices import config as devices
from edgebnn.devices import scratch
from edgebnn.devices.remote import OWNER_HOST, kill_script, own_session
from edgebnn.devices.ssh import parse_url
from edgebnn.errors import EdgebnnError

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))


def _cli(*args, timeout=120, **kw):
    return subprocess.run([EDGEBNN, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def _home(tmp_path: Path) -> dict:
    """An environment whose HOME is a fresh folder of ``tmp_path`` (no devices file of the user's own yet)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home)}


# ----------------------------------------------------------------------------------------- devices.toml trust
def _planted(marker: Path, options: list[str], extra: str = "") -> str:
    quoted = ", ".join('"' + o.replace("\\", "\\\\").replace('"', '\\"') + '"' for o in options)
    return f'[devices.pi4]\nssh = "ssh://pi@127.0.0.1:9"\nssh_options = [{quoted}]\n{extra}'


def test_a_devices_toml_in_the_working_folder_is_never_read_and_its_proxy_command_never_runs(tmp_path):
    marker = tmp_path / "PROXY_COMMAND_RAN"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "devices.toml").write_text(_planted(marker, [f"ProxyCommand=touch {marker}", "ConnectTimeout=2"]))
    env = _home(tmp_path)
    for args in (["profile", tiny_tflite(), "-d", "pi4", "--db", tmp_path / "r.db"], ["devices", "check", "pi4"],
                 ["devices", "clean", "pi4"]):
        assert_one_error_line(_cli(*args, cwd=checkout, env=env), "unknown device 'pi4'", "./devices.toml here is not "
                              "read (a checkout's file could run commands): pass --devices-file")
    listed = _cli("devices", "list", cwd=checkout, env=env)
    assert listed.returncode == 0 and "pi4" not in listed.stdout.replace("./devices.toml", "")
    assert not marker.exists()  # the planted command never ran
    assert not (tmp_path / "r.db").exists()
    # The user's own file keeps its power: the same option there is the user's choice and is used.
    own = Path(env["HOME"]) / ".config" / "edgebnn" / "devices.toml"
    own.parent.mkdir(parents=True)
    own.write_text((checkout / "devices.toml").read_text())
    assert_one_error_line(_cli("devices", "check", "pi4", cwd=checkout, env=env))  # ssh fails after its proxy ran
    assert marker.exists()


REFUSED = {  # an ssh option in a named devices file that is not the user's own -> what the one line says
    "ProxyCommand=touch {m}": "ProxyCommand is refused: it runs a local command",
    "proxycommand = touch {m}": "proxycommand is refused: it runs a local command",
    "LocalCommand=touch {m}": "LocalCommand is refused: it runs a local command",
    "PermitLocalCommand=yes": "PermitLocalCommand is refused: it runs a local command",
    "KnownHostsCommand=/bin/sh -c 'touch {m}'": "KnownHostsCommand is refused: it runs a local command",
    'Match=exec "touch {m}"': "Match is refused: it runs a local command",
    "PKCS11Provider={m}.so": "PKCS11Provider is refused: it loads a local library",
    "RemoteCommand=touch /tmp/x": "RemoteCommand is refused: it replaces the command edgebnn runs on the board",
    "ForwardAgent=yes": "ForwardAgent is refused: it hands the board your agent, display or ports",
    "StrictHostKeyChecking=no": "StrictHostKeyChecking is refused: it weakens the host-key check",
    "UserKnownHostsFile=/dev/null": "UserKnownHostsFile is refused: it weakens the host-key check",
    "ProxyJump=gw$(touch {m})": "ProxyJump is refused: it names a jump host that is not [user@]host[:port]",
    "ProxyJump=-oProxyCommand=touch {m}": "ProxyJump is refused",
    "SomethingNew=1": "SomethingNew is refused: it is not one of the options edgebnn reads from other files",
}


@pytest.mark.parametrize("option", list(REFUSED))
def test_a_named_devices_file_that_is_not_yours_cannot_run_commands(tmp_path, option):
    marker = tmp_path / "RAN"
    named = tmp_path / "their-devices.toml"
    named.write_text(_planted(marker, ["ConnectTimeout=2", option.format(m=marker)]))
    env = _home(tmp_path)
    for args in (["profile", tiny_tflite(), "-d", "pi4", "--db", tmp_path / "r.db"], ["devices", "list"]):
        assert_one_error_line(_cli(*args, "--devices-file", named, env=env, cwd=tmp_path),
                              f"devices file {named}: device 'pi4': ssh_options {REFUSED[option]}",
                              "is not your own devices file", "move the device there or drop the option")
    assert not marker.exists() and not (tmp_path / "r.db").exists()


def test_a_named_file_may_not_set_an_ssh_config_but_the_users_own_may_set_anything(tmp_path, monkeypatch):
    marker = tmp_path / "RAN"
    (tmp_path / "evil_ssh_config").write_text(f"Host *\n  ProxyCommand touch {marker}\n")
    named = tmp_path / "devices.toml"
    named.write_text(_planted(marker, ["ConnectTimeout=2"], 'ssh_config = "evil_ssh_config"\n'))
    env = _home(tmp_path)
    assert_one_error_line(_cli("devices", "check", "pi4", "--devices-file", named, env=env, cwd=tmp_path),
                          "ssh_config is refused: an ssh -F file can run local commands (ProxyCommand)",
                          "pass --ssh-config FILE yourself")
    assert not marker.exists()
    # ProxyJump to [user@]host[:port] words is read from any file: OpenSSH runs only itself to the jump host.
    named.write_text(_planted(marker, ["ProxyJump=pi@gateway.local:2222,[::1]:22", "StrictHostKeyChecking=yes"]))
    assert devices.load(named)["pi4"].ssh_options == ["ProxyJump=pi@gateway.local:2222,[::1]:22",
                                                      "StrictHostKeyChecking=yes"]
    # The user's own file, reached by any name (here a link to it), may set what it likes.
    monkeypatch.setenv("HOME", env["HOME"])
    own = devices.user_file()
    own.parent.mkdir(parents=True)
    own.write_text(_planted(marker, [f"ProxyCommand=touch {marker}"], f'ssh_config = "{tmp_path}/evil_ssh_config"\n'))
    (tmp_path / "link.toml").symlink_to(own)
    for path in (None, own, tmp_path / "link.toml"):
        dev = devices.load(path)["pi4"]
        assert dev.ssh_options == [f"ProxyCommand=touch {marker}"] and dev.source == str(devices.devices_file(path))
        assert dev.ssh_config == str(tmp_path / "evil_ssh_config")


def test_ssh_user_names_that_a_shell_would_read_are_refused():
    for url in ("ssh://a$(touch x)@host", "ssh://a%60id%60@host", "ssh://a;b@host", "ssh://-oX@host"):
        with pytest.raises(EdgebnnError, match="invalid user name: use letters, digits"):
            parse_url(url)
    assert parse_url("ssh://pi.user-1_x@host:2222").user == "pi.user-1_x"


# --------------------------------------------------------------------------------- devices clean and pid reuse
def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat (what remote.own_session records)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _innocent(cwd: Path) -> subprocess.Popen:
    """A process that is not edgebnn's, leading its own process group (as a benchmark would)."""
    return subprocess.Popen(["sleep", "300"], cwd=cwd, start_new_session=True)


def test_a_stale_pid_file_never_ends_an_innocent_process_but_ends_our_own_benchmark(tmp_path):
    workdir = tmp_path / "edgebnn.stale"
    workdir.mkdir()
    q = shlex.quote(str(workdir))
    innocent = _innocent(tmp_path)
    try:
        start = _start_time(innocent.pid)
        stale = {"an older edgebnn's pid file only": None, "another start time": f"{int(start) - 1}\nsleep\n",
                 "another program": f"{start}\nlce_benchmark_model\n",
                 "another working folder (start time and name both match)": f"{start}\nsleep\n"}
        for why, ident in stale.items():
            (workdir / "bench.pid").write_text(f"{innocent.pid}\n")
            (workdir / "bench.id").unlink(missing_ok=True)
            if ident is not None:
                (workdir / "bench.id").write_text(ident)
            subprocess.run(["sh", "-c", kill_script(q)], timeout=30)
            assert _alive(innocent.pid), why
        # A benchmark started the way a board starts one is proven and ended, with its whole group.
        (workdir / "bench.pid").unlink()
        (workdir / "bench.id").unlink()
        bench = "sh -c " + shlex.quote("sleep 300 & sleep 301")  # a group of two, as timeout and its runner
        ours = subprocess.Popen(["sh", "-c", f"cd {q} && {own_session(bench, q, 'sleep')}"])
        deadline = time.monotonic() + 30
        while not (workdir / "bench.pid").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        group = int((workdir / "bench.pid").read_text())
        assert (workdir / "bench.id").read_text().splitlines() == [_start_time(group), "sleep"]
        subprocess.run(["sh", "-c", kill_script(q)], timeout=30)
        ours.wait(timeout=30)
        assert not _alive(group) and not (workdir / "bench.pid").exists() and not (workdir / "bench.id").exists()
        assert _alive(innocent.pid)
    finally:
        innocent.kill()
        innocent.wait()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = started_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.mark.ssh
@pytest.mark.slow
def test_devices_clean_removes_a_dead_runs_folder_and_leaves_the_innocent_process_its_pid_file_names(sshd, tmp_path):
    innocent = _innocent(tmp_path)
    folders = []
    try:
        for ident in (None, f"{_start_time(innocent.pid)}\nsleep\n"):  # older format; a same-named twin elsewhere
            folder = Path(tempfile.mkdtemp(prefix="edgebnn."))
            (folder / "owner").write_text(f"{OWNER_HOST} {_dead_pid()}\n")
            (folder / "bench.pid").write_text(f"{innocent.pid}\n")
            if ident:
                (folder / "bench.id").write_text(ident)
            folders.append(folder)
        res = _cli("devices", "clean", sshd.url, "--ssh-config", sshd.config)
        assert res.returncode == 0, res.stderr
        for folder in folders:
            assert f"{folder}: removed: the edgebnn process that made it is gone" in res.stdout
            assert not folder.exists()
        time.sleep(1.5)  # kill_script waits 1 s between TERM and KILL
        assert _alive(innocent.pid)
    finally:
        innocent.kill()
        innocent.wait()


def _hostile_listing_lines(victim: Path, host: str, dead: int) -> list[str]:
    """Listing lines an attacker would like the board to print: a victim folder in the old format and the new."""
    return [f"{victim}|0|99999|{host}_{dead}", f"root|{victim.parent}", f"dir|{victim.name}|0|99999|{host}_{dead}",
            f"dir|edgebnn.victim01|0|99999|{host}_{dead}"]


def test_the_board_listing_is_parsed_strictly():
    from edgebnn.devices.cleanup import parse_listing

    host = OWNER_HOST.replace(" ", "_")
    good = f"dir|edgebnn.AbC123xy|0|700|{host}_42_"
    assert parse_listing(f"root|/tmp\n{good}") == [{"path": "/tmp/edgebnn.AbC123xy", "running": False,
                                                     "age_s": 700, "owner": f"{host}_42_"}]
    for root in ("", "root|", "root|tmp", "root|/tmp/../etc", "root|/t\x1bmp", "nothing"):
        assert parse_listing(f"{root}\n{good}") == []
    bad = ["/victims/d02|0|99999|h_1", "dir|../etc|0|1|h_1", "dir|edgebnn.a/b/c/d|0|1|h_1", "dir|d02|0|99999|h_1",
           "dir|edgebnn.AbC123xy|2|1|h_1", "dir|edgebnn.AbC123xy|0|x|h_1", "dir|edgebnn.AbC123xy|0|1|h 1",
           "dir|edgebnn.AbC123xy|0|1|h_1|extra", "dir|edgebnn.AbC123xy|0|1|", "dir|edgebnn.AbC123xy|0|1|nopid",
           "dir|edgebnn.toolongname|0|1|h_1", f"{good}\r", "dir|edgebnn.AbC123x\x1b|0|1|h_1"]
    assert parse_listing("root|/tmp\n" + "\n".join(bad)) == []
    assert len(parse_listing(f"root|/tmp\n{good}\n{good}")) == 1  # a name seen twice is one folder


@pytest.mark.ssh
@pytest.mark.slow
def test_devices_clean_deletes_nothing_a_hostile_owner_file_or_folder_name_points_at(sshd, tmp_path):
    """An owner file holding newlines and fake listing lines, a folder whose name holds them, and a folder of
    edgebnn's name form but no owner file (old enough to go): nothing outside the work folders goes, and the
    ownerless folder stays."""
    victim = tmp_path / "victims" / "d02"
    victim.mkdir(parents=True)
    (victim / "data").write_text("precious")
    host, dead = OWNER_HOST.replace(" ", "_"), _dead_pid()
    fake = "\n".join(_hostile_listing_lines(victim, host, dead))
    hostile = Path(tempfile.mkdtemp(prefix="edgebnn."))
    (hostile / "owner").write_text(f"{OWNER_HOST} {dead}\n{fake}\n")
    twin = Path(tempfile.mkdtemp(prefix="edgebnn."))  # no owner: not edgebnn's, however old
    (twin / "mine.txt").write_text("keep me")
    os.utime(twin, (time.time() - 86400, time.time() - 86400))
    named = Path(tempfile.gettempdir()) / f"edgebnn.x{os.getpid()}\n{fake.splitlines()[2]}"
    named.mkdir()
    (named / "owner").write_text(f"{OWNER_HOST} {dead}\n")
    try:
        res = _cli("devices", "clean", sshd.url, "--ssh-config", sshd.config)
        assert res.returncode == 0, res.stderr
        assert (victim / "data").read_text() == "precious"
        assert (twin / "mine.txt").read_text() == "keep me" and named.is_dir()
        assert str(victim) not in res.stdout and str(twin) not in res.stdout
        assert "\x1b" not in res.stdout and all(line.count("|") == 0 for line in res.stdout.splitlines())
    finally:
        for folder in (hostile, twin, named):
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------ a SIGKILLed emulated run's leftovers
def _all() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            args = Path(stat).with_name("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.append((int(Path(stat).parent.name), int(fields[1]), args))
    return out


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the children of ``pid``."""
    return [(child, args) for child, parent, args in _all() if parent == pid]


@pytest.mark.qemu
def test_sigkill_of_a_qemu_profile_leaves_no_emulator_and_clean_up_removes_its_folders(tmp_path):
    runner = aarch64_runner()
    model = tiny_tflite(128, 128)  # about 20 s under QEMU: long enough to be killed mid-run
    proc = subprocess.Popen([EDGEBNN, "profile", str(model), "-d", "qemu:aarch64", "--runner", str(runner), "--db",
                             str(tmp_path / "r.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    emulators = []
    while not emulators and time.monotonic() < deadline and proc.poll() is None:
        emulators = [pid for pid, args in _children(proc.pid) if "qemu-aarch64" in args and str(runner) in args]
        time.sleep(0.05)
    assert emulators, proc.communicate()
    time.sleep(1)
    emulators = [pid for pid, args in _children(proc.pid) if "qemu-aarch64" in args and str(runner) in args]
    assert emulators  # the runner under way (not QEMU's --version)
    left = sorted(glob.glob(os.path.join(tempfile.gettempdir(), f"edgebnn-*-p{proc.pid}-*")))
    proc.kill()
    proc.wait()

    def survivors():  # the emulators seen, and any process naming the killed run's scratch folders
        named = [pid for pid, _, args in _all() if f"-p{proc.pid}-" in args]
        return [pid for pid in set(emulators + named) if _alive(pid)]

    deadline = time.monotonic() + 10
    while survivors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not survivors()  # the emulator died with its parent
    assert left and all(Path(f).is_dir() for f in left)  # what SIGKILL leaves: the scratch folders
    res = _cli("devices", "clean", "qemu:aarch64")
    assert res.returncode == 0, res.stderr
    for folder in left:
        assert f"{folder}: removed: the edgebnn process that made it ({proc.pid}) is gone" in res.stdout
        assert not Path(folder).exists()


def test_sigkill_of_a_host_profile_leaves_no_benchmark_child(tmp_path):
    proc = subprocess.Popen([EDGEBNN, "profile", str(tiny_tflite(128, 128)), "--runs", "100000", "--db",
                             str(tmp_path / "r.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    bench = []
    while not bench and time.monotonic() < deadline and proc.poll() is None:
        bench = [pid for pid, args in _children(proc.pid) if "edgebnn.devices.local" in args]
        time.sleep(0.05)
    assert bench, proc.communicate()
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in bench) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in bench)


def test_the_next_run_removes_a_dead_runs_scratch_folders_and_keeps_a_live_ones(tmp_path):
    dead = Path(tempfile.mkdtemp(prefix=f"edgebnn-qemu-p{_dead_pid()}-"))
    scratch.mark(dead)
    (dead / "model.tflite").write_bytes(b"x")
    live = Path(tempfile.mkdtemp(prefix=f"edgebnn-count-p{os.getpid()}-"))
    scratch.mark(live)
    try:
        with scratch.owned_tempdir("qemu") as tmp:
            assert Path(tmp).name.startswith(f"edgebnn-qemu-p{os.getpid()}-") and scratch.is_marked(Path(tmp))
            assert not dead.exists() and live.is_dir()
    finally:
        shutil.rmtree(live)


def test_a_users_folder_that_merely_looks_like_a_scratch_or_control_folder_is_left_alone(tmp_path):
    """No marker, a marker naming another folder, a marker that is a symlink: none is edgebnn's, so none goes,
    though each names a process that is gone."""
    from edgebnn.devices import cleanup
    from edgebnn.devices.ssh import CONTROL_PREFIX

    dead = _dead_pid()
    plain = Path(tempfile.mkdtemp(prefix=f"edgebnn-qemu-p{dead}-"))
    wrong = Path(tempfile.mkdtemp(prefix=f"edgebnn-out-p{dead}-"))
    (wrong / scratch.MARKER).write_text(plain.name + "\n")
    linked = Path(tempfile.mkdtemp(prefix=f"edgebnn-count-p{dead}-"))
    (tmp_path / "name").write_text(linked.name + "\n")
    (linked / scratch.MARKER).symlink_to(tmp_path / "name")
    control = Path(tempfile.mkdtemp(prefix=CONTROL_PREFIX))  # no owner file
    folders = [plain, wrong, linked, control]
    try:
        for folder in folders:
            (folder / "mine.txt").write_text("keep me")
        found = cleanup.clean_local()
        assert not {f["path"] for f in found} & {str(f) for f in folders}
        assert all((f / "mine.txt").read_text() == "keep me" for f in folders)
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------- folders and FIFOs as inputs
def test_folders_and_fifos_are_named_as_such_and_never_read(tmp_path):
    folder, fifo = tmp_path / "folder.tflite", tmp_path / "pipe.tflite"
    folder.mkdir()
    os.mkfifo(fifo)
    db = tmp_path / "r.db"
    model = tiny_tflite()
    cases = [(["profile", folder], f"model file {folder} is a folder"),
             (["profile", fifo], f"model file {fifo} is not a regular file (a FIFO, socket or device)"),
             (["profile", model, "-d", "qemu:aarch64", "--runner", folder], f"runner {folder} is a folder"),
             (["profile", model, "-d", "qemu:aarch64", "--runner", fifo], f"runner {fifo} is not a regular file"),
             (["estimate", model, "--runner", fifo], f"runner {fifo} is not a regular file"),
             (["profile", model, "-d", "ssh://nobody@127.0.0.1:9", "--runner", folder],
              f"runner {folder} is a folder here"),
             (["profile", model, "-d", "ssh://nobody@127.0.0.1:9", "--runner", fifo],
              f"runner {fifo} is not a regular file"),
             (["devices", "list", "--devices-file", folder], f"devices file {folder} is a folder"),
             (["devices", "list", "--devices-file", fifo], f"devices file {fifo} is not a regular file")]
    for args, needle in cases:
        line = assert_one_error_line(_cli(*args, "--db", db, timeout=60) if args[0] != "devices"
                                     else _cli(*args, timeout=60), needle)
        assert "does not exist" not in line
    assert folder.is_dir() and fifo.is_fifo()  # both left as they were
    for graph in (folder, fifo):  # edgebnn's stand-in runner, as lce_benchmark_model would, never blocks on a FIFO
        run = subprocess.run([sys.executable, "-m", "edgebnn.runner", f"--graph={graph}"], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 1 and run.stderr.strip() == f"ERROR: Could not open '{graph}': not a regular file"


# --------------------------------------------------------------------- a truncated runner, a read-only ~/.cache
@pytest.mark.qemu
def test_a_truncated_runner_is_one_line_before_anything_runs(tmp_path):
    whole = aarch64_runner().read_bytes()
    for size in (40, 4096, len(whole) // 2, len(whole) - 1):
        cut = tmp_path / "lce_benchmark_model_aarch64"
        cut.write_bytes(whole[:size])
        for args in (["profile", tiny_tflite(), "-d", "qemu:aarch64"], ["estimate", tiny_tflite()]):
            assert_one_error_line(_cli(*args, "--runner", cut, "--db", tmp_path / "r.db"),
                                  f"runner {cut} is cut short ", "download lce_benchmark_model_aarch64 again")


@pytest.mark.ssh
@pytest.mark.qemu
@pytest.mark.slow
def test_a_truncated_runner_is_never_uploaded_to_a_board(sshd, tmp_path):
    cut = tmp_path / "lce_benchmark_model_aarch64"
    cut.write_bytes(aarch64_runner().read_bytes()[:100_000])
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "edgebnn.*")))
    assert_one_error_line(_cli("profile", tiny_tflite(), "-d", sshd.url, "--ssh-config", sshd.config, "--runner", cut,
                               "--db", tmp_path / "r.db"),
                          f"runner {cut} is cut short (100000 bytes; its ELF headers need")
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "edgebnn.*"))) <= before


def _read_only(folder: Path) -> list[str]:
    """Words that run a command with ``folder`` read-only: by its permission bits for a user; for root, who ignores
    them, by a read-only bind mount in a private mount namespace. The command never runs (exit 97) if the folder
    can still be written."""
    folder.chmod(0o555)
    script = 'if touch "$0/.probe" 2>/dev/null; then exit 97; fi; exec "$@"'
    if os.geteuid() != 0:
        return ["sh", "-c", script, str(folder)]
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && ' + script
    return ["unshare", "--mount", "--", "sh", "-c", script, str(folder)]


@pytest.mark.qemu
def test_a_read_only_cache_builds_the_plugin_in_a_private_temp_folder_or_says_why_not(tmp_path):
    home, tmpdir = tmp_path / "home", tmp_path / "tmp"
    (home / ".cache").mkdir(parents=True)
    tmpdir.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmpdir)}
    env.pop("XDG_CACHE_HOME", None)
    fallback = tmpdir / f"edgebnn-cache-{os.getuid()}"
    run = [*_read_only(home / ".cache"), EDGEBNN, "estimate", str(tiny_tflite()), "--runner", str(aarch64_runner()),
           "--db", str(tmp_path / "r.db")]
    proc = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "fast path" not in proc.stderr, proc.stderr[-2000:]  # counted under QEMU
    assert list(fallback.glob("insn_count-*.so")) and not list(home.rglob("*.so"))
    assert fallback.stat().st_mode & 0o777 == 0o700
    # A fallback folder that is not private (here: open to everyone) is refused in one line, never used.
    for so in fallback.iterdir():
        so.unlink()
    fallback.chmod(0o777)
    run = [*_read_only(home / ".cache"), EDGEBNN, "profile", str(tiny_tflite()), "-d", "qemu:aarch64", "--runner",
           str(aarch64_runner()), "--db", str(tmp_path / "r2.db")]
    assert_one_error_line(subprocess.run(run, capture_output=True, text=True, env=env, timeout=300),
                          f"{fallback} is not a private folder of yours", "set XDG_CACHE_HOME")
    assert not list(tmp_path.rglob("*.so"))
    (home / ".cache").chmod(0o755)


def test_die_with_parent_arms_the_signal_in_the_child():
    arm = scratch.die_with_parent()
    assert arm is not None  # Linux
    child = subprocess.run([sys.executable, "-c", "import ctypes, signal; s = ctypes.c_int(); "
                            "ctypes.CDLL(None).prctl(2, ctypes.byref(s), 0, 0, 0); print(s.value)"],
                           capture_output=True, text=True, preexec_fn=arm, timeout=60)
    assert child.stdout.strip() == str(int(signal.SIGKILL))  # PR_GET_PDEATHSIG


def test_convert_and_verify_name_folders_and_fifos_and_never_read_them(tmp_path):
    folder, fifo, keras_fifo = tmp_path / "folder.tflite", tmp_path / "pipe.tflite", tmp_path / "pipe.keras"
    folder.mkdir()
    os.mkfifo(fifo)
    os.mkfifo(keras_fifo)
    cases = [(["verify", folder, "-d", "qemu:aarch64"], f"model file {folder} is a folder"),
             (["verify", fifo, "-d", "qemu:aarch64"], f"model file {fifo} is not a regular file"),
             (["convert", keras_fifo], f"{keras_fifo} is not a regular file (a FIFO, socket or device)")]
    for args, needle in cases:
        assert "does not exist" not in assert_one_error_line(_cli(*args, timeout=60), needle)
    assert folder.is_dir() and fifo.is_fifo() and keras_fifo.is_fifo()
