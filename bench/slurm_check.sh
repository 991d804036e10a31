#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, and a sweep through hydra/launcher=submitit_slurm that
# is interrupted the ways a shared partition interrupts it (issue 24):
#
#   bench/slurm_check.sh [--out DIR]      # as root; installs slurm-wlm and munge when missing
#   bench/slurm_check.sh --time-limit     # only: one run longer than its 1-minute time limit
#
# It writes a minimal slurm.conf (proctrack/linuxproc, task/none, select/cons_tres, this machine's
# cores and memory) into a folder of its own, starts munged, slurmctld and slurmd, and then:
# 1. runs a 4-job sweep (split_digits, 5 experiences, a few seconds each);
# 2. requeues job 1 with `scontrol requeue` once its first experience is checkpointed, and cancels
#    job 2 with `scancel` once it runs: the requeued job resumes itself, the cancelled one is missing;
# 3. re-issues the same sweep: job 2 runs, the complete jobs are not trained again;
# 4. re-issues it once more: one line, nothing trained;
# 5. submits the same sweep packed into one allocation (`sbatch --requeue --wrap "replay run -m
#    hydra/launcher=batched ..."`) and requeues it once a job is complete: the requeued allocation
#    issues the sweep again, which goes on where it stopped;
# 6. checks every job's accuracy.csv and buffer_histogram.csv against plain runs, byte for byte.
# Then it stops the daemons it started (by PID). Exit 0 when every check holds.
set -uo pipefail
cd "$(dirname "$0")/.."
out="" limit=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="${2:-}"; shift 2 || { echo "error: --out needs a folder" >&2; exit 2; } ;;
        --time-limit) limit=1; shift ;;
        *) echo "error: unknown argument '$1'; usage: bench/slurm_check.sh [--out DIR] [--time-limit]" >&2; exit 2 ;;
    esac
done
# exit 3: skipped (not root, slurm-wlm cannot be installed, or the cluster does not start here);
# 1: a check of replaycli failed; 0: every check holds
[ "$(id -u)" = 0 ] || { echo "skipped: run as root (the cluster's daemons run as root here)" >&2; exit 3; }
work=$(mktemp -d /tmp/slurm_check.XXXXXX)
out=${out:-$work/out}
mkdir -p "$out"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
fail=0
check() { if eval "$2"; then log "ok: $1"; else log "FAILED: $1"; fail=1; fi; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
        || { echo "skipped: apt-get could not install slurm-wlm munge" >&2; exit 3; }
fi

host=$(hostname -s)
cpus=$(nproc)
mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024))
conf=$work/etc
mkdir -p "$conf" "$work/spool/ctld" "$work/spool/d" "$work/run"
cat > "$conf/slurm.conf" <<EOF
ClusterName=check
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=$work/spool/ctld
SlurmdSpoolDir=$work/spool/d
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ReturnToService=2
KillWait=1
JobRequeue=1
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf/slurm.conf

pids=()
stop_all() {  # the jobs, then the daemons this script started, then anything their jobs left
    scancel --full --signal=KILL --user=root >/dev/null 2>&1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    sleep 1
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    pkill -9 -f "slurmstepd" 2>/dev/null
    pkill -9 -f "submitit.core._submit $work" 2>/dev/null
}
trap stop_all EXIT

log "starting munged, slurmctld, slurmd"
mkdir -p /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null
chmod 400 /etc/munge/munge.key
munged --foreground --force >"$work/munged.log" 2>&1 &
pids+=($!)
sleep 1
slurmctld -D -f "$conf/slurm.conf" >"$work/slurmctld.out" 2>&1 &
pids+=($!)
sleep 2
slurmd -D -f "$conf/slurm.conf" >"$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 30); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o "%P %T %c" | tee "$out/sinfo.txt"
if ! sinfo -h -o %T | grep -q idle; then  # the machine, not replaycli: its name unresolved, a daemon refused
    tail -20 "$work/slurmctld.log" "$work/slurmd.log" 2>/dev/null
    echo "skipped: the one-node cluster did not start here (the node never became idle; logs above)" >&2
    exit 3
fi

