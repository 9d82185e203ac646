#!/usr/bin/env bash
# tpu/stop.sh: stop a run on every worker: SIGTERM, so bsjax checkpoints and exits.
#
# Usage: tpu/stop.sh --name NAME --zone ZONE [--project PROJECT] [--run RUN]
#                    [--wait SECONDS] [--kill] [--dry-run]
#
# Sends SIGTERM to the run on all workers at once. bsjax then finishes the
# step in flight, saves a checkpoint, writes summary.json with status
# "preempted" and exits; launch.sh with the same WORKDIR resumes it.
#
#   --run RUN     the run to stop (default: the newest run on each worker)
#   --wait S      seconds to wait for the checkpoint (default 600)
#   --kill        after --wait, SIGKILL what is left (loses the steps since the
#                 last periodic checkpoint)
# Shared flags (--name, --zone, --project, --dry-run): see tpu/README.md.
set -euo pipefail
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

RUN_NAME=""
WAIT=600
KILL=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --run|--run=*) take_value "$@"; RUN_NAME="$VALUE"; shift "$TAKEN" ;;
    --wait|--wait=*) take_value "$@"; WAIT="$VALUE"; shift "$TAKEN" ;;
    --kill) KILL=1; shift ;;
    *)
      parse_common_flag "$@" || die "unknown argument '$1' (see --help)"
      shift "$TAKEN" ;;
  esac
done
check_common
require_nonneg_int --wait "$WAIT"
stop_args=(stop --wait "$WAIT")
if [[ -n "$RUN_NAME" ]]; then
  [[ "$RUN_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
    || die "--run '$RUN_NAME' may hold only letters, digits, '.', '_' and '-'"
  stop_args+=(--run "$RUN_NAME")
fi
if [[ "$KILL" == 1 ]]; then stop_args+=(--kill); fi
on_workers all "$REMOTE_WORKER $(quote_words "${stop_args[@]}")"
