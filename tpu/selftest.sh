#!/usr/bin/env bash
# tpu/selftest.sh: check the launch scripts on this machine (no gcloud, no TPU, no GPU).
#
# Usage: tpu/selftest.sh [--full]
#
# Always (a few seconds): bash -n and shellcheck (if installed) on every
# script; the gcloud commands each script prints under --dry-run; argument
# errors (exit code 2, a message naming the argument) before anything runs.
# --full (a few CPU minutes) also trains configs/tiny_cpu.py for real:
#   - worker.sh start / logs / stop (SIGTERM: checkpoint, status "preempted")
#     and a relaunch that resumes, with the repo's .venv as the worker's venv;
#   - gpu_local.sh --cpu 2 --per-gpu: two processes joined over gloo.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
FULL=0
case "${1:-}" in
  --full) FULL=1 ;;
  "") ;;
  -h|--help) sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  *) echo "selftest.sh: unknown argument '$1'" >&2; exit 2 ;;
esac
unset BSJAX_TPU_NAME BSJAX_TPU_ZONE BSJAX_TPU_PROJECT BSJAX_TPU_TYPE BSJAX_TPU_VERSION BSJAX_TPU_BUCKET
FAILS=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

# expect_out "DESCRIPTION" "SUBSTRING" CMD...: CMD exits 0 and prints SUBSTRING.
expect_out() {
  local what="$1" want="$2" out
  shift 2
  if out="$("$@" 2>&1)" && [[ "$out" == *"$want"* ]]; then pass "$what"; else fail "$what: got: $out"; fi
}
# expect_err "DESCRIPTION" "SUBSTRING" CMD...: CMD exits 2 and says SUBSTRING.
expect_err() {
  local what="$1" want="$2" out rc=0
  shift 2
  out="$("$@" 2>&1)" || rc=$?
  if [[ "$rc" == 2 && "$out" == *"$want"* ]]; then pass "$what"; else fail "$what: rc=$rc: $out"; fi
}

