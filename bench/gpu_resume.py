"""Resume on a device: is a run stopped after experience 2 and resumed identical, byte for byte,
to an uninterrupted run (accuracy.csv, buffer_histogram.csv)? With and without
`deterministic=true`; one line of JSON per case.

    python bench/gpu_resume.py OUT_DIR [overrides...]      # e.g. device=cuda model=cnn
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from hydra import compose, initialize_config_module

    import replaycli.run.loop as loop
    from replaycli.run import checkpoint
    from replaycli.run.runner import execute

    out, overrides = Path(argv[0]), argv[1:]
    real = loop.run_experience
    for deterministic in ("false", "true"):
        args = ["epochs=2", "progress=none", f"deterministic={deterministic}", *overrides]
        with initialize_config_module("replaycli.configs", version_base="1.3"):
            cfg = compose("config", overrides=args)
        whole, cut = out / f"whole-{deterministic}", out / f"resumed-{deterministic}"
        execute(cfg, whole)
        calls = []

        def stop_at_the_third(run, exp, on_step, calls=calls):
            calls.append(exp.current_experience)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(run, exp, on_step)

        loop.run_experience = stop_at_the_third
        try:
            execute(cfg, cut)
        except KeyboardInterrupt:
            pass
        finally:
            loop.run_experience = real
        execute(cfg, cut, resume=checkpoint.load(cut))
        same = {n: (whole / n).read_bytes() == (cut / n).read_bytes() for n in ("accuracy.csv", "buffer_histogram.csv")}
        print(json.dumps({"overrides": args, "identical": same}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