REPLAY=(python3 -m replaycli.cli)
if [ "$limit" = 1 ]; then  # a run of ~80 s under a 1-minute limit, signalled 30 s before it
    log "time limit: one run longer than its allocation"
    run=(epochs=1600 device=cpu progress=none buffer.max_size=30 seed=0)
    "${REPLAY[@]}" run -m hydra/launcher=submitit_slurm hydra.launcher.partition=debug hydra.launcher.timeout_min=1 \
        hydra.launcher.signal_delay_s=30 hydra.launcher.max_num_timeout=6 "${run[@]}" "hydra.sweep.dir=$work/limit" \
        >"$out/limit.out" 2>"$out/limit.err" &
    sweep_pid=$!
    while kill -0 "$sweep_pid" 2>/dev/null; do  # Slurm holds a requeued job ~2 min: let it start now
        for id in $(squeue -h -t PD -o %i 2>/dev/null); do scontrol update JobId="$id" StartTime=now >/dev/null 2>&1; done
        sleep 2
    done
    wait "$sweep_pid"
    log "sweep exit $?"
    grep -h "resuming" "$work/limit/0/run.log" | tee "$out/limit-resumes.txt"
    check "the run went on across allocations" 'grep -q resuming "$work/limit/0/run.log"'
    check "and finished" 'grep -qs "\"status\": \"complete\"" "$work/limit/0/summary.json"'
    "${REPLAY[@]}" run "${run[@]}" "hydra.run.dir=$work/plain" >/dev/null
    for t in accuracy.csv buffer_histogram.csv; do
        check "its $t equals a plain run's" 'cmp -s "$work/limit/0/$t" "$work/plain/$t"'
    done
    log "done: $([ $fail = 0 ] && echo 'every check holds' || echo 'a check FAILED')"
    exit $fail
fi
args=(epochs=250 device=cpu progress=none "buffer.max_size=30" "seed=0,1,2,3")  # some 1.5 s per experience
sweep=$work/sweep
launch=(hydra/launcher=submitit_slurm hydra.launcher.partition=debug hydra.launcher.cpus_per_task=1
        hydra.launcher.mem_gb=2 hydra.launcher.timeout_min=10 "hydra.sweep.dir=$sweep")

complete() { grep -qs '"status": "complete"' "$sweep/$1/summary.json"; }
task() { squeue -h -o "%i %K %T" 2>/dev/null | awk -v k="$1" -v st="$2" '$2 == k && $3 == st {print $1}' | head -1; }

log "1. the sweep, with job 1 requeued mid-run and job 2 cancelled"
"${REPLAY[@]}" run -m "${launch[@]}" "${args[@]}" >"$out/first.out" 2>"$out/first.err" &
sweep_pid=$!
requeued="" cancelled="" lost=""
for _ in $(seq 600); do
    if [ -z "$requeued" ] && [ -f "$sweep/1/checkpoint.pt" ] && ! complete 1; then
        id=$(task 1 RUNNING)
        if [ -n "$id" ]; then
            done_before=$(($(wc -l < "$sweep/1/accuracy.csv") - 1))
            scontrol requeue "$id" && requeued=$id
            scontrol update JobId="$id" StartTime=now >/dev/null 2>&1  # Slurm holds a requeued job ~2 min first
            log "requeued job 1 ($id) during experience $((done_before + 1)), after $done_before checkpointed"
        fi
    fi
    if [ -z "$cancelled" ]; then
        id=$(task 2 RUNNING)
        if [ -n "$id" ]; then scancel "$id" && cancelled=$id && log "cancelled job 2 ($id) while it ran"; fi
    fi
    [ -n "$requeued" ] && scontrol update JobId="$requeued" StartTime=now >/dev/null 2>&1
    if complete 0 && complete 1 && complete 3; then break; fi
    kill -0 "$sweep_pid" 2>/dev/null || break
    sleep 0.5
done
sleep 5
if kill -0 "$sweep_pid" 2>/dev/null; then  # without accounting submitit cannot learn that job 2 was cancelled
    log "the launcher still waits for the cancelled job: stopped (as a user whose session ends)"
    kill -INT "$sweep_pid"; sleep 5; kill -9 "$sweep_pid" 2>/dev/null
