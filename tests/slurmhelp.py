"""A throwaway single-node SLURM cluster: munged, slurmctld and slurmd on loopback, all state in a temp dir.

The daemons are Debian's (`slurm-wlm`, `munge`; `make test` installs them) and run as root, the
way CI runs the suite. The clients (sbatch, squeue, scancel; submitit calls them) find the cluster
through `SLURM_CONF`, which the fixture sets for the session.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import free_port, stop_group

SBIN = Path("/usr/sbin")


def _memory_mb() -> int:
    """What slurmd will find (less a margin): a node configured with more is drained as unhealthy."""
    with open("/proc/meminfo") as fh:
        total_kb = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
    return total_kb // 1024 * 9 // 10


def _conf(root: Path, host: str, cpus: int) -> str:
    # linuxproc/none plugins: no cgroups needed, so it runs in a container. KillWait=2: scancel's
    # SIGTERM is followed by SIGKILL after 2 s (submitit ignores SIGTERM and would otherwise run on for 30 s).
    return "\n".join([
        "ClusterName=test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge.socket'}",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "KillWait=2",
        "ReturnToService=2",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else f"({path.name} missing)"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """Starts the cluster, waits until its node is idle, yields the slurm.conf path; stops it at the end."""
    if os.geteuid() != 0:
        pytest.fail("the SLURM tests start slurmctld and slurmd, which need root (CI runs the suite as root)")
    for daemon in ("munged", "slurmctld", "slurmd"):
        if not (SBIN / daemon).is_file():
            pytest.fail(f"{SBIN / daemon} not found: run `make test` (it installs Debian's slurm-wlm and munge)")
    root = Path(tempfile.mkdtemp(prefix="slurmtest-"))
    root.chmod(0o755)
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    # munged refuses to run as root and insists on a private key owned by its user.
    munge = root / "munge"
    munge.mkdir(mode=0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    for path in (munge, key):
        shutil.chown(path, "munge", "munge")
    shutil.chown(root, "munge")
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, host, os.cpu_count() or 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []
    old_conf = os.environ.get("SLURM_CONF")
    try:
        subprocess.run(["runuser", "-u", "munge", "--", str(SBIN / "munged"), f"--key-file={key}",
                        f"--socket={root / 'munge.socket'}", f"--pid-file={munge / 'munged.pid'}",
                        f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"],
                       check=True, capture_output=True)
        for daemon in ("slurmctld", "slurmd"):
            procs.append(subprocess.Popen([str(SBIN / daemon), "-D"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            state = out.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.3)
        if state != "idle":
            pytest.fail(f"SLURM node not idle (sinfo says {state!r}).\nslurmctld.log:\n{_tail(root / 'slurmctld.log')}"
                        f"\nslurmd.log:\n{_tail(root / 'slurmd.log')}")
        os.environ["SLURM_CONF"] = str(conf)
        yield conf
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
        for p in reversed(procs):
            stop_group(p)
        pid_file = munge / "munged.pid"
        if pid_file.is_file():
            subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
