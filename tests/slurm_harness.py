"""Helpers for pytest tests that run the workflow through a real SLURM cluster.

Typical use (cluster from ``profiles/admin/slurm_cluster.sh start``)::

    from slurm_harness import slurm_available, run_with_profile, submitted_job_count
    # (pytest's default "prepend" import mode puts tests/ on sys.path for test
    #  modules in tests/; with tests/__init__.py use `from tests.slurm_harness ...`)

    ok, why = slurm_available()
    if not ok:
        pytest.skip(why)
    proc = run_with_profile(tmp_path, SNAKEFILE, tmp_path / "config.yaml",
                            REPO / "profiles" / "slurm", timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert submitted_job_count(tmp_path) == expected_number_of_jobs

Snakemake is started with the interpreter running the tests (``sys.executable -m
snakemake``); the SLURM jobs run ``<that interpreter> -m snakemake ...`` and inherit
the environment (the plugin submits with ``--export=ALL``), with that interpreter's
bin directory put first on PATH so ``snakemake``/``python`` in rule shell commands
are the same environment.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = [
    "slurm_available",
    "slurm_env",
    "run_with_profile",
    "submitted_job_ids",
    "submitted_job_count",
    "TIMEOUT_RETURNCODE",
]

#: returncode of :func:`run_with_profile` when the run was killed for its time bound
TIMEOUT_RETURNCODE = 124

# snakemake-executor-plugin-slurm 2.8 log lines
_SUBMITTED_RE = re.compile(r"Job \S+ has been submitted with SLURM jobid (\d+)")
_ARRAY_RE = re.compile(
    r"Submitted array job with Snakemake IDs \S+ and SLURM job ID (\d+)\. "
    r"The individual task IDs are (\d+)-(\d+)"
)
_RUN_ID_RE = re.compile(r"SLURM run ID: (\S+)")
_SLURM_LOG_NAME_RE = re.compile(r"^(\d+(?:_\d+)?)\.log$")

_DEFAULT_STATE_DIR = "/tmp/stsflow-slurm"
_BAD_NODE_STATES = ("down", "drain", "drng", "fail", "inval", "unk", "maint", "futr")


def slurm_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for SLURM client commands.

    Like ``base`` (default ``os.environ``); if neither ``SLURM_CONF`` nor
    ``/etc/slurm/slurm.conf`` exists but the test cluster's config does
    (``$SLURM_STATE_DIR/etc/slurm.conf``, default state dir /tmp/stsflow-slurm),
    ``SLURM_CONF`` points to it.
    """
    env = dict(os.environ if base is None else base)
    if not env.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        state = env.get("SLURM_STATE_DIR") or _DEFAULT_STATE_DIR
        conf = Path(state) / "etc" / "slurm.conf"
        if conf.is_file():
            env["SLURM_CONF"] = str(conf)
    return env


def _which(name: str, env: Mapping[str, str]) -> str | None:
    return shutil.which(name, path=env.get("PATH"))


def slurm_available() -> tuple[bool, str]:
    """(True, description) if SLURM clients are on PATH and a node responds.

    Otherwise (False, reason) -- suitable for ``pytest.skip(reason)``.
    """
    env = slurm_env()
    missing = [c for c in ("sinfo", "sbatch", "squeue", "scancel") if not _which(c, env)]
    if missing:
        return False, f"SLURM client(s) not on PATH: {', '.join(missing)}"
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%N %t %P"],
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer within 20 s (slurmctld down?)"
    except OSError as exc:
        return False, f"sinfo could not run: {exc}"
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        return False, f"sinfo failed (rc={proc.returncode}): {msg[-1] if msg else ''}"
    responding, other = [], []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        node, state = parts[0], parts[1].lower()
        # a trailing '*' means "not responding"; '~' powered off; '#' powering up
        if state.endswith(("*", "~", "#", "!", "%")) or state.startswith(_BAD_NODE_STATES):
            other.append(f"{node}={state}")
        else:
            responding.append(f"{node}={state}")
    if not responding:
        detail = ", ".join(other) if other else "no nodes"
        return False, f"no responding SLURM node ({detail})"
    return True, f"SLURM node(s) responding: {', '.join(sorted(set(responding)))}"


def _profile_executor(profile_dir: Path) -> str | None:
    for name in ("config.yaml", "profile.yaml"):
        cfg = profile_dir / name
        if cfg.is_file():
            for line in cfg.read_text().splitlines():
                m = re.match(r"^executor:\s*['\"]?([\w-]+)", line)
                if m:
                    return m.group(1)
    return None


def _snakemake_command() -> list[str]:
    return [sys.executable, "-m", "snakemake"]


def _scancel(job_ids: Iterable[str], run_ids: Iterable[str], env: Mapping[str, str]) -> None:
    """Cancel this user's jobs of the given ids / snakemake run ids (job names)."""
    scancel = _which("scancel", env)
    if not scancel:
        return
    user = getpass.getuser()
    cmds = []
    ids = sorted(set(job_ids))
    if ids:
        cmds.append([scancel, "--quiet", f"--user={user}", *ids])
    for rid in sorted(set(run_ids)):
        cmds.append([scancel, "--quiet", f"--user={user}", f"--name={rid}"])
    for cmd in cmds:
        try:
            subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
        except (subprocess.TimeoutExpired, OSError):
            pass


def _kill_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGINT the process group (snakemake then cancels its jobs), then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                # leader gone; make sure no child of the group survives
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            time.sleep(0.2)


