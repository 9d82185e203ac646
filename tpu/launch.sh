#!/usr/bin/env bash
# tpu/launch.sh: start a bsjax run on every worker of a TPU VM at once.
#
# Usage: tpu/launch.sh --name NAME --zone ZONE [--project PROJECT] [--sweep]
#                      [--run RUN] [--env KEY=VALUE]... [--any-commit]
#                      [--allow-gs-workdir] [--dry-run]
#                      CONFIG WORKDIR [--config.KEY=VALUE ...]
#
# On every worker (ssh --worker=all) runs, detached under nohup/setsid:
#   BSJAX_DISTRIBUTED=auto bsjax train --config=CONFIG --workdir=WORKDIR [overrides]
# ("bsjax sweep" with --sweep); each worker logs to ~/bsjax-runs/RUN/worker-K.log.
# jax.distributed.initialize() finds the other workers by itself.
#
#   CONFIG             configs/FILE.py[:ARG], relative to the repo; it must be in
#                      the commit that setup.sh sent
#   WORKDIR            must be one folder that every worker sees: an absolute path
#                      on a shared mount (setup.sh --mount-bucket B gives
#                      /mnt/gcs/B), or gs://... with --allow-gs-workdir (see README)
#   --run RUN          name of the run on the workers (default: WORKDIR's last part)
#   --env KEY=VALUE    extra environment for bsjax, e.g. LIBTPU_INIT_ARGS=... (repeat)
#   --any-commit       start even if the workers hold another commit than local HEAD
#   --settle S         seconds each worker watches for an early exit (default 20)
#
# The same WORKDIR again resumes from its last checkpoint.
# Shared flags (--name, --zone, --project, --dry-run): see tpu/README.md.
set -euo pipefail
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

SWEEP=0
RUN_NAME=""
ANY_COMMIT=0
ALLOW_GS=0
SETTLE=20
ENVS=()
POSITIONAL=()
OVERRIDE_ARGS=()
CONFIG_ARG=""
WORKDIR_ARG=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --sweep) SWEEP=1; shift ;;
    --run|--run=*) take_value "$@"; RUN_NAME="$VALUE"; shift "$TAKEN" ;;
    --env|--env=*) take_value "$@"; ENVS+=("$VALUE"); shift "$TAKEN" ;;
    --any-commit) ANY_COMMIT=1; shift ;;
    --allow-gs-workdir) ALLOW_GS=1; shift ;;
    --settle|--settle=*) take_value "$@"; SETTLE="$VALUE"; shift "$TAKEN" ;;
    --config.*) OVERRIDE_ARGS+=("$1"); shift ;;
    --config=*) CONFIG_ARG="${1#--config=}"; shift ;;
    --workdir=*) WORKDIR_ARG="${1#--workdir=}"; shift ;;
    -*)
      parse_common_flag "$@" || die "unknown option '$1' (see --help)"
      shift "$TAKEN" ;;
    *) POSITIONAL+=("$1"); shift ;;
  esac
done
check_common
# CONFIG and WORKDIR: positional, or --config=/--workdir= as bsjax spells them.
if [[ -n "$CONFIG_ARG" ]]; then POSITIONAL=("$CONFIG_ARG" ${POSITIONAL[@]+"${POSITIONAL[@]}"}); fi
if [[ -n "$WORKDIR_ARG" ]]; then
  [[ ${#POSITIONAL[@]} -ge 1 ]] || die "need CONFIG (see --help)"
  POSITIONAL=("${POSITIONAL[0]}" "$WORKDIR_ARG" "${POSITIONAL[@]:1}")
fi
[[ ${#POSITIONAL[@]} -ge 2 ]] || die "need CONFIG and WORKDIR (see --help)"
[[ ${#POSITIONAL[@]} -eq 2 ]] || die "unexpected argument '${POSITIONAL[2]}': overrides look like --config.KEY=VALUE"
CONFIG="${POSITIONAL[0]}"
WORKDIR="${POSITIONAL[1]}"
OVERRIDES=(${OVERRIDE_ARGS[@]+"${OVERRIDE_ARGS[@]}"})
require_nonneg_int --settle "$SETTLE"

# CONFIG: a file of the commit the workers hold, named relative to the repo.
config_file="${CONFIG%%:*}"
[[ "$config_file" == *.py ]] || die "CONFIG '$CONFIG' must be configs/FILE.py[:ARG]"
if [[ "$config_file" == /* ]]; then
  case "$config_file" in
    "$REPO_ROOT"/*) config_file="${config_file#"$REPO_ROOT"/}" ;;
    *) die "CONFIG '$config_file' is outside the repo $REPO_ROOT; the workers only have the repo" ;;
  esac
  CONFIG="$config_file${CONFIG#"${CONFIG%%:*}"}"
fi
[[ -f "$REPO_ROOT/$config_file" ]] || die "CONFIG file '$config_file' does not exist in $REPO_ROOT"
HEAD_COMMIT="$(git -C "$REPO_ROOT" rev-parse HEAD)"
git -C "$REPO_ROOT" cat-file -e "HEAD:$config_file" 2>/dev/null \
  || die "CONFIG '$config_file' is not committed: the workers get HEAD only (commit it, then tpu/setup.sh)"
if ! git -C "$REPO_ROOT" diff --quiet HEAD -- "$config_file"; then
  note "warning: $config_file has uncommitted changes; the workers run the committed version"
fi

# WORKDIR: one folder for all workers (checkpoints are written by every process).
case "$WORKDIR" in
  gs://*)
    [[ "$ALLOW_GS" == 1 ]] || die "WORKDIR '$WORKDIR': the trainer opens its workdir as a local path, so gs:// \
is not written to the bucket yet; mount the bucket (tpu/setup.sh --mount-bucket BUCKET) and pass \
/mnt/gcs/BUCKET/..., or add --allow-gs-workdir once bsjax writes gs:// paths"
    ;;
  /*) ;;
  *) die "WORKDIR '$WORKDIR' must be absolute (a shared mount such as /mnt/gcs/BUCKET/runs/x) or gs://..." ;;
esac
for override in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
  [[ "$override" =~ ^--config\.[A-Za-z_][A-Za-z0-9_.]*=.* ]] \
    || die "override '$override' must look like --config.KEY=VALUE (e.g. --config.mesh.fsdp=4)"
done
for pair in ${ENVS[@]+"${ENVS[@]}"}; do
  [[ "$pair" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env '$pair' must be KEY=VALUE"
done
if [[ -z "$RUN_NAME" ]]; then
  RUN_NAME="$(basename "${WORKDIR%/}")"
fi
[[ "$RUN_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
  || die "--run '$RUN_NAME' may hold only letters, digits, '.', '_' and '-' (pass --run NAME)"

start_args=(start --run "$RUN_NAME" --settle "$SETTLE")
if [[ "$SWEEP" == 1 ]]; then start_args+=(--sweep); fi
if [[ "$ANY_COMMIT" == 0 ]]; then start_args+=(--expect-commit "$HEAD_COMMIT"); fi
for pair in ${ENVS[@]+"${ENVS[@]}"}; do
  start_args+=(--env "$pair")
done
start_args+=(-- "--config=$CONFIG" "--workdir=$WORKDIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"})
on_workers all "$REMOTE_WORKER $(quote_words "${start_args[@]}")"
if [[ "$DRY_RUN" == 0 ]]; then
  note "started '$RUN_NAME' on every worker of $TPU_NAME"
  note "follow it: tpu/logs.sh --name $TPU_NAME --zone $TPU_ZONE --run $RUN_NAME --follow"
fi