fi
wait "$sweep_pid"
log "first sweep exit $? (requeued: ${requeued:-none}, cancelled: ${cancelled:-none})"
check "job 1 was requeued" '[ -n "$requeued" ]'
check "job 1 resumed after its requeue, not from the start" 'grep -q "resuming .* after experience" "$sweep/1/run.log"'
check "job 2 was cancelled before it finished" '[ -n "$cancelled" ] && ! complete 2'
grep -h "resuming" "$sweep"/1/run.log | tee "$out/job1.log"

log "2. the same sweep, re-issued"
"${REPLAY[@]}" run -m "${launch[@]}" "${args[@]}" >"$out/second.out" 2>"$out/second.err"
log "second sweep exit $?"
check "the re-issue says what is complete" 'grep -q "the sweep goes on: 3 of 4 jobs complete already" "$out/second.out"'
check "no accounting warnings on the terminal" '! grep -q "Bypassing sacct" "$out/second.out" "$out/second.err"'
check "a line per job on the terminal, as the local launchers say" '[ "$(grep -c "^\[job [0-3]/4\]" "$out/second.out")" = 4 ]'

log "3. re-issued once more"
"${REPLAY[@]}" run -m "${launch[@]}" "${args[@]}" >"$out/third.out" 2>"$out/third.err"
check "nothing left: one line" '[ "$(wc -l < "$out/third.out")" = 1 ] && grep -q "is complete; nothing to run" "$out/third.out"'

log "4. a whole sweep packed in one allocation (sbatch of a batched sweep), requeued midway"
packed=$work/packed
sbatch --requeue -o "$work/packed.%j.out" --wrap "cd $PWD && ${REPLAY[*]} run -m hydra/launcher=batched ${args[*]} hydra.sweep.dir=$packed" \
    > "$out/packed.sbatch" 2>&1
pid=$(awk '{print $NF}' "$out/packed.sbatch")
log "submitted the packed sweep as job $pid"
requeued_packed="" requeued_at=0
for _ in $(seq 600); do
    if [ -z "$requeued_packed" ] && grep -qs '"status": "complete"' "$packed/1/summary.json"; then
        scontrol requeue "$pid" && requeued_packed=1 requeued_at=$(date +%s) && log "requeued the packed sweep once job 1 was complete"
    fi
    # Slurm holds a requeued job ~2 min: start it now, but only once its first instance is gone (pending) and a
    # few seconds on, or slurmctld kills the new one ("Job credential revoked", seen twice in 20 runs)
    if [ -n "$requeued_packed" ] && [ $(($(date +%s) - requeued_at)) -ge 5 ] \
        && [ "$(squeue -h -j "$pid" -o %T 2>/dev/null)" = PENDING ]; then
        scontrol update JobId="$pid" StartTime=now >/dev/null 2>&1
    fi
    all=1
    for s in 0 1 2 3; do grep -qs '"status": "complete"' "$packed/$s/summary.json" || all=0; done
    [ -n "$requeued_packed" ] && [ "$all" = 1 ] && break
    sleep 0.5
done
for _ in $(seq 60); do  # the allocation's own end, after its last job
    [ -z "$(squeue -h -j "$pid" -o %T 2>/dev/null)" ] && break
    sleep 0.5
done
check "the packed sweep was requeued" '[ -n "$requeued_packed" ]'
check "its second allocation went on where the first stopped" 'grep -qs "the sweep goes on: [1-3] of 4 jobs complete already" "$work"/packed.*.out'
for s in 0 1 2 3; do
    check "packed job $s complete" 'grep -qs "\"status\": \"complete\"" "$packed/$s/summary.json"'
done

log "5. plain runs, and the tables byte for byte"
for s in 0 1 2 3; do
    "${REPLAY[@]}" run epochs=250 device=cpu progress=none buffer.max_size=30 "seed=$s" "hydra.run.dir=$work/plain/$s" >/dev/null
    for t in accuracy.csv buffer_histogram.csv; do
        check "job $s $t equals a plain run's" 'cmp -s "$sweep/$s/$t" "$work/plain/$s/$t"'
        check "packed job $s $t equals a plain run's" 'cmp -s "$packed/$s/$t" "$work/plain/$s/$t"'
    done
done
cp "$sweep/summary.csv" "$out/" 2>/dev/null
log "done: $([ $fail = 0 ] && echo 'every check holds' || echo 'a check FAILED'); files in $out"
exit $fail
