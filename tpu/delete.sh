#!/usr/bin/env bash
# tpu/delete.sh: delete a TPU VM, or a queued resource together with its TPU.
#
# Usage: tpu/delete.sh --name NAME --zone ZONE [--project PROJECT] [--queued]
#                      [--yes] [--async] [--dry-run]
#
#   --queued   delete the queued resource NAME (made by create.sh --queued) with
#              --force, which deletes its TPU VM too
#   --yes      do not ask for confirmation (gcloud --quiet)
#   --async    return without waiting for the deletion to finish
#
# Runs on the workers are killed with the VM: stop them first (tpu/stop.sh)
# if you want a final checkpoint. Checkpoints in a bucket stay.
# Shared flags (--name, --zone, --project, --dry-run): see tpu/README.md.
set -euo pipefail
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

QUEUED=0
YES=0
ASYNC=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --queued) QUEUED=1; shift ;;
    --yes|-y) YES=1; shift ;;
    --async) ASYNC=1; shift ;;
    *)
      parse_common_flag "$@" || die "unknown argument '$1' (see --help)"
      shift "$TAKEN" ;;
  esac
done
check_common

if [[ "$QUEUED" == 1 ]]; then
  cmd=(gcloud compute tpus queued-resources delete "$TPU_NAME" "${GCLOUD_LOC[@]}" --force)
else
  cmd=(gcloud compute tpus tpu-vm delete "$TPU_NAME" "${GCLOUD_LOC[@]}")
fi
if [[ "$YES" == 1 ]]; then cmd+=(--quiet); fi
if [[ "$ASYNC" == 1 ]]; then cmd+=(--async); fi
run "${cmd[@]}"
