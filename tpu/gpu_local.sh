#!/usr/bin/env bash
# tpu/gpu_local.sh: train on one machine with several GPUs (or CPU processes, to test).
#
# Usage: tpu/gpu_local.sh [--per-gpu] [--gpus N] [--cpu N] [--port PORT]
#                         [--logdir DIR] [--grace SECONDS] [--bsjax CMD] [--dry-run]
#                         CONFIG WORKDIR [--config.KEY=VALUE ...]
#
# Default: ONE process that sees all the GPUs (JAX single-process multi-device):
#   CUDA_VISIBLE_DEVICES=<the GPUs> bsjax train --config=CONFIG --workdir=WORKDIR ...
# --per-gpu: one process per GPU, joined into one JAX run:
#   CUDA_VISIBLE_DEVICES=i BSJAX_COORDINATOR=127.0.0.1:PORT BSJAX_NUM_PROCESSES=n
#   BSJAX_PROCESS_ID=i bsjax train ...          (i = 0 .. n-1)
#
# Every process logs to LOGDIR/process-I.log (default WORKDIR/logs); process
# 0's log is also shown here. The script waits for all processes and exits
# non-zero if any failed. SIGTERM or Ctrl-C is passed on as SIGTERM (bsjax
# saves a checkpoint and exits with status "preempted"); a second one kills.
# When one process fails, the others get SIGTERM; processes still running
# --grace seconds (default 60) after another one ended get SIGKILL: they would
# otherwise wait forever in a collective for the missing peer.
#
#   --gpus N      use the first N GPUs (default: all; the GPUs are those in
#                 CUDA_VISIBLE_DEVICES if set, else those nvidia-smi lists)
#   --cpu N       no GPUs: N CPU devices instead (JAX_PLATFORMS=cpu; one process
#                 with N devices, or with --per-gpu N processes of one device
#                 each, joined over gloo). For testing the launcher anywhere.
#   --port PORT   coordinator port for --per-gpu (default: a free one)
#   --bsjax CMD   the bsjax command (env BSJAX_BIN; default: the repo's
#                 .venv/bin/bsjax if present, else bsjax on PATH)
#   --dry-run     print the processes' commands and exit
set -euo pipefail
# die, note, usage, take_value, REPO_ROOT (gpu_local.sh uses none of the gcloud helpers).
# shellcheck source=tpu/_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

PER_GPU=0
GPUS=""
CPU=""
PORT=""
LOGDIR=""
GRACE=60
BSJAX="${BSJAX_BIN:-}"
DRY_RUN=0
POSITIONAL=()
OVERRIDES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --per-gpu) PER_GPU=1; shift ;;
    --gpus|--gpus=*) take_value "$@"; GPUS="$VALUE"; shift "$TAKEN" ;;
    --cpu|--cpu=*) take_value "$@"; CPU="$VALUE"; shift "$TAKEN" ;;
    --port|--port=*) take_value "$@"; PORT="$VALUE"; shift "$TAKEN" ;;
    --logdir|--logdir=*) take_value "$@"; LOGDIR="$VALUE"; shift "$TAKEN" ;;
    --grace|--grace=*) take_value "$@"; GRACE="$VALUE"; shift "$TAKEN" ;;
    --bsjax|--bsjax=*) take_value "$@"; BSJAX="$VALUE"; shift "$TAKEN" ;;
    --dry-run) DRY_RUN=1; shift ;;
    --config.*) OVERRIDES+=("$1"); shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) POSITIONAL+=("$1"); shift ;;
  esac
done