def run_with_profile(
    workdir: str | os.PathLike,
    snakefile: str | os.PathLike,
    configfile: str | os.PathLike | None,
    profile_dir: str | os.PathLike,
    timeout_s: float,
    *,
    targets: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    fast_status_checks: bool = True,
) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` with ``--profile profile_dir``, bounded in time.

    - cwd is ``workdir`` (so ``.snakemake/`` and the SLURM logs land there).
    - ``fast_status_checks`` (only for profiles with ``executor: slurm``): poll job
      states every few seconds instead of the plugin's 40+ s, to keep tests short.
    - On timeout the whole process group is interrupted/killed, this user's SLURM
      jobs submitted by the run are cancelled (by job id and by the run's job
      name), and the result has ``returncode == TIMEOUT_RETURNCODE`` (124) and a
      note at the end of ``stderr``.

    Returns a CompletedProcess with text ``stdout``/``stderr`` (snakemake logs to
    stderr).
    """
    workdir = Path(workdir).resolve()
    run_env = slurm_env(env)
    profile_arg = str(profile_dir)
    if os.sep in profile_arg:
        profile_dir = Path(profile_arg).resolve()
        profile_arg = str(profile_dir)
    else:  # a bare name, passed on as the user types it (`--profile slurm`)
        config_home = Path(run_env.get("XDG_CONFIG_HOME", Path.home() / ".config"))
        profile_dir = config_home / "snakemake" / profile_arg
    bindir = str(Path(sys.executable).parent)
    path = run_env.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bindir]:
        run_env["PATH"] = bindir + (os.pathsep + path if path else "")

    cmd = [*_snakemake_command(), "--snakefile", str(Path(snakefile).resolve())]
    cmd += ["--profile", profile_arg]
    if configfile is not None:
        cmd += ["--configfile", str(Path(configfile).resolve())]
    if fast_status_checks and _profile_executor(profile_dir) == "slurm":
        cmd += [
            "--slurm-init-seconds-before-status-checks", "5",
            "--seconds-between-status-checks", "5",
        ]
    cmd += [*extra_args, *targets]

    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=run_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # own process group, so we can kill all of it
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        text = (out or "") + (err or "")
        job_ids = _parse_job_ids(text) | _job_ids_from_logs(workdir)
        run_ids = set(_RUN_ID_RE.findall(text))
        _scancel(job_ids, run_ids, run_env)
        err = (err or "") + (
            f"\n[slurm_harness] TIMEOUT after {timeout_s}s: killed snakemake's process "
            f"group and cancelled SLURM jobs {sorted(job_ids)} / run ids {sorted(run_ids)}\n"
        )
        return subprocess.CompletedProcess(cmd, TIMEOUT_RETURNCODE, out or "", err)
    except BaseException:
        # e.g. KeyboardInterrupt in pytest: do not leave snakemake or jobs behind
        _kill_group(proc, grace_s=5.0)
        _scancel(_job_ids_from_logs(workdir), (), run_env)
        raise


def _parse_job_ids(text: str) -> set[str]:
    ids = set(_SUBMITTED_RE.findall(text))
    for jobid, first, last in _ARRAY_RE.findall(text):
        ids.update(f"{jobid}_{i}" for i in range(int(first), int(last) + 1))
    return ids


def _job_ids_from_logs(workdir: Path) -> set[str]:
    ids: set[str] = set()
    logdir = workdir / ".snakemake" / "log"
    if logdir.is_dir():
        for f in logdir.glob("*.snakemake.log"):
            try:
                ids |= _parse_job_ids(f.read_text(errors="replace"))
            except OSError:
                pass
    return ids


def submitted_job_ids(workdir: str | os.PathLike) -> set[str]:
    """SLURM job ids snakemake submitted from ``workdir`` (array tasks as ``A_a``).

    Union of the ids in snakemake's logs (``.snakemake/log/*.snakemake.log``, lines
    "Job ... has been submitted with SLURM jobid N") and the per-job SLURM log files
    ``.snakemake/slurm_logs/rule_*/**/<jobid>.log`` (kept for successful jobs only
    with ``slurm-keep-successful-logs``).
    """
    workdir = Path(workdir)
    ids = _job_ids_from_logs(workdir)
    slurm_logs = workdir / ".snakemake" / "slurm_logs"
    if slurm_logs.is_dir():
        for f in slurm_logs.rglob("*.log"):
            m = _SLURM_LOG_NAME_RE.match(f.name)
            if m:
                ids.add(m.group(1))
    return ids


def submitted_job_count(workdir: str | os.PathLike) -> int:
    """Number of SLURM jobs snakemake submitted from ``workdir`` (see submitted_job_ids)."""
    return len(submitted_job_ids(workdir))


def submitted_per_rule(workdir: str | os.PathLike) -> dict[str, int]:
    """SLURM jobs per rule, from the per-job log folders
    ``.snakemake/slurm_logs/rule_<rule>/…/<jobid>.log`` (kept with ``slurm-keep-successful-logs``)."""
    ids: dict[str, set[str]] = {}
    slurm_logs = Path(workdir) / ".snakemake" / "slurm_logs"
    for f in slurm_logs.rglob("*.log") if slurm_logs.is_dir() else []:
        m = _SLURM_LOG_NAME_RE.match(f.name)
        rule = f.relative_to(slurm_logs).parts[0]
        if m and rule.startswith("rule_"):
            ids.setdefault(rule[len("rule_"):], set()).add(m.group(1))
    return {rule: len(v) for rule, v in ids.items()}
