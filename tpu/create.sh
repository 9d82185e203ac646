#!/usr/bin/env bash
# tpu/create.sh: create a TPU VM (or a queued resource) and wait until it is ready.
#
# Usage: tpu/create.sh --name NAME --zone ZONE --type ACCELERATOR_TYPE
#                      [--version RUNTIME] [--project PROJECT]
#                      [--queued [--spot | --best-effort | --reserved] [--valid-until DURATION]]
#                      [--spot] [--timeout SECONDS] [--dry-run] [-- EXTRA_GCLOUD_FLAGS...]
#
#   --type TYPE       accelerator type, e.g. v4-8, v4-32, v5litepod-16, v5p-8, v6e-8
#                     (env BSJAX_TPU_TYPE)
#   --version V       TPU runtime (software) version (env BSJAX_TPU_VERSION); default
#                     from the type: v6e v2-alpha-tpuv6e, v5p v2-alpha-tpuv5,
#                     v5litepod/v5e v2-alpha-tpuv5-lite, v4 and older tpu-ubuntu2204-base
#   --queued          ask through "queued-resources create" (the queued resource
#                     gets the same name as the TPU); waits until ACTIVE. Spot
#                     capacity (--spot), best-effort (--best-effort, through
#                     "gcloud alpha") or a reservation (--reserved).
#   --valid-until D   with --queued: give up the request after D (e.g. 6h)
#   --spot            without --queued: a Spot TPU VM (may be preempted)
#   --timeout S       stop waiting after S seconds (default 3600; 0: do not wait)
#   -- FLAGS...       passed to gcloud create as they are (e.g. --network=NET)
#
# A TPU VM counts as ready in state READY; a queued resource in state ACTIVE.
# Shared flags (--name, --zone, --project, --dry-run): see tpu/README.md.
set -euo pipefail
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

ACCEL="${BSJAX_TPU_TYPE:-}"
VERSION="${BSJAX_TPU_VERSION:-}"
QUEUED=0
TIER=""
VALID_UNTIL=""
SPOT=0
TIMEOUT=3600
POLL="${BSJAX_TPU_POLL_SECONDS:-20}"
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --type|--type=*|--accelerator-type|--accelerator-type=*) take_value "$@"; ACCEL="$VALUE"; shift "$TAKEN" ;;
    --version|--version=*|--runtime-version|--runtime-version=*) take_value "$@"; VERSION="$VALUE"; shift "$TAKEN" ;;
    --queued) QUEUED=1; shift ;;
    --spot) SPOT=1; shift ;;
    --best-effort|--reserved)
      [[ -z "$TIER" ]] || die "choose one of --spot, --best-effort, --reserved"
      TIER="${1#--}"; shift ;;
    --valid-until|--valid-until=*) take_value "$@"; VALID_UNTIL="$VALUE"; shift "$TAKEN" ;;
    --timeout|--timeout=*) take_value "$@"; TIMEOUT="$VALUE"; shift "$TAKEN" ;;
    --) shift; EXTRA=("$@"); break ;;
    *)
      parse_common_flag "$@" || die "unknown argument '$1' (see --help)"
      shift "$TAKEN" ;;
  esac
done
check_common
[[ -n "$ACCEL" ]] || die "no accelerator type: pass --type (e.g. v4-8, v5litepod-16, v6e-8) or set BSJAX_TPU_TYPE"
[[ "$ACCEL" =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] \
  || die "--type '$ACCEL' is not an accelerator type like v4-8, v5litepod-16, v5p-8 or v6e-8"
require_nonneg_int --timeout "$TIMEOUT"
require_positive_int BSJAX_TPU_POLL_SECONDS "$POLL"
if [[ "$SPOT" == 1 && -n "$TIER" ]]; then
  die "choose one of --spot, --best-effort, --reserved"
fi
if [[ "$QUEUED" == 0 ]]; then
  [[ -z "$TIER" ]] || die "--$TIER needs --queued (a queued resource request)"
  [[ -z "$VALID_UNTIL" ]] || die "--valid-until needs --queued"
fi
if [[ -n "$VALID_UNTIL" ]]; then
  [[ "$VALID_UNTIL" =~ ^[0-9]+[smhd]$ ]] || die "--valid-until '$VALID_UNTIL' must be a duration like 30m, 6h or 2d"
fi

if [[ -z "$VERSION" ]]; then
  case "$ACCEL" in
    v6e-*) VERSION=v2-alpha-tpuv6e ;;
    v5p-*) VERSION=v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) VERSION=v2-alpha-tpuv5-lite ;;
    v2-*|v3-*|v4-*) VERSION=tpu-ubuntu2204-base ;;
    *) die "no default runtime version for --type $ACCEL: pass --version (see 'gcloud compute tpus tpu-vm versions list')" ;;
  esac
  note "runtime version $VERSION (from --type $ACCEL)"
