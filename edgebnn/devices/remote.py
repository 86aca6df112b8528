"""One profiling session on a board over SSH.

Open: read the board facts (one call), pick the target profile, find the runner (on the board, else upload
the local file), refuse before running when a check fails, make a fresh ``mktemp -d`` work directory. Per
model: upload, check its sha256 on the board, run the benchmark once per thread count (temperature before and
after, under ``timeout``), parse. Close: remove the work directory, whatever happened.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from edgebnn import targets
from edgebnn.devices import board, load
from edgebnn.devices.local import kernels_label, sha256
from edgebnn.devices.parse import parse
from edgebnn.devices.scratch import owned_tempdir
from edgebnn.devices.ssh import Connection
from edgebnn.errors import EdgebnnError, OptionError


@dataclass
class RunnerSpec:
    """The benchmark command: its words, and the local file to upload when the board lacks it."""

    words: list[str]
    local_file: Path | None = None

    @property
    def name(self) -> str:
        return Path(self.words[0]).name

    @property
    def checks_elf(self) -> bool:
        # A `python -m ...` command or any command with arguments is not one binary: no ELF check.
        return len(self.words) == 1


def runner_spec(text: str) -> RunnerSpec:
    """``--runner`` / devices.toml ``runner``: a local file (uploaded when the board lacks it), or a path or
    command on the board (``lce_benchmark_model``, ``~/bin/lce_benchmark_model``, ``python3 -m edgebnn.runner``)."""
    text = (text or "").strip()
    if not text:
        raise OptionError("no runner given: pass {runner:=PATH} (lce_benchmark_model for the board) or set "
                          "runner in devices.toml")
    local = Path(text).expanduser()
    if not text.startswith("~") and local.is_file():
        return RunnerSpec([text], local_file=local.resolve())
    if not text.startswith("~") and local.is_dir():
        raise EdgebnnError(f"runner {text} is a folder here: pass the lce_benchmark_model file inside it, or a "
                           "command on the board")
    if not text.startswith("~") and local.exists():
        raise EdgebnnError(f"runner {text} is not a regular file (a FIFO, socket or device): pass an "
                           "lce_benchmark_model build, or a command on the board")
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise EdgebnnError(f"runner {text!r} is not a valid command: {err}") from None
    return RunnerSpec(words)


def pick_target(facts: dict, name: str | None):
    """The target profile named, else the one whose machines include the board's ``uname -m``."""

    if name:
        return targets.load(name)
    machine = facts.get("machine")
    if machine in ("aarch64", "arm64") and facts.get("long_bit") == 32:
        return targets.load("armv7")
    for candidate in targets.names():
        t = targets.load(candidate)
        if machine in t.machines:
            return t
    return None


class RunFailed(EdgebnnError):
    """One benchmark run failed or crashed on the board (the connection is fine: the next model can run)."""


PID_FILE = "bench.pid"  # in the work directory while a benchmark runs: its process group id
ID_FILE = "bench.id"  # beside it: the benchmark's start time (line 1) and the runner's name (line 2)
# Seconds for the clean-up at the end (a board answers in well under one; the tests' emulated board, under
# qemu-user with both cores busy, took over 30 and left its work directory behind)
CLOSE_TIMEOUT = 90
WORKDIR_GLOB = "edgebnn.*"  # what `mktemp -d "${TMPDIR:-/tmp}/edgebnn.XXXXXXXX"` makes
OWNER_FILE = "owner"  # "<host> <pid>" of the edgebnn process that made the work directory
OWNER_HOST = socket.gethostname()


def start_time(pid: str) -> str:
    """Shell words printing process ``pid``'s start time: field 22 of /proc/PID/stat (clock ticks after boot,
    counted after the parenthesised name, which may hold spaces), else ``ps -o lstart=`` where there is no /proc.
    Nothing for a process that is gone. No single quote inside: it goes into ``sh -c '...'``."""
    return (f'{{ sed -n "s/^.*) //p" /proc/{pid}/stat 2>/dev/null | cut -d" " -f20 | grep . || '
            f'ps -o lstart= -p {pid} 2>/dev/null | tr -s " " _ | grep .; }}')


