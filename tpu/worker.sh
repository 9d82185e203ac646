#!/usr/bin/env bash
# tpu/worker.sh: the half of the TPU launchers that runs on each TPU worker.
#
# setup.sh copies it to ~/bsjax-worker.sh on every worker and runs "install";
# launch.sh, stop.sh and logs.sh call it there over ssh. It needs nothing
# TPU-specific, so it also runs on any Linux machine (that is how it is tested).
#
# Usage:
#   worker.sh install --archive FILE.tar.gz --commit SHA [--extra tpu] [--python PY]
#                     [--no-lock] [--mount-bucket BUCKET]
#   worker.sh start --run NAME [--sweep] [--env KEY=VALUE]... [--expect-commit SHA]
#                   [--no-distributed] [--settle SECONDS] -- BSJAX_ARGS...
#   worker.sh stop [--run NAME] [--wait SECONDS] [--kill]
#   worker.sh logs [--run NAME] [--lines N] [--follow]
#   worker.sh status
#
# install  unpacks the archive as the repo (replacing the old copy), makes the
#          venv with Python >= 3.11 (apt-installs python3.11 if the image has
#          none), and pip-installs bsjax editable with the extra, constrained by
#          requirements.lock. pip is skipped when pyproject.toml, the lock, the
#          extra and the Python are unchanged, so a re-run only swaps the code.
#          --mount-bucket mounts gs://BUCKET at /mnt/gcs/BUCKET with gcsfuse.
# start    runs "bsjax train" ("bsjax sweep" with --sweep) in the repo folder,
#          detached (setsid + nohup) under a small supervisor that forwards
#          SIGTERM and records the exit code; BSJAX_DISTRIBUTED=auto is set
#          unless --no-distributed. Refuses while another run is alive here.
#          Waits --settle seconds (default 20) and fails with the log's tail
#          if bsjax has already exited with an error (a bad config, say).
# stop     sends SIGTERM (bsjax saves a checkpoint and ends with status
#          "preempted"), waits up to --wait seconds (default 600), then with
#          --kill sends SIGKILL.
# logs     prints the state of the run and the tail of this worker's log.
#
# Layout under $BSJAX_WORKER_HOME (default $HOME):
#   bsjax/                 the repo; bsjax/.bsjax-commit names its commit
#   bsjax-venv/            the virtual environment
#   bsjax-runs/NAME/       worker-K.log, command, supervisor.pid, child.pid, exit_code
# The worker index K comes from $BSJAX_WORKER_ID, $TPU_WORKER_ID or the GCE
# metadata server (attribute agent-worker-number), else 0.
set -euo pipefail

BASE="${BSJAX_WORKER_HOME:-$HOME}"
CODE="$BASE/bsjax"
VENV="$BASE/bsjax-venv"
RUNS="$BASE/bsjax-runs"
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

die() {
  echo "worker.sh: error: $*" >&2
  exit 2
}

usage() {
  sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p}' "$SELF"
}