[[ ${#POSITIONAL[@]} -eq 2 ]] || die "need CONFIG and WORKDIR, then --config.KEY=VALUE overrides (see --help)"
CONFIG="${POSITIONAL[0]}"
WORKDIR="${POSITIONAL[1]}"
[[ -f "${CONFIG%%:*}" ]] || die "CONFIG file '${CONFIG%%:*}' does not exist (configs/FILE.py[:ARG])"
for override in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
  [[ "$override" =~ ^--config\.[A-Za-z_][A-Za-z0-9_.]*=.* ]] \
    || die "override '$override' must look like --config.KEY=VALUE"
done
[[ "$GRACE" =~ ^[0-9]+$ ]] || die "--grace must be a number of seconds, got '$GRACE'"
if [[ -n "$GPUS" ]]; then
  [[ "$GPUS" =~ ^[0-9]+$ && "$GPUS" -gt 0 ]] || die "--gpus must be a positive integer, got '$GPUS'"
fi
if [[ -n "$CPU" ]]; then
  [[ "$CPU" =~ ^[0-9]+$ && "$CPU" -gt 0 ]] || die "--cpu must be a positive integer, got '$CPU'"
  [[ -z "$GPUS" ]] || die "--cpu and --gpus exclude each other"
fi

# The devices: GPU ids (or CPU device count).
DEVICE_IDS=()
if [[ -n "$CPU" ]]; then
  N="$CPU"
else
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    IFS=',' read -r -a DEVICE_IDS <<<"$CUDA_VISIBLE_DEVICES"
  else
    command -v nvidia-smi >/dev/null 2>&1 \
      || die "nvidia-smi not found: on a machine without GPUs use --cpu N (or set CUDA_VISIBLE_DEVICES)"
    count="$(nvidia-smi -L | grep -c '^GPU ' || true)"
    [[ "$count" -gt 0 ]] || die "nvidia-smi lists no GPUs"
    for ((i = 0; i < count; i++)); do DEVICE_IDS+=("$i"); done
  fi
  N="${GPUS:-${#DEVICE_IDS[@]}}"
  ((N <= ${#DEVICE_IDS[@]})) || die "--gpus $N but only ${#DEVICE_IDS[@]} GPUs are visible (${DEVICE_IDS[*]})"
  DEVICE_IDS=("${DEVICE_IDS[@]:0:N}")
fi

if [[ -z "$BSJAX" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/bsjax" ]]; then BSJAX="$REPO_ROOT/.venv/bin/bsjax"; else BSJAX=bsjax; fi
fi
read -r -a BSJAX_CMD <<<"$BSJAX"
command -v "${BSJAX_CMD[0]}" >/dev/null 2>&1 || die "bsjax command '${BSJAX_CMD[0]}' not found (--bsjax CMD or BSJAX_BIN)"

if [[ -z "$LOGDIR" ]]; then
  [[ "$WORKDIR" != *://* ]] || die "WORKDIR '$WORKDIR' is not local: pass --logdir DIR for the process logs"
  LOGDIR="${WORKDIR%/}/logs"
fi

NPROC=1
if [[ "$PER_GPU" == 1 ]]; then
  NPROC="$N"
  if [[ -z "$PORT" ]]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      PORT=$((20000 + RANDOM % 20000))
      # A port is taken when something answers on it.
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    done
  fi
  [[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1024 && "$PORT" -le 65535 ]] || die "--port must be in 1024..65535, got '$PORT'"
fi

# env_for I: the environment of process I, as KEY=VALUE words.
env_for() {
  local i="$1"
  local words=()
  if [[ -n "$CPU" ]]; then
    local per=$((PER_GPU == 1 ? 1 : CPU))
    words+=(JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=
            "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$per")
  elif [[ "$PER_GPU" == 1 ]]; then
    words+=("CUDA_VISIBLE_DEVICES=${DEVICE_IDS[$i]}")
  else
    local joined
    joined="$(IFS=,; echo "${DEVICE_IDS[*]}")"
    words+=("CUDA_VISIBLE_DEVICES=$joined")
  fi
  if [[ "$PER_GPU" == 1 ]]; then
    words+=("BSJAX_COORDINATOR=127.0.0.1:$PORT" "BSJAX_NUM_PROCESSES=$NPROC" "BSJAX_PROCESS_ID=$i")
  fi
  printf '%s\n' "${words[@]}"
}

ARGS=(train "--config=$CONFIG" "--workdir=$WORKDIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"})
if [[ "$DRY_RUN" == 1 ]]; then
  for ((i = 0; i < NPROC; i++)); do
    mapfile -t envs < <(env_for "$i")
    printf -v line '%q ' env "${envs[@]}" "${BSJAX_CMD[@]}" "${ARGS[@]}"
    echo "+ ${line% } > $LOGDIR/process-$i.log 2>&1 &"
  done
  exit 0
fi

mkdir -p "$LOGDIR"
PIDS=()
RCS=()
for ((i = 0; i < NPROC; i++)); do
  log="$LOGDIR/process-$i.log"
  : >"$log"
  mapfile -t envs < <(env_for "$i")
  # Started in the background, so they ignore SIGINT: Ctrl-C reaches them as our SIGTERM.
  env "${envs[@]}" "${BSJAX_CMD[@]}" "${ARGS[@]}" >>"$log" 2>&1 &
  PIDS+=("$!")
  RCS+=("")
done
if [[ -n "$CPU" ]]; then where="CPU"; else where="GPU(s) ${DEVICE_IDS[*]}"; fi
note "started $NPROC process(es) on $where: pids ${PIDS[*]}; logs in $LOGDIR"
tail -n +1 -F "$LOGDIR/process-0.log" 2>/dev/null &
TAIL_PID=$!

SIGNALS=0
# shellcheck disable=SC2317  # called by the trap below
on_signal() {
  SIGNALS=$((SIGNALS + 1))
  local sig=TERM
  if ((SIGNALS > 1)); then sig=KILL; fi
  note "signal received: sending SIG$sig to the processes still running"
  for ((j = 0; j < NPROC; j++)); do
    if [[ -z "${RCS[$j]}" ]]; then kill "-$sig" "${PIDS[$j]}" 2>/dev/null || true; fi
  done
}
trap on_signal TERM INT

FAILED=0
FIRST_EXIT_AT=""
while :; do
  running=0
  for ((i = 0; i < NPROC; i++)); do
    [[ -z "${RCS[$i]}" ]] || continue
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then
      running=$((running + 1))
      continue
    fi
    if wait "${PIDS[$i]}"; then RCS[i]=0; else RCS[i]=$?; fi
    FIRST_EXIT_AT="${FIRST_EXIT_AT:-$SECONDS}"
    if [[ "${RCS[$i]}" != 0 && "$FAILED" == 0 ]]; then
      FAILED="${RCS[$i]}"
      note "process $i exited with code ${RCS[$i]} (log $LOGDIR/process-$i.log); stopping the others"
      for ((j = 0; j < NPROC; j++)); do
        if [[ -z "${RCS[$j]}" ]]; then kill -TERM "${PIDS[$j]}" 2>/dev/null || true; fi
      done
    fi
  done
  ((running > 0)) || break
  # Processes of one run end together; one left long after another is stuck
  # in a collective with its missing peer.
  if [[ -n "$FIRST_EXIT_AT" ]] && ((SECONDS - FIRST_EXIT_AT > GRACE)); then
    note "processes still running ${GRACE}s after another ended: SIGKILL"
    for ((j = 0; j < NPROC; j++)); do
      if [[ -z "${RCS[$j]}" ]]; then kill -KILL "${PIDS[$j]}" 2>/dev/null || true; fi
    done
    FIRST_EXIT_AT=$SECONDS
  fi
  sleep 1 &
  wait $! || true  # returns at once when a signal arrives
done
sleep 0.5
kill "$TAIL_PID" 2>/dev/null || true
wait "$TAIL_PID" 2>/dev/null || true

for ((i = 0; i < NPROC; i++)); do
  note "process $i: exit code ${RCS[$i]} (log $LOGDIR/process-$i.log)"
done
exit "$FAILED"  # the code of the first process that failed, else 0