fi

if [[ "$QUEUED" == 1 ]]; then
  gcloud_qr=(gcloud compute tpus queued-resources)
  if [[ "$TIER" == best-effort ]]; then  # only in gcloud's alpha track
    gcloud_qr=(gcloud alpha compute tpus queued-resources)
  fi
  create=("${gcloud_qr[@]}" create "$TPU_NAME" --node-id="$TPU_NAME" "${GCLOUD_LOC[@]}"
          --accelerator-type="$ACCEL" --runtime-version="$VERSION")
  if [[ "$SPOT" == 1 ]]; then create+=(--spot); fi
  if [[ -n "$TIER" ]]; then create+=("--$TIER"); fi
  if [[ -n "$VALID_UNTIL" ]]; then create+=(--valid-until-duration="$VALID_UNTIL"); fi
  describe=(gcloud compute tpus queued-resources describe "$TPU_NAME" "${GCLOUD_LOC[@]}"
            --format='value(state.state)')
  ready_state=ACTIVE
  waiting_states=" ACCEPTED WAITING_FOR_RESOURCES PROVISIONING CREATING "
else
  create=(gcloud compute tpus tpu-vm create "$TPU_NAME" "${GCLOUD_LOC[@]}"
          --accelerator-type="$ACCEL" --version="$VERSION")
  if [[ "$SPOT" == 1 ]]; then create+=(--spot); fi
  describe=(gcloud compute tpus tpu-vm describe "$TPU_NAME" "${GCLOUD_LOC[@]}" --format='value(state)')
  ready_state=READY
  waiting_states=" CREATING STARTING RESTARTING REPAIRING "
fi
create+=(${EXTRA[@]+"${EXTRA[@]}"})

run "${create[@]}"
if [[ "$TIMEOUT" == 0 ]]; then
  exit 0
fi
if [[ "$DRY_RUN" == 1 ]]; then
  show_cmd "${describe[@]}"
  echo "# (repeated every ${POLL}s, at most ${TIMEOUT}s, until the state is $ready_state)"
  exit 0
fi

TMPDIR_ERR="$(mktemp)"
trap 'rm -f "$TMPDIR_ERR"' EXIT
start=$SECONDS
failures=0
while :; do
  if state="$("${describe[@]}" 2>"$TMPDIR_ERR")"; then
    failures=0
  else
    failures=$((failures + 1))
    ((failures < 3)) || die "describing $TPU_NAME failed 3 times: $(cat "$TMPDIR_ERR")"
    state=UNKNOWN
  fi
  state="${state:-UNKNOWN}"
  if [[ "$state" == "$ready_state" ]]; then
    note "$TPU_NAME is $state after $((SECONDS - start))s"
    break
  fi
  if [[ "$waiting_states" != *" $state "* && "$state" != UNKNOWN ]]; then
    die "$TPU_NAME is in state $state, which will not become $ready_state; see: ${describe[*]:0:5} $TPU_NAME"
  fi
  if ((SECONDS - start >= TIMEOUT)); then
    die "$TPU_NAME still $state after ${TIMEOUT}s; it may yet come up (run this again to keep waiting) or delete it with tpu/delete.sh"
  fi
  note "$TPU_NAME is $state; checking again in ${POLL}s"
  sleep "$POLL"
done