# `edgebnn_runs DIR` prints the pid of DIR's benchmark when that process is provably the one edgebnn started there:
# the pid file's process still has the recorded start time (a pid reused after a reboot or a wrap has another),
# its command line names the recorded runner, and (with /proc) its working directory is DIR. Else it fails.
RUNS_FUNCTION = (
    'edgebnn_runs() { p=$(cat "$1/' + PID_FILE + '" 2>/dev/null); case "$p" in ""|*[!0-9]*) return 1;; esac; '
    'want=$(sed -n 1p "$1/' + ID_FILE + '" 2>/dev/null); name=$(sed -n 2p "$1/' + ID_FILE + '" 2>/dev/null); '
    '[ -n "$want" ] && [ -n "$name" ] && [ "$(' + start_time("$p") + ')" = "$want" ] || return 1; '
    'args=$(tr "\\0" " " < "/proc/$p/cmdline" 2>/dev/null); [ -n "$args" ] || args=$(ps -o args= -p "$p" 2>/dev/null); '
    'case "$args" in *"$name"*) ;; *) return 1;; esac; '
    'if [ -d "/proc/$p" ]; then [ "$(readlink "/proc/$p/cwd")" = "$(cd "$1" 2>/dev/null && pwd -P)" ] || return 1; '
    'fi; echo "$p"; }')


def kill_script(workdir_q: str) -> str:
    """Shell lines that end the benchmark of a work directory (already quoted): its whole process group (it runs
    under ``setsid``), TERM then KILL, by the pid file it wrote, and only when ``edgebnn_runs`` proves the process
    is that benchmark (a stale pid file may name an innocent process now)."""
    return (f'{RUNS_FUNCTION}; if pg=$(edgebnn_runs {workdir_q}); then '
            'kill -TERM -- "-$pg" 2>/dev/null || kill -TERM "$pg" 2>/dev/null; sleep 1; '
            'kill -KILL -- "-$pg" 2>/dev/null || kill -KILL "$pg" 2>/dev/null; fi')


def own_session(run: str, workdir_q: str, runner_name: str) -> str:
    """``run`` (a shell command line) in its own session and process group (``setsid -w``, or a background job
    where there is no setsid), its id in the work directory's pid file and its start time and ``runner_name`` in
    the id file (written first): :func:`kill_script` ends it and everything it started."""
    pid, ident, name = f"{workdir_q}/{PID_FILE}", f"{workdir_q}/{ID_FILE}", shlex.quote(runner_name)
    record = 's=$(' + start_time("$$") + '); printf "%s\\n%s\\n" "$s" "$2" > "$1"; echo $$ > "$0"; shift 2'
    return (f"if setsid -w true >/dev/null 2>&1; then setsid -w sh -c '{record}; exec \"$@\"' {pid} {ident} {name} "
            f"{run}; else {run} & p=$!; s=$({start_time('$p')}); printf '%s\\n%s\\n' \"$s\" {name} > {ident}; "
            f"echo $p > {pid}; wait $p; fi; rc=$?; rm -f {pid} {ident}; (exit $rc)")


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name)[:80] or "runner"


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