take_value() {  # as in _common.sh; sets VALUE and TAKEN
  if [[ "$1" == *=* ]]; then
    VALUE="${1#*=}"
    TAKEN=1
  else
    [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value"
    VALUE="$2"
    TAKEN=2
  fi
  [[ -n "$VALUE" ]] || die "option ${1%%=*} needs a non-empty value"
}

worker_id() {
  local id="${BSJAX_WORKER_ID:-${TPU_WORKER_ID:-}}"
  if [[ -z "$id" ]] && command -v curl >/dev/null 2>&1; then
    id="$(curl -sf -m 3 -H 'Metadata-Flavor: Google' \
      http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number \
      2>/dev/null || true)"
  fi
  [[ "$id" =~ ^[0-9]+$ ]] || id=0
  echo "$id"
}

# A pid file's process, if it is alive and still the supervisor of RUN_DIR.
live_pid() {  # PIDFILE RUN_DIR
  local pid
  [[ -f "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then  # guard against a recycled pid
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
  fi
  echo "$pid"
}

runs_newest_first() {
  [[ -d "$RUNS" ]] || return 0
  find "$RUNS" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\n' | sort -rn | cut -d' ' -f2-
}

latest_run() {
  local newest
  newest="$(runs_newest_first | head -n 1)"
  [[ -n "$newest" ]] || return 1
  echo "$newest"
}

check_run_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
    || die "run name '$1' may hold only letters, digits, '.', '_' and '-'"
}

# Refuse when a run is alive here (one process owns the TPU chips of a host).
no_live_run() {  # WHAT
  local dir pid
  [[ -d "$RUNS" ]] || return 0
  for dir in "$RUNS"/*/; do
    dir="${dir%/}"
    [[ -d "$dir" ]] || continue
    if pid="$(live_pid "$dir/supervisor.pid" "$dir")"; then
      die "run '$(basename "$dir")' is still running here (pid $pid); stop it (tpu/stop.sh) before $1"
    fi
  done
}

# apt-get as root, waiting for the dpkg lock (fresh VMs run unattended upgrades at boot).
apt_install() {  # PACKAGE...
  sudo -n apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >&2
}

python_ok() {  # PY: Python >= 3.11 with venv support
  "$1" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

pick_python() {  # [PY]
  local candidate
  if [[ -n "${1:-}" ]]; then
    python_ok "$1" || die "--python $1 is not a Python >= 3.11 with the venv module"
    echo "$1"
    return
  fi
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      echo "$candidate"
      return
    fi
  done
  # TPU VM images (Ubuntu 22.04) ship Python 3.10; bsjax needs 3.11.
  command -v apt-get >/dev/null 2>&1 || die "no Python >= 3.11 found; pass --python PATH"
  echo "worker.sh: no Python >= 3.11 with venv here; installing python3.11 with apt" >&2
  apt_install python3.11 python3.11-venv
  python_ok python3.11 || die "python3.11 from apt does not work; pass --python PATH"
  echo python3.11
}

mount_bucket() {  # BUCKET
  local bucket="${1#gs://}" point
  bucket="${bucket%/}"
  [[ "$bucket" =~ ^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$ ]] \
    || die "--mount-bucket '$1' is not a bucket name (e.g. my-bucket or gs://my-bucket)"
  point="/mnt/gcs/$bucket"
  if mountpoint -q "$point" 2>/dev/null; then
    echo "gs://$bucket already mounted at $point"
    return
  fi
  if ! command -v gcsfuse >/dev/null 2>&1; then
    echo "installing gcsfuse" >&2
    local codename
    codename="$(lsb_release -c -s)"
    curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
      | sudo -n tee /usr/share/keyrings/cloud.google.asc >/dev/null
    echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$codename main" \
      | sudo -n tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
    apt_install gcsfuse
  fi
  sudo -n mkdir -p "$point"
  sudo -n chown "$(id -u):$(id -g)" "$point"
  # Orbax commits a checkpoint by renaming its temporary folder: allow folder renames.
  gcsfuse --implicit-dirs --rename-dir-limit=200000 "$bucket" "$point"
  echo "gs://$bucket mounted at $point"
}

cmd_install() {
  local archive="" commit="" extra="tpu" python="" use_lock=1 bucket=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --archive|--archive=*) take_value "$@"; archive="$VALUE"; shift "$TAKEN" ;;
      --commit|--commit=*) take_value "$@"; commit="$VALUE"; shift "$TAKEN" ;;
      --extra|--extra=*) take_value "$@"; extra="$VALUE"; shift "$TAKEN" ;;
      --python|--python=*) take_value "$@"; python="$VALUE"; shift "$TAKEN" ;;
      --mount-bucket|--mount-bucket=*) take_value "$@"; bucket="$VALUE"; shift "$TAKEN" ;;
      --no-lock) use_lock=0; shift ;;
      *) die "install: unknown argument '$1'" ;;
    esac
  done
  [[ -f "$archive" ]] || die "install: --archive '$archive' is not a file"
  [[ "$commit" =~ ^[0-9a-f]{7,40}$ ]] || die "install: --commit must be a git commit hash, got '$commit'"
  [[ "$extra" =~ ^[a-z0-9_,-]+$ ]] || die "install: --extra '$extra' is not an extra name (tpu, gpu, test)"
  no_live_run "replacing the code"

  python="$(pick_python "$python")"
  mkdir -p "$BASE"
  # The new code goes in whole, so files deleted upstream disappear here too.
  local staging="$CODE.staging"
  rm -rf "$staging"
  mkdir -p "$staging"
  tar -xzf "$archive" -C "$staging"
  [[ -f "$staging/pyproject.toml" ]] || die "install: $archive holds no pyproject.toml at its top"
  echo "$commit" >"$staging/.bsjax-commit"
  rm -rf "$CODE.old"
  if [[ -d "$CODE" ]]; then
    mv "$CODE" "$CODE.old"
  fi
  mv "$staging" "$CODE"
  rm -rf "$CODE.old"
  echo "code: $CODE at commit $commit"

  if [[ -x "$VENV/bin/python" ]] && ! python_ok "$VENV/bin/python"; then
    echo "venv $VENV has an old Python: making it again"
    rm -rf "$VENV"
  fi
  if [[ ! -x "$VENV/bin/python" ]] && ! "$python" -m venv "$VENV"; then
    # Debian and Ubuntu ship the venv support of each Python as its own package.
    rm -rf "$VENV"
    if [[ "$(basename "$python")" != python3* ]] || ! command -v apt-get >/dev/null 2>&1; then
      die "'$python -m venv' failed; pass --python with a Python that can make a venv"
    fi
    echo "installing $(basename "$python")-venv with apt" >&2
    apt_install "$(basename "$python")-venv"
    "$python" -m venv "$VENV"
  fi

  local constraints=() stamp
  if [[ "$use_lock" == 1 && -f "$CODE/requirements.lock" ]]; then
    constraints=(-c "$CODE/requirements.lock")
  fi
  stamp="$({ cat "$CODE/pyproject.toml"
             [[ ${#constraints[@]} -gt 0 ]] && cat "$CODE/requirements.lock"
             echo "extra=$extra"
             "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
  if [[ -f "$VENV/.bsjax-stamp" && "$(cat "$VENV/.bsjax-stamp")" == "$stamp" ]] \
      && "$VENV/bin/python" -c 'import bsjax' >/dev/null 2>&1; then
    echo "dependencies unchanged: pip skipped"
  else
    rm -f "$VENV/.bsjax-stamp"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet ${constraints[@]+"${constraints[@]}"} \
      -e "${CODE}[$extra]"
    echo "$stamp" >"$VENV/.bsjax-stamp"
  fi
  # Importing jax does not start a backend, so this does not wait for the other workers.
  "$VENV/bin/python" -c 'import sys, jax, bsjax; print(f"python {sys.version.split()[0]}, jax {jax.__version__}, bsjax from {bsjax.__file__}")'
  if [[ -n "$bucket" ]]; then
    mount_bucket "$bucket"
  fi
  echo "worker $(worker_id) ($(hostname)): ready"
}

cmd_start() {
  local run="" mode="train" expect="" distributed=1 settle=20 envs=() pair
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --run|--run=*) take_value "$@"; run="$VALUE"; shift "$TAKEN" ;;
      --sweep) mode="sweep"; shift ;;
      --expect-commit|--expect-commit=*) take_value "$@"; expect="$VALUE"; shift "$TAKEN" ;;
      --no-distributed) distributed=0; shift ;;
      --settle|--settle=*) take_value "$@"; settle="$VALUE"; shift "$TAKEN" ;;
      --env|--env=*)
        take_value "$@"; pair="$VALUE"; shift "$TAKEN"
        [[ "$pair" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "start: --env '$pair' must be KEY=VALUE"
        envs+=("$pair") ;;
      --) shift; break ;;
      *) die "start: unknown argument '$1' (bsjax arguments go after --)" ;;
    esac
  done
  [[ -n "$run" ]] || die "start: --run NAME is required"
  [[ "$settle" =~ ^[0-9]+$ ]] || die "start: --settle must be a number of seconds, got '$settle'"
  check_run_name "$run"
  [[ $# -gt 0 ]] || die "start: no bsjax arguments after --"
  [[ -x "$VENV/bin/bsjax" ]] || die "bsjax is not installed in $VENV: run tpu/setup.sh first"
  if [[ -n "$expect" ]]; then
    local have
    have="$(cat "$CODE/.bsjax-commit" 2>/dev/null || echo none)"
    [[ "$have" == "$expect"* || "$expect" == "$have"* ]] \
      || die "this worker has commit $have but the launcher is at $expect: run tpu/setup.sh (or pass --any-commit)"
  fi
  no_live_run "starting '$run'"

  local run_dir="$RUNS/$run" id log pid
  mkdir -p "$run_dir"
  id="$(worker_id)"
  log="$run_dir/worker-$id.log"
  rm -f "$run_dir/exit_code" "$run_dir/child.pid"
  for pair in ${envs[@]+"${envs[@]}"}; do
    export "${pair?}"
  done
  if [[ "$distributed" == 1 ]]; then
    export BSJAX_DISTRIBUTED=auto
  fi
  local cmd=("$VENV/bin/bsjax" "$mode" "$@")
  printf '%q ' "${cmd[@]}" >"$run_dir/command"
  echo >>"$run_dir/command"
  rm -f "$run_dir/supervisor.pid"
  cd "$CODE"
  setsid nohup bash "$SELF" _supervise "$run_dir" "$log" "${cmd[@]}" \
    </dev/null >/dev/null 2>&1 &
  # Report an early failure (bad config, missing data) here rather than in the log only.
  local waited=0
  while ((waited < settle)) && [[ ! -f "$run_dir/exit_code" ]]; do
    sleep 1
    waited=$((waited + 1))
  done
  if [[ "$(cat "$run_dir/exit_code" 2>/dev/null)" == 0 ]]; then
    echo "worker $id ($(hostname)): run '$run' already finished (exit code 0); log $log"
    tail -n 5 "$log"
    return 0
  fi
  if [[ -f "$run_dir/exit_code" ]] || ! pid="$(live_pid "$run_dir/supervisor.pid" "$run_dir")"; then
    echo "worker $id ($(hostname)): run '$run' ended within ${settle}s: $(describe_run "$run"); its log:" >&2
    tail -n 40 "$log" >&2 || true
    exit 1
  fi
  echo "worker $id ($(hostname)): started run '$run' (pid $pid); log $log"
}

# Runs detached: bsjax as a child, SIGTERM/SIGINT forwarded, exit code recorded.
cmd_supervise() {
  local run_dir="$1" log="$2" child rc again
  shift 2
  echo "$$" >"$run_dir/supervisor.pid"
  exec >>"$log" 2>&1
  echo "== $(date -u +%FT%TZ) $(hostname) worker $(worker_id): $(printf '%q ' "$@")"
  "$@" &
  child=$!
  echo "$child" >"$run_dir/child.pid"
  trap 'echo "== $(date -u +%FT%TZ) SIGTERM: asking bsjax (pid $child) to checkpoint and stop"; kill -TERM "$child" 2>/dev/null || true' TERM INT
  while :; do
    if wait "$child"; then rc=0; else rc=$?; fi
    # Above 128: either the child died of a signal or the trap cut the wait short.
    if ((rc > 128)); then
      if kill -0 "$child" 2>/dev/null; then
        continue
      fi
      if wait "$child" 2>/dev/null; then rc=0; else again=$?; [[ "$again" == 127 ]] || rc="$again"; fi
    fi
    break
  done
  echo "$rc" >"$run_dir/exit_code"
  echo "== $(date -u +%FT%TZ) bsjax exited with code $rc"
}

resolve_run() {  # [NAME] -> NAME of an existing run folder
  local run="${1:-}"
  if [[ -z "$run" ]]; then
    run="$(latest_run)" || die "no runs in $RUNS on this worker"
  fi
  check_run_name "$run"
  [[ -d "$RUNS/$run" ]] || die "no run '$run' in $RUNS (runs: $(runs_newest_first | tr '\n' ' '))"
  echo "$run"
}

describe_run() {  # NAME -> one line of state
  local dir="$RUNS/$1" pid
  if pid="$(live_pid "$dir/supervisor.pid" "$dir")"; then
    echo "running (supervisor pid $pid)"
  elif [[ -f "$dir/exit_code" ]]; then
    echo "exited with code $(cat "$dir/exit_code")"
  else
    echo "not running, no exit code recorded (killed, or the machine restarted)"
  fi
}

cmd_stop() {
  local run="" wait_s=600 force=0 pid waited=0 child
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --run|--run=*) take_value "$@"; run="$VALUE"; shift "$TAKEN" ;;
      --wait|--wait=*) take_value "$@"; wait_s="$VALUE"; shift "$TAKEN" ;;
      --kill) force=1; shift ;;
      *) die "stop: unknown argument '$1'" ;;
    esac
  done
  [[ "$wait_s" =~ ^[0-9]+$ ]] || die "stop: --wait must be a number of seconds, got '$wait_s'"
  run="$(resolve_run "$run")"
  local dir="$RUNS/$run" id
  id="$(worker_id)"
  if ! pid="$(live_pid "$dir/supervisor.pid" "$dir")"; then
    echo "worker $id: run '$run' is not running: $(describe_run "$run")"
    return 0
  fi
  kill -TERM "$pid"
  echo "worker $id: SIGTERM sent to run '$run'; waiting up to ${wait_s}s for its checkpoint"
  while live_pid "$dir/supervisor.pid" "$dir" >/dev/null && ((waited < wait_s)); do
    sleep 2
    waited=$((waited + 2))
  done
  if live_pid "$dir/supervisor.pid" "$dir" >/dev/null; then
    if [[ "$force" == 0 ]]; then
      echo "worker $id: run '$run' still running after ${wait_s}s (add --kill to force it)" >&2
      return 1
    fi
    child="$(cat "$dir/child.pid" 2>/dev/null || true)"
    if [[ -n "$child" ]]; then
      kill -KILL "$child" 2>/dev/null || true
    fi
    kill -KILL "$pid" 2>/dev/null || true
    echo "worker $id: run '$run' killed (no checkpoint since the last periodic one)"
    return 0
  fi
  echo "worker $id: run '$run' $(describe_run "$run")"
  tail -n 3 "$dir/worker-$id.log" 2>/dev/null || true
}

cmd_logs() {
  local run="" lines=100 follow=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --run|--run=*) take_value "$@"; run="$VALUE"; shift "$TAKEN" ;;
      --lines|--lines=*) take_value "$@"; lines="$VALUE"; shift "$TAKEN" ;;
      --follow|-f) follow=1; shift ;;
      *) die "logs: unknown argument '$1'" ;;
    esac
  done
  [[ "$lines" =~ ^[0-9]+$ ]] || die "logs: --lines must be a number, got '$lines'"
  run="$(resolve_run "$run")"
  local id log
  id="$(worker_id)"
  log="$RUNS/$run/worker-$id.log"
  echo "== worker $id ($(hostname)) run '$run': $(describe_run "$run")"
  [[ -f "$log" ]] || die "no log $log"
  if [[ "$follow" == 1 ]]; then
    exec tail -n "$lines" -F "$log"
  fi
  tail -n "$lines" "$log"
}

cmd_status() {
  local run
  echo "== worker $(worker_id) ($(hostname)): code at commit $(cat "$CODE/.bsjax-commit" 2>/dev/null || echo none)"
  [[ -d "$RUNS" ]] || { echo "no runs"; return 0; }
  runs_newest_first | while IFS= read -r run; do
    echo "$run: $(describe_run "$run")"
  done
}

main() {
  [[ $# -gt 0 ]] || { usage; exit 2; }
  local command="$1"
  shift
  case "$command" in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    logs) cmd_logs "$@" ;;
    status) cmd_status "$@" ;;
    _supervise) cmd_supervise "$@" ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$command' (install, start, stop, logs, status)" ;;
  esac
}

main "$@"
