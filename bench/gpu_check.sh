#!/usr/bin/env bash
# The CUDA check of replaycli: one prepared script for one GPU machine without network, under
# 8 minutes. See bench/RESULTS.md ("CUDA: the prepared check").
#
#   bench/gpu_check.sh --prepare .whl              # here (PyPI reachable): the wheels the GPU machine lacks
#   bench/gpu_check.sh --dry-run --wheels .whl     # anywhere: check the arguments and the wheel folder
#   bench/gpu_check.sh --wheels .whl --out "$OUT"  # on the GPU machine: install, test, run, time
#   bench/gpu_check.sh --wheels .whl --out /tmp/o --device cpu --quick   # a rehearsal on a CPU
#
# On the machine it installs the wheels (Hydra, omegaconf, antlr4, the joblib launcher) and
# replaycli from this tree into a private folder, then: the device-sensitive tests with
# REPLAY_TEST_DEVICE=cuda; one `replay run` per method on split_digits and on a synthetic
# CIFAR-sized stream with model=resnet18; resume byte-identity on CUDA, with and without
# deterministic=true; bench_speed.py --device cuda against the floor; bench_dataloader.py against
# a per-sample torchvision pipeline; bench_batched.py: 1, 4 and 16 seeds as one batched model
# against Hydra's basic sweep and separate processes (issue 23). It leaves three files in --out: summary.md (the tables),
# gpu_check.log (everything printed) and results.tar.gz (every raw file).
set -uo pipefail
cd "$(dirname "$0")/.."

NEEDED=(hydra_core omegaconf antlr4_python3_runtime hydra_joblib_launcher)  # what the GPU image lacks
usage="usage: bench/gpu_check.sh --prepare DIR | --dry-run --wheels DIR [--out DIR] | --wheels DIR --out DIR"
die() { echo "error: $*" >&2; exit 2; }

mode=run wheels="" out="" device=cuda quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prepare) mode=prepare; wheels="${2:-}"; shift 2 || die "--prepare needs a folder; $usage" ;;
        --dry-run) mode=dry; shift ;;
        --wheels) wheels="${2:-}"; shift 2 || die "--wheels needs a folder; $usage" ;;
        --out) out="${2:-}"; shift 2 || die "--out needs a folder; $usage" ;;
        --device) device="${2:-}"; shift 2 || die "--device needs cuda or cpu"
                  case "$device" in cuda|cpu) ;; *) die "--device $device is not allowed; allowed: cuda, cpu" ;; esac ;;
        --quick) quick=1; shift ;;  # a rehearsal: tiny CIFAR stream, one repetition
        *) die "unknown argument '$1'; $usage" ;;
    esac
done
[ -n "$wheels" ] || die "no wheel folder given; $usage"

if [ "$mode" = prepare ]; then  # pure-Python wheels for the GPU machine's Python 3.12
    mkdir -p "$wheels" || die "--prepare $wheels cannot be created"
    pins=$(python3 -c "from importlib.metadata import version as v
print(' '.join(f'{n}=={v(n)}' for n in ('hydra-core', 'omegaconf', 'hydra-joblib-launcher', 'antlr4-python3-runtime')))") \
        || die "--prepare needs hydra-core, omegaconf, hydra-joblib-launcher installed here (pip install -e '.[test]')"
    read -r hydra omegaconf launcher antlr <<< "$pins"  # the versions the tests pass with here
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform any -d "$wheels" "$hydra" "$omegaconf" "$launcher" || die "pip download failed"
    python3 -m pip wheel -q --no-deps -w "$wheels" "$antlr" || die "pip wheel $antlr failed"  # an sdist on PyPI
fi

check_wheels() {  # exactly one wheel of each needed package, each a zip
    [ -d "$wheels" ] || die "--wheels $wheels is not a folder; allowed: a folder made by --prepare"
    for name in "${NEEDED[@]}"; do
        found=("$wheels"/"$name"-*.whl)
        [ -e "${found[0]}" ] || die "--wheels $wheels has no $name wheel; allowed: a folder made by bench/gpu_check.sh --prepare"
        [ "${#found[@]}" -eq 1 ] || die "--wheels $wheels has ${#found[@]} $name wheels (${found[*]##*/}); keep one"
        python3 -c "import sys, zipfile; sys.exit(not zipfile.is_zipfile(sys.argv[1]))" "${found[0]}" \
            || die "${found[0]} is not a wheel (not a zip file)"
    done
}
check_wheels
if [ -n "$out" ]; then
    mkdir -p "$out" 2>/dev/null && [ -w "$out" ] || die "--out $out is not a writable folder"
fi
if [ "$mode" != run ]; then
    echo "ok: wheels in $wheels: $(cd "$wheels" && ls ./*.whl | tr '\n' ' ')"
    echo "plan: install; tests (REPLAY_TEST_DEVICE=cuda); replay run x methods x {split_digits, synthetic CIFAR + resnet18};"
    echo "      resume byte-identity (deterministic false/true); bench_speed --device cuda; bench_dataloader --device cuda;"
    echo "      bench_batched --device cuda (seeds as one batched model)"
    exit 0
fi
[ -n "$out" ] || die "no --out folder given; $usage"

work=$(mktemp -d)
log="$out/gpu_check.log"
summary="$out/summary.md"
exec > >(tee -a "$log") 2>&1
step() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }
run_for() { local s=$1; shift; timeout "$s" "$@"; echo "exit $? ($*)"; }

