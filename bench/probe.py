"""Run `replay` in this process and record what the bench needs but a run does not write.

    python bench/probe.py OUT.json run [overrides]      # exactly `replay run [overrides]`

Recorded in OUT.json: the wall-clock time at which the first training step ended and the CPU
time used until then (the start-up measures), the resident memory after each experience, and
the peak. The hooks wrap two methods of the progress reporter, which the loop calls after every
step and experience; nothing else changes.

REPLAY_BENCH_CLOCK=cpu: `time.perf_counter` is the process CPU clock, so the loop's phase timings
(train_seconds, buffer_seconds, eval_seconds in metrics.jsonl) measure the work, not the wait for
a free core on a shared machine. REPLAY_BENCH_PROFILE=FILE: cProfile the run
from its first step on (the loop, not the imports) into FILE.
"""

from __future__ import annotations

import json
import os
import sys
import time


def rss_mb() -> float:
    """Resident memory now (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory of this process image, from /proc (VmHWM). Not getrusage: its
    ru_maxrss carries the parent's peak over fork and exec."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from replaycli import cli
    from replaycli.run import progress

    rec: dict = {"first_step_time": None, "experiences": []}
    step, done = progress.Reporter.step, progress.Reporter.experience_done
    profile_to = os.environ.get("REPLAY_BENCH_PROFILE")
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()

    def probe_step(self, *args, **kwargs):
        if rec["first_step_time"] is None:
            rec["first_step_time"], rec["first_step_cpu"] = time.time(), time.process_time()
            if profiler is not None:  # the loop only, from the end of its first step: not imports
                profiler.enable()
        return step(self, *args, **kwargs)

    def probe_done(self, record, *args, **kwargs):
        rec["experiences"].append({"time": time.time(), "rss_mb": rss_mb()})
        return done(self, record, *args, **kwargs)

    progress.Reporter.step, progress.Reporter.experience_done = probe_step, probe_done
    if os.environ.get("REPLAY_BENCH_CLOCK") == "cpu":  # every `time.perf_counter()` in the loop's modules
        time.perf_counter = time.process_time
    code = 0
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        rec["peak_rss_mb"] = peak_rss_mb()
        with open(out, "w") as f:
            json.dump(rec, f)
    return code


if __name__ == "__main__":
    sys.exit(main())
