#!/usr/bin/env bash
# tpu/logs.sh: show the state and the log of a run on TPU workers.
#
# Usage: tpu/logs.sh --name NAME --zone ZONE [--project PROJECT] [--run RUN]
#                    [--worker K|all] [--lines N] [--follow] [--status] [--dry-run]
#
#   --run RUN      the run (default: the newest run on the worker)
#   --worker K     worker index, list (1,4), range (1-3) or "all" (default 0)
#   --lines N      lines of the log's end to print (default 100)
#   --follow       keep printing new lines (Ctrl-C to leave; the run goes on)
#   --status       list every run on the worker(s) and its state instead
# Shared flags (--name, --zone, --project, --dry-run): see tpu/README.md.
set -euo pipefail
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

RUN_NAME=""
WORKER=0
LINES=100
FOLLOW=0
STATUS=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --run|--run=*) take_value "$@"; RUN_NAME="$VALUE"; shift "$TAKEN" ;;
    --worker|--worker=*) take_value "$@"; WORKER="$VALUE"; shift "$TAKEN" ;;
    --lines|--lines=*) take_value "$@"; LINES="$VALUE"; shift "$TAKEN" ;;
    --follow|-f) FOLLOW=1; shift ;;
    --status) STATUS=1; shift ;;
    *)
      parse_common_flag "$@" || die "unknown argument '$1' (see --help)"
      shift "$TAKEN" ;;
  esac
done
check_common
[[ "$WORKER" == all || "$WORKER" =~ ^[0-9]+([,-][0-9]+)*$ ]] \
  || die "--worker must be a worker index, a list (1,4), a range (1-3) or 'all', got '$WORKER'"
require_nonneg_int --lines "$LINES"
if [[ "$STATUS" == 1 ]]; then
  on_workers "$WORKER" "$REMOTE_WORKER status"
  exit 0
fi
logs_args=(logs --lines "$LINES")
if [[ -n "$RUN_NAME" ]]; then
  [[ "$RUN_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
    || die "--run '$RUN_NAME' may hold only letters, digits, '.', '_' and '-'"
  logs_args+=(--run "$RUN_NAME")
fi
if [[ "$FOLLOW" == 1 ]]; then logs_args+=(--follow); fi
on_workers "$WORKER" "$REMOTE_WORKER $(quote_words "${logs_args[@]}")"
