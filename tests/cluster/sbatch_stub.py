"""A stand-in for ``sbatch`` that runs each job on this machine before returning.

It honours what latentbids' scripts rely on: ``--parsable``, ``--array=1-N[%M]``, ``--output`` with
``%x %j %A %a``, ``--dependency=afterok:ID`` (a job whose dependency did not succeed is never run, as
``--kill-on-invalid-dep=yes`` makes SLURM do), ``#SBATCH --cpus-per-task/--mem/--job-name`` lines,
and the SLURM_* variables a job sees.  ``$SBATCH_STUB_STATE`` (a JSON file) records every job.
``$SBATCH_STUB_MAX_CPUS`` caps ``--cpus-per-task`` to what this machine has; array tasks run
``$SBATCH_STUB_PARALLEL`` (default 2) at a time, within the array's ``%M`` limit.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def _mb(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]?)", text.upper()).groups()
    return int(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[unit]


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["SBATCH_STUB_STATE"])
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"jobs": []}
    opts: dict[str, str] = {}
    args = list(argv)
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if "=" in flag:
            key, value = flag.split("=", 1)
        elif flag in ("--parsable",):
            key, value = flag, "1"
        else:
            key, value = flag, args.pop(0)
        opts[key.lstrip("-")] = value
    script = Path(args[0])
    for line in script.read_text().splitlines():  # #SBATCH lines; the command line wins
        match = re.match(r"#SBATCH\s+--([a-z-]+)=(\S+)", line)
        if match:
            opts.setdefault(match.group(1), match.group(2))
    job_id = 1000 + len(state["jobs"])
    name = opts.get("job-name", script.stem)
    record = {"id": job_id, "name": name, "script": str(script), "options": opts, "tasks": {}, "state": "PENDING"}
    state["jobs"].append(record)
    dependency = opts.get("dependency", "")
    if dependency:
        kind, *ids = dependency.split(":")
        assert kind == "afterok", f"stub knows afterok only, not {kind}"
        done = {str(j["id"]): j["state"] for j in state["jobs"]}
        if any(done.get(i) != "COMPLETED" for i in ids):
            record["state"] = "CANCELLED (DependencyNeverSatisfied)"
            state_path.write_text(json.dumps(state, indent=1))
            print(job_id if "parsable" in opts else f"Submitted batch job {job_id}")
            return 0
    cpus = min(int(opts.get("cpus-per-task", 1)), int(os.environ.get("SBATCH_STUB_MAX_CPUS", os.cpu_count() or 1)))
    tasks = [None]
    if "array" in opts:
        first, last = (int(x) for x in opts["array"].split("%")[0].split("-"))
        tasks = list(range(first, last + 1))
    limit = int(opts.get("array", "%1").split("%")[1]) if "%" in opts.get("array", "") else len(tasks)
    parallel = max(1, min(limit, int(os.environ.get("SBATCH_STUB_PARALLEL", 2))))
    running: list[tuple[object, subprocess.Popen, object, Path]] = []

    def reap(block_until: int) -> None:
        while len(running) > block_until:
            task, proc, fh, log = running.pop(0)
            record["tasks"][str(task)] = {"exit": proc.wait(), "log": str(log)}
            fh.close()

    for task in tasks:  # array tasks run side by side, as on a cluster (same output, work and index dirs)
        env = dict(os.environ, SLURM_JOB_ID=str(job_id), SLURM_JOB_NAME=name, SLURM_CPUS_PER_TASK=str(cpus))
        if "mem" in opts:
            env["SLURM_MEM_PER_NODE"] = str(_mb(opts["mem"]))
        pattern = opts.get("output", f"slurm-{job_id}.out").replace("%x", name).replace("%j", str(job_id))
        if task is not None:
            env.update(SLURM_ARRAY_JOB_ID=str(job_id), SLURM_ARRAY_TASK_ID=str(task))
            pattern = pattern.replace("%A", str(job_id)).replace("%a", str(task))
        log = Path(pattern)
        log.parent.mkdir(parents=True, exist_ok=True)
        reap(parallel - 1)
        fh = log.open("w")
        running.append((task, subprocess.Popen(["bash", str(script)], env=env, stdout=fh, stderr=subprocess.STDOUT),
                        fh, log))
    reap(0)
    record["state"] = "COMPLETED" if all(t["exit"] == 0 for t in record["tasks"].values()) else "FAILED"
    state_path.write_text(json.dumps(state, indent=1))
    print(job_id if "parsable" in opts else f"Submitted batch job {job_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