class BoardSession:
    """Profiles models on one board; use as a context manager (the work directory is removed on exit)."""

    def __init__(self, device, runner: str | None = None, target: str | None = None, timeout: float = 600,
                 connect_timeout: int = 10, warn=None):
        self.device = device
        self.conn = Connection(device.ssh_target(), connect_timeout=connect_timeout)
        self.runner_text = runner or device.runner
        self.target_name = target or device.target
        self.timeout = float(timeout)
        self.warn = warn or (lambda msg: None)
        self.workdir: str | None = None
        self.facts: dict = {}
        self.target = None
        self.runner: RunnerSpec | None = None
        self.command: list[str] = []
        self.warnings: list[str] = []

    @property
    def url(self) -> str:
        return self.conn.target.url

    @property
    def runner_name(self) -> str:
        """What the benchmark's command line surely holds: the runner's file name (see :func:`own_session`)."""
        return Path(self.command[0]).name if self.command else "lce_benchmark_model"

    def facts_only(self, runner_text: str | None = None) -> dict:
        """Board facts (and the runner's presence) without touching the board's files."""
        word = None
        if runner_text:
            spec = runner_spec(runner_text)
            word = board.quote_remote(spec.name if spec.local_file else spec.words[0])
        proc = self.conn.run(board.facts_script(word), timeout=60, what="reading board facts")
        return board.parse_facts(proc.stdout)

    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _open(self) -> None:
        if not self.runner_text:
            self.facts = self.facts_only()
            self.target = pick_target(self.facts, self.target_name)
            self.runner_text = self.target.runner if self.target else None
        self.runner = runner_spec(self.runner_text)
        self.facts = self.facts_only(self.runner_text)
        self.target = pick_target(self.facts, self.target_name)
        spec, facts = self.runner, self.facts
        on_board = facts.get("runner_path")
        head = facts.get("runner_head") or b""
        upload = False
        if spec.local_file is not None:
            local_sha = sha256(spec.local_file)
            if on_board and self._remote_sha(on_board) == local_sha:
                self.command = [on_board]
            else:
                upload = True
                head = spec.local_file.open("rb").read(20)
                cut = board.elf_truncated(spec.local_file)
                if cut:
                    raise EdgebnnError(f"runner {spec.local_file} {cut}: the copy is incomplete; copy or download "
                                       "it again")
        elif not on_board:
            raise OptionError("runner {name} not found on {url}: install it there, or pass {runner:=PATH} to a local "
                              "build (e.g. lce_benchmark_model_aarch64) to upload", name=spec.words[0], url=self.url)
        else:
            self.command = list(spec.words)
        problems, self.warnings = board.check(facts, self.target, head if spec.checks_elf else None,
                                              runner_name=spec.name, where=self.url)
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise EdgebnnError(problems[0] + more)
        for w in self.warnings:
            self.warn(w)
        # The owner file names this process: `edgebnn devices clean` removes a folder whose owner is gone.
        owner = shlex.quote(f"{OWNER_HOST} {os.getpid()}")
        proc = self.conn.run(f'd=$(mktemp -d "${{TMPDIR:-/tmp}}/edgebnn.XXXXXXXX") && echo {owner} > "$d/{OWNER_FILE}"'
                             ' && echo "$d"', timeout=60, what="making a work directory")
        workdir = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if not re.fullmatch(r"/[\w./\-]+", workdir):
            raise EdgebnnError(f"{self.url}: mktemp -d returned {workdir!r}; is /tmp writable there?")
        self.workdir = workdir
        if upload:
            remote = f"{workdir}/{_safe_name(spec.name)}"
            self._put(spec.local_file, remote, local_sha, "uploading the runner")
            self.conn.run(f"chmod +x {shlex.quote(remote)}", timeout=60, what="making the runner executable")
            self.command = [remote]

    def _remote_sha(self, path: str) -> str:
        q = board.quote_remote(path)
        proc = self.conn.run(f"(sha256sum {q} 2>/dev/null || shasum -a 256 {q}) | cut -d' ' -f1", timeout=120,
                             what="checking a sha256", check=False)
        return proc.stdout.strip()

    def _put(self, local: Path, remote: str, sha: str, what: str) -> None:
        self.conn.upload(local, remote, timeout=max(self.timeout, 60), what=what)
        got = self._remote_sha(remote)
        if got != sha:
            raise EdgebnnError(f"{local.name} arrived corrupted on {self.url} (sha256 {got[:12] or 'unreadable'} "
                               f"!= {sha[:12]}): check the board's disk space and retry")

    def close(self) -> None:
        """End whatever benchmark still runs (interrupted or failed), remove the work directory, end the
        connection."""
        try:
            if self.workdir:
                workdir, self.workdir = self.workdir, None
                q = shlex.quote(workdir)
                try:
                    self.conn.run(f"{kill_script(q)}; rm -rf -- {q}", timeout=CLOSE_TIMEOUT,
                                  what="ending the benchmark and removing the work directory")
                except EdgebnnError as err:
                    self.warn(f"could not end the benchmark and remove {workdir} on {self.url} ({err}): run "
                              f"`edgebnn devices clean {self.device.name}` once the board answers")
        finally:
            self.conn.close()

    def upload_model(self, path: Path, sha: str) -> str:
        remote = f"{self.workdir}/model-{sha[:16]}.tflite"
        self._put(path, remote, sha, f"uploading {path.name}")
        return remote

    def remove(self, remote: str) -> None:
        self.conn.run(f"rm -f -- {shlex.quote(remote)}", timeout=30, what="removing a model", check=False)

    def benchmark(self, remote_model: str, threads: int, runs: int, warmup: int, op_profile: bool,
                  use_xnnpack: bool | None = None) -> dict:
        """Run the benchmark once; the parsed output plus the board's temperature before and after."""
        flags = [f"--graph={remote_model}", f"--num_threads={int(threads)}", f"--num_runs={int(runs)}",
                 f"--warmup_runs={int(warmup)}", "--min_secs=0", "--warmup_min_secs=0"]
        if op_profile:
            flags.append("--enable_op_profiling=true")
        if use_xnnpack is not None:
            flags.append(f"--use_xnnpack={'true' if use_xnnpack else 'false'}")
        limit = int(self.timeout)
        wd = shlex.quote(self.workdir)
        run = own_session(self._command_line(flags, limit), wd, self.runner_name)
        # Temperatures, the load (/proc) and the shell's children's CPU time (`times`) around the benchmark.
        script = "; ".join([f"cd {wd} || exit 96", board.temperature_script("before"),
                            f"echo '@@load_before'; ({load.SCRIPT}) 2>/dev/null", "echo '@@output'", run, "rc=$?",
                            f"echo '@@load_after'; ({load.SCRIPT}) 2>/dev/null", "echo '@@times'; times",
                            board.temperature_script("after"), "exit $rc"])
        proc = self.conn.run(script, timeout=limit + 45, what=f"running {self.runner.name}", check=False)
        s = board.sections(proc.stdout)
        output = s.get("output", "")
        rc = proc.returncode
        if rc != 0:
            raise RunFailed(self._failure(rc, output, proc.stderr, limit))
        parsed = parse(output)
        parsed["load"] = load.around(load.parse(s.get("load_before")), load.parse(s.get("load_after")),
                                     load.parse_times(s.get("times")))
        parsed["temp_before_c"] = board.temperature_c(s.get("temp_before"))
        parsed["temp_after_c"] = board.temperature_c(s.get("temp_after"))
        parsed["throttled_after"] = s.get("throttled_after") or None
        parsed["raw"] = output
        return parsed

    def _command_line(self, flags: list[str], limit: int) -> str:
        """The runner with ``flags``, quoted for the board's shell, under ``timeout`` when the board has it."""
        words = [board.quote_remote(self.command[0])] + [shlex.quote(w) for w in self.command[1:] + list(flags)]
        run = " ".join(words)
        return f"timeout -k 5 {limit} {run}" if self.facts.get("has_timeout") else run

    def run_files(self, flags: list[str], files_in: dict | None = None, files_out=(), timeout: float | None = None
                  ) -> dict:
        """Run the runner in the work directory with ``flags`` (which name files relative to it): ``files_in``
        ({name: local path}) uploaded first and checked by sha256, ``files_out`` (names) read back after.
        Returns {stdout, stderr, rc, files: {name: bytes}} (an output the runner did not write is left out);
        the files are removed from the board afterwards."""

        files_in = dict(files_in or {})
        names = [*files_in, *files_out]
        bad = [n for n in names if not re.fullmatch(r"[\w.\-]+", n)]
        if bad:
            raise ValueError(f"unsafe file name {bad[0]!r}")
        for name, local in files_in.items():
            self._put(Path(local), f"{self.workdir}/{name}", sha256(local), f"uploading {name}")
        limit = int(timeout or self.timeout)
        cd = f"cd {shlex.quote(self.workdir)} || exit 96"
        run = own_session(self._command_line(flags, limit), shlex.quote(self.workdir), self.runner_name)
        proc = self.conn.run(f"{cd}; {run}", timeout=limit + 45,
                             what=f"running {self.runner.name}", check=False)
        files = {}
        if files_out:
            listed = self.conn.run(f"{cd}; ls -1 -- {' '.join(files_out)} 2>/dev/null; exit 0", timeout=60,
                                   what="listing the runner's output files").stdout.split()
            with owned_tempdir("out") as tmp:
                for name in (n for n in files_out if n in listed):
                    self.conn.download(f"{self.workdir}/{name}", Path(tmp) / name, timeout=max(self.timeout, 60),
                                       what=f"reading back {name}")
                    files[name] = (Path(tmp) / name).read_bytes()
        if names:
            self.conn.run(f"{cd}; rm -f -- {' '.join(names)}", timeout=60, what="removing files", check=False)
        return {"stdout": proc.stdout, "stderr": proc.stderr, "rc": proc.returncode, "files": files}

    def _failure(self, rc: int, output: str, stderr: str, limit: int) -> str:
        name = self.runner.name
        lines = [ln.strip() for ln in (stderr + "\n" + output).splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith(("ERROR", "error", "Error")) or "rror:" in ln]
        detail = (errs or lines or ["no output"])[-1][:200]
        if rc in (124, 137) and self.facts.get("has_timeout"):
            return (f"{name} on {self.url} gave no result within {limit} s (--timeout): the board stopped answering "
                    "or the model is too slow; nothing was stored for it")
        if rc == 96:
            return f"the work directory on {self.url} vanished: is something cleaning /tmp there?"
        if rc == 127 or rc == 126:
            return f"{name} cannot be executed on {self.url} (exit {rc}): {detail}"
        if rc > 128:
            return f"{name} crashed on {self.url} ({_signal_name(rc - 128)}): {detail}"
        return f"{name} failed on {self.url} (exit {rc}): {detail}"

    def result_fields(self) -> dict:
        """What every result from this board records besides the timings."""
        keep = {k: v for k, v in self.facts.items() if k not in ("runner_head",)}
        fields = {"machine": self.facts.get("label") or self.url,
                  "kernels": kernels_label(self.facts.get("machine", "")),
                  "target": self.target.name if self.target else None, "runner": " ".join(self.command),
                  "board": keep, "warnings": list(self.warnings)}
        if self.facts.get("emulator"):  # wall time on this host's CPU through an emulator: never board latency
            fields["kernels"] += " under emulation (emulated wall time, not latency)"
            fields["kind"] = "host"
        return fields