cd "$ROOT"
for f in tpu/*.sh; do
  if bash -n "$f"; then pass "bash -n $f"; else fail "bash -n $f"; fi
done
if command -v shellcheck >/dev/null 2>&1; then
  if shellcheck -x tpu/*.sh; then pass "shellcheck"; else fail "shellcheck"; fi
else
  echo "skip shellcheck (not installed)"
fi

Z=(--name bs-test --zone us-central2-b)
expect_out "create: plain TPU VM, runtime from the type" \
  "+ gcloud compute tpus tpu-vm create bs-test --zone=us-central2-b --accelerator-type=v4-32 --version=tpu-ubuntu2204-base" \
  tpu/create.sh "${Z[@]}" --type v4-32 --dry-run
expect_out "create: queued spot resource with its own node id" \
  "+ gcloud compute tpus queued-resources create bs-test --node-id=bs-test --zone=us-central2-b --project=p1 --accelerator-type=v5litepod-16 --runtime-version=v2-alpha-tpuv5-lite --spot" \
  tpu/create.sh "${Z[@]}" --project p1 --type v5litepod-16 --queued --spot --dry-run
expect_out "create: best-effort goes through gcloud alpha" \
  "+ gcloud alpha compute tpus queued-resources create bs-test" \
  tpu/create.sh "${Z[@]}" --type v6e-8 --queued --best-effort --dry-run
expect_out "create: waits on the queued resource's state" \
  "until the state is ACTIVE" tpu/create.sh "${Z[@]}" --type v6e-8 --queued --dry-run
expect_out "setup: copies archive and worker script to all workers" \
  "bsjax-worker.sh bs-test: --zone=us-central2-b --worker=all" tpu/setup.sh "${Z[@]}" --dry-run
expect_out "setup: installs on all workers at HEAD" \
  "install\\ --archive\\ \\\"\\\$HOME/bsjax-src.tar.gz\\\"\\ --commit\\ $(git rev-parse HEAD)" \
  tpu/setup.sh "${Z[@]}" --dry-run
expect_out "launch: bsjax train on all workers, overrides passed through" \
  "--worker=all --command=bash\\ \\\"\\\$HOME/bsjax-worker.sh\\\"\\ start\\ --run\\ t1" \
  tpu/launch.sh "${Z[@]}" --dry-run configs/tiny_cpu.py /mnt/gcs/b/t1 --config.mesh.fsdp=2
expect_out "launch: the override reaches the worker command" \
  "--workdir=/mnt/gcs/b/t1\\ --config.mesh.fsdp=2" \
  tpu/launch.sh "${Z[@]}" --dry-run configs/tiny_cpu.py /mnt/gcs/b/t1 --config.mesh.fsdp=2
expect_out "launch --sweep" "start\\ --run\\ s\\ --settle\\ 20\\ --sweep" \
  tpu/launch.sh "${Z[@]}" --dry-run --sweep configs/tiny_cpu.py /mnt/gcs/b/s
expect_out "stop: SIGTERM on all workers" "--worker=all --command=bash\\ \\\"\\\$HOME/bsjax-worker.sh\\\"\\ stop\\ --wait\\ 600" \
  tpu/stop.sh "${Z[@]}" --dry-run
expect_out "logs: worker 0 by default" "--worker=0 --command=bash\\ \\\"\\\$HOME/bsjax-worker.sh\\\"\\ logs" \
  tpu/logs.sh "${Z[@]}" --dry-run
expect_out "delete: queued resource with --force" \
  "+ gcloud compute tpus queued-resources delete bs-test --zone=us-central2-b --force --quiet" \
  tpu/delete.sh "${Z[@]}" --queued --yes --dry-run
expect_out "gpu_local --per-gpu: one process per device with the coordinator env" \
  "BSJAX_COORDINATOR=127.0.0.1:23456 BSJAX_NUM_PROCESSES=2 BSJAX_PROCESS_ID=1" \
  tpu/gpu_local.sh --cpu 2 --per-gpu --port 23456 --dry-run configs/tiny_cpu.py /tmp/x
expect_out "gpu_local default: one process with all GPUs" "env CUDA_VISIBLE_DEVICES=3\\,4 " \
  env CUDA_VISIBLE_DEVICES=3,4 tpu/gpu_local.sh --dry-run configs/tiny_cpu.py /tmp/x

expect_err "create: zone required" "--zone" tpu/create.sh --name bs-test --type v4-8 --dry-run
expect_err "create: bad type" "--type 'v4_8'" tpu/create.sh "${Z[@]}" --type v4_8 --dry-run
expect_err "create: best-effort needs --queued" "needs --queued" tpu/create.sh "${Z[@]}" --type v4-8 --best-effort --dry-run
expect_err "create: unknown runtime for a new type" "--version" tpu/create.sh "${Z[@]}" --type v9x-8 --dry-run
expect_err "setup: bad ref" "--ref" tpu/setup.sh "${Z[@]}" --ref no-such-ref --dry-run
expect_err "launch: relative workdir" "must be absolute" tpu/launch.sh "${Z[@]}" --dry-run configs/tiny_cpu.py runs/x
expect_err "launch: gs:// workdir refused" "--allow-gs-workdir" tpu/launch.sh "${Z[@]}" --dry-run configs/tiny_cpu.py gs://b/x
expect_err "launch: missing config" "does not exist" tpu/launch.sh "${Z[@]}" --dry-run configs/none.py /mnt/x
expect_err "launch: malformed override" "--config.KEY=VALUE" tpu/launch.sh "${Z[@]}" --dry-run configs/tiny_cpu.py /mnt/x --config.seed
expect_err "logs: bad worker" "--worker" tpu/logs.sh "${Z[@]}" --worker x --dry-run
expect_err "gpu_local: --gpus and --cpu" "exclude" tpu/gpu_local.sh --cpu 2 --gpus 2 configs/tiny_cpu.py /tmp/x
expect_err "gpu_local: more GPUs than visible" "only 1 GPUs" env CUDA_VISIBLE_DEVICES=0 tpu/gpu_local.sh --gpus 2 configs/tiny_cpu.py /tmp/x
expect_err "worker: start without a venv" "setup.sh" env BSJAX_WORKER_HOME=/nonexistent bash tpu/worker.sh start --run r -- --config=x

if [[ "$FULL" == 1 ]]; then
  [[ -x "$ROOT/.venv/bin/bsjax" ]] || { fail "--full needs $ROOT/.venv (make venv)"; exit 1; }
  T="$(mktemp -d)"
  trap 'rm -rf "$T"' EXIT
  # A worker home whose code and venv are this checkout's.
  ln -s "$ROOT" "$T/bsjax"
  ln -s "$ROOT/.venv" "$T/bsjax-venv"
  W=(env BSJAX_WORKER_HOME="$T" BSJAX_WORKER_ID=0 bash tpu/worker.sh)
  ARGS=(--config=configs/tiny_cpu.py "--workdir=$T/work" --config.train.log_every=1)
  expect_out "worker: start" "started run 'r1'" "${W[@]}" start --run r1 --no-distributed -- "${ARGS[@]}"
  expect_err "worker: a second run is refused while one is alive" "still running" \
    "${W[@]}" start --run r2 --no-distributed -- "${ARGS[@]}"
  for _ in $(seq 1 150); do
    grep -q '"kind": "train", "step": 3,' "$T/work/metrics.jsonl" 2>/dev/null && break
    sleep 2
  done
  expect_out "worker: logs show the running run" "run 'r1': running" "${W[@]}" logs --lines 2
  expect_out "worker: stop waits for the checkpoint" "exited with code 0" "${W[@]}" stop --wait 300
  status="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$T/work/summary.json")"
  if [[ "$status" == preempted ]]; then pass "worker: SIGTERM gives status preempted"; else fail "worker: status $status"; fi
  stopped_at="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["steps"])' "$T/work/summary.json")"
  "${W[@]}" start --run r1 --no-distributed -- "${ARGS[@]}" "--config.train.max_steps=$((stopped_at + 2))" >/dev/null
  for _ in $(seq 1 150); do
    [[ -f "$T/bsjax-runs/r1/exit_code" ]] && break
    sleep 2
  done
  first_step="$(python3 - "$T/work/metrics.jsonl" "$stopped_at" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
train = [l["step"] for l in lines if l["kind"] == "train"]
print(min(s for s in train if s > int(sys.argv[2])))
EOF
)"
  if [[ "$first_step" == $((stopped_at + 1)) ]] && grep -q max_steps "$T/work/summary.json"; then
    pass "worker: relaunch resumes at step $first_step and finishes"
  else
    fail "worker: relaunch: first new step $first_step after $stopped_at"
  fi
  rm -rf "$T/work"
  expect_out "gpu_local --cpu 2 --per-gpu trains 3 steps in 2 processes" "process 1: exit code 0" \
    tpu/gpu_local.sh --cpu 2 --per-gpu configs/tiny_cpu.py "$T/work" --config.train.max_steps=3
  if grep -q '"status": "max_steps"' "$T/work/summary.json" && [[ -s "$T/work/logs/process-1.log" ]]; then
    pass "gpu_local: summary max_steps, a log per process"
  else
    fail "gpu_local: summary or logs missing"
  fi
fi

if ((FAILS > 0)); then
  echo "$FAILS check(s) failed"
  exit 1
fi
echo "all checks passed"