step "install"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "$wheels"/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$work/site" . || exit 1
export PYTHONPATH="$work/site" PYTHONUNBUFFERED=1 PATH="$work/site/bin:$PATH"
REPLAY=(python3 -m replaycli.cli)
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')")
{
    echo "# replaycli CUDA check, $(date -u +%Y-%m-%d), $gpu"
    echo
    echo "torch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)'), $(nproc --all) CPU cores"
} > "$summary"
nvidia-smi || true

step "device-sensitive tests on $device"
REPLAY_TEST_DEVICE=$device run_for 240 python3 -m pytest -q -p no:cacheprovider -x --junitxml="$work/tests-cuda.xml" \
    tests/test_methods.py tests/test_resume.py tests/test_metrics.py tests/test_configs.py tests/test_extending.py \
    tests/test_run.py 2>&1 | tail -30 | tee "$work/tests-cuda.txt"
{ echo; echo "## Tests with REPLAY_TEST_DEVICE=cuda"; echo; echo '```'; tail -15 "$work/tests-cuda.txt"; echo '```'; } >> "$summary"

step "one replay run per method"
python3 -c "import sys; sys.path.insert(0, 'bench'); import datafiles, pathlib; \
datafiles.write_cifar10_root(pathlib.Path('$work/cifar'), per_batch=$((quick ? 100 : 2000)), n_test=$((quick ? 100 : 1000)))"
reps=$((quick ? 1 : 3))
methods=("strategy=replay" "strategy=weighted strategy.schedule=linear" "strategy=der" "strategy=derpp"
         "strategy=gdumb" "strategy=der buffer_update=every_batch buffer=reservoir"
         "strategy=replay buffer_update=every_batch buffer=reservoir"
         "strategy=er_ace buffer_update=every_batch buffer=reservoir" "strategy=agem optimizer=sgd optimizer.momentum=0.0"
         "strategy=joint buffer=reservoir buffer.max_size=100000" "strategy=mir buffer_update=every_batch buffer=reservoir"
         "strategy=icarl" "strategy=bic" "strategy=xder" "strategy=rar buffer_update=every_batch buffer=reservoir"
         "buffer=gss buffer_update=every_batch")
streams=("benchmark=split_digits" "benchmark=split_cifar10 model=resnet18 optimizer=sgd optimizer.lr=0.05 data_root=$work/cifar download=false")
i=0
for stream in "${streams[@]}"; do
    for method in "${methods[@]}"; do
        # shellcheck disable=SC2086
        run_for 120 "${REPLAY[@]}" run $stream $method device=$device epochs=1 progress=none "hydra.run.dir=$work/runs/$i" \
            | tail -2
        echo "$i $stream | $method" >> "$work/runs.txt"
        i=$((i + 1))
    done
done
python3 - "$work" "device=$device" >> "$summary" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
print(f"\n## One run per method (epochs=1, {sys.argv[2]})\n\n| stream | method | status | final accuracy | seconds |\n|---|---|---|---:|---:|")
for line in (work / "runs.txt").read_text().splitlines():
    i, rest = line.split(" ", 1)
    stream, method = rest.split(" | ")
    s = work / "runs" / i / "summary.json"
    d = json.loads(s.read_text()) if s.is_file() else {}
    fa = d.get("final_accuracy")
    print(f"| {stream.split()[0]} | {method} | {d.get('status', 'no summary')} | {'' if fa is None else f'{fa:.3f}'} | {d.get('seconds', 0):.1f} |")
EOF

step "resume byte-identity on $device"
mkdir -p "$work/resume"
for extra in "strategy=derpp" "strategy=der buffer_update=every_batch buffer=reservoir" "model=cnn selection=herding groupby=class"; do
    # shellcheck disable=SC2086
    run_for 120 python3 bench/gpu_resume.py "$work/resume/$(echo "$extra" | tr ' =' '_-')" device=$device $extra \
        | grep '^{' | tee -a "$work/resume.jsonl"
done
{ echo; echo "## Resume after experience 2 vs an uninterrupted run (device=$device)"; echo; echo '```';
  cat "$work/resume.jsonl"; echo '```'; } >> "$summary"

step "bench_speed --device $device"
run_for 200 python3 bench/bench_speed.py --device "$device" --clock wall --parts tutorial,buffer,cifar --reps "$reps" \
    --workdir "$work/speed" --out "$work/speed.md"
{ echo; echo "## bench_speed.py --device $device --clock wall --parts tutorial,buffer,cifar --reps $reps"; echo;
  cat "$work/speed.md" 2>/dev/null || echo "(no tables: see gpu_check.log)"; } >> "$summary"

step "bench_dataloader --device $device"
run_for 120 python3 bench/bench_dataloader.py --device "$device" --reps "$reps" --steps $((quick ? 30 : 200)) --out "$work/dataloader.md"
{ echo; echo "## bench_dataloader.py --device $device"; echo; cat "$work/dataloader.md" 2>/dev/null || echo "(none)"; } >> "$summary"

step "seeds as one batched model (bench_batched.py --device $device)"
run_for 300 python3 bench/bench_batched.py --device "$device" --clock wall --sizes "$((quick ? 2 : 1)),$((quick ? 2 : 4)),$((quick ? 2 : 16))" \
    --methods er,der --separate-max 4 | tee "$work/batched.md"
{ echo; echo "## bench_batched.py --device $device --clock wall (wall s per seed, start-up included)"; echo;
  grep -v '^data:' "$work/batched.md" 2>/dev/null || echo "(none)"; } >> "$summary"

step "pack"
tar -czf "$out/results.tar.gz" -C "$work" --exclude=site --exclude=cifar --exclude='*-ubyte' --exclude='*.pt' --exclude='*batch*' . 2>/dev/null
ls -la "$out"
