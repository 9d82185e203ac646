# shellcheck shell=bash disable=SC2034
# Shared helpers of the tpu/*.sh launchers (sourced, never run); the variables
# set here are read by the scripts that source it.
#
# Flags every gcloud script takes (flag, else environment variable):
#   --name NAME        BSJAX_TPU_NAME      TPU VM (and queued resource) name
#   --zone ZONE        BSJAX_TPU_ZONE      zone, e.g. us-central2-b
#   --project PROJECT  BSJAX_TPU_PROJECT   default: gcloud's configured project
#   --dry-run                              print the commands instead of running them
# The variables are prefixed with BSJAX_ because libtpu reads some TPU_* names.

# On every worker, setup.sh leaves tpu/worker.sh here; the other scripts call it.
# (Literal $HOME: the remote shell expands it.)
# shellcheck disable=SC2016
REMOTE_WORKER='bash "$HOME/bsjax-worker.sh"'

TPU_NAME="${BSJAX_TPU_NAME:-}"
TPU_ZONE="${BSJAX_TPU_ZONE:-}"
TPU_PROJECT="${BSJAX_TPU_PROJECT:-}"
DRY_RUN=0

SCRIPT_NAME="tpu/$(basename "$0")"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "$SCRIPT_NAME: error: $*" >&2
  exit 2
}

note() {
  echo "$SCRIPT_NAME: $*" >&2
}

# Print the comment block under the shebang (the script's usage header).
usage() {
  sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p}' "$0"
}

# take_value "$@": the value of the option in $1 ("--opt=V" or "--opt V").
# Sets VALUE and TAKEN (how many words to shift).
take_value() {
  if [[ "$1" == *=* ]]; then
    VALUE="${1#*=}"
    TAKEN=1
  else
    [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "option $1 needs a value"
    VALUE="$2"
    TAKEN=2
  fi
  [[ -n "$VALUE" ]] || die "option ${1%%=*} needs a non-empty value"
}

# parse_common_flag "$@": handle one of the shared flags; returns 1 if $1 is not one.
parse_common_flag() {
  case "$1" in
    --name|--name=*) take_value "$@"; TPU_NAME="$VALUE" ;;
    --zone|--zone=*) take_value "$@"; TPU_ZONE="$VALUE" ;;
    --project|--project=*) take_value "$@"; TPU_PROJECT="$VALUE" ;;
    --dry-run) DRY_RUN=1; TAKEN=1 ;;
    *) return 1 ;;
  esac
  return 0
}

require_positive_int() {  # NAME VALUE
  [[ "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || die "$1 must be a positive integer, got '$2'"
}

require_nonneg_int() {  # NAME VALUE
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be an integer >= 0, got '$2'"
}

# Validate the shared flags; then GCLOUD_LOC holds the --zone/--project flags.
check_common() {
  [[ -n "$TPU_NAME" ]] || die "no TPU name: pass --name NAME or set BSJAX_TPU_NAME"
  [[ "$TPU_NAME" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] \
    || die "--name '$TPU_NAME' is not a valid TPU name (lower-case letters, digits and '-', starting with a letter)"
  [[ -n "$TPU_ZONE" ]] || die "no zone: pass --zone ZONE (e.g. us-central2-b) or set BSJAX_TPU_ZONE"
  [[ "$TPU_ZONE" =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] \
    || die "--zone '$TPU_ZONE' does not look like a zone (e.g. us-central2-b, europe-west4-a)"
  GCLOUD_LOC=(--zone="$TPU_ZONE")
  if [[ -n "$TPU_PROJECT" ]]; then
    GCLOUD_LOC+=(--project="$TPU_PROJECT")
  fi
  if [[ "$DRY_RUN" == 0 ]] && ! command -v gcloud >/dev/null 2>&1; then
    die "gcloud is not on PATH: install the Google Cloud CLI, or add --dry-run to see the commands"
  fi
  # Extra flags for every tpu-vm ssh/scp call, e.g. "--internal-ip" or "--tunnel-through-iap".
  SSH_EXTRA=()
  if [[ -n "${BSJAX_TPU_SSH_FLAGS:-}" ]]; then
    read -r -a SSH_EXTRA <<<"$BSJAX_TPU_SSH_FLAGS"
  fi
}

# Print a command as a shell would read it back.
show_cmd() {
  local out
  printf -v out '%q ' "$@"
  echo "+ ${out% }"
}

# Run a command, or only print it under --dry-run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    show_cmd "$@"
    return 0
  fi
  show_cmd "$@" >&2
  "$@"
}

# Run a shell command line on TPU workers (WORKER: all or an index).
on_workers() {  # WORKER COMMAND_LINE
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_LOC[@]}" --worker="$1" \
    ${SSH_EXTRA[@]+"${SSH_EXTRA[@]}"} --command="$2"
}

# Quote words for the remote bash.
quote_words() {
  local out
  printf -v out '%q ' "$@"
  echo "${out% }"
}
