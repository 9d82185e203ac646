#!/usr/bin/env bash
# tpu/setup.sh: copy the repo to every worker of a TPU VM and install bsjax there.
#
# Usage: tpu/setup.sh --name NAME --zone ZONE [--project PROJECT] [--ref REF]
#                     [--python PY] [--no-lock] [--mount-bucket BUCKET] [--dry-run]
#
# Packs REF (default HEAD) with "git archive" (uncommitted changes are NOT
# sent: commit first), copies it and tpu/worker.sh to every worker
# (tpu-vm scp --worker=all), then runs "worker.sh install" on all of them:
# the repo lands in ~/bsjax, bsjax is pip-installed editable with the [tpu]
# extra into the venv ~/bsjax-venv, constrained by requirements.lock
# (--no-lock: only pyproject's ranges). Idempotent: run it again after each
# commit you want on the TPU; pip runs again only when the dependencies change.
#
#   --ref REF              commit, branch or tag to send (default HEAD)
#   --python PY            Python >= 3.11 on the workers (default: the newest
#                          found, else python3.11 from apt; TPU images have 3.10)
#   --mount-bucket BUCKET  also mount gs://BUCKET at /mnt/gcs/BUCKET with gcsfuse
#                          (env BSJAX_TPU_BUCKET); a shared folder for workdirs
#
# Shared flags (--name, --zone, --project, --dry-run; env BSJAX_TPU_NAME,
# BSJAX_TPU_ZONE, BSJAX_TPU_PROJECT, BSJAX_TPU_SSH_FLAGS): see tpu/README.md.
set -euo pipefail
# shellcheck source=_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

REF=HEAD
PYTHON=""
USE_LOCK=1
BUCKET="${BSJAX_TPU_BUCKET:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --ref|--ref=*) take_value "$@"; REF="$VALUE"; shift "$TAKEN" ;;
    --python|--python=*) take_value "$@"; PYTHON="$VALUE"; shift "$TAKEN" ;;
    --no-lock) USE_LOCK=0; shift ;;
    --mount-bucket|--mount-bucket=*) take_value "$@"; BUCKET="$VALUE"; shift "$TAKEN" ;;
    *)
      parse_common_flag "$@" || die "unknown argument '$1' (see --help)"
      shift "$TAKEN" ;;
  esac
done
check_common
COMMIT="$(git -C "$REPO_ROOT" rev-parse --verify --quiet "$REF^{commit}")" \
  || die "--ref '$REF' is not a commit of $REPO_ROOT"
if [[ -n "$BUCKET" ]]; then
  bucket_name="${BUCKET#gs://}"
  bucket_name="${bucket_name%/}"
  [[ "$bucket_name" =~ ^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$ ]] \
    || die "--mount-bucket '$BUCKET' is not a bucket name (e.g. my-bucket or gs://my-bucket)"
fi
if [[ "$REF" == HEAD ]] && [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no)" ]]; then
  note "warning: uncommitted changes are not sent; the workers get commit ${COMMIT:0:12}"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
run git -C "$REPO_ROOT" archive --format=tar.gz -o "$tmp/bsjax-src.tar.gz" "$COMMIT"
run cp "$REPO_ROOT/tpu/worker.sh" "$tmp/bsjax-worker.sh"
run gcloud compute tpus tpu-vm scp "$tmp/bsjax-src.tar.gz" "$tmp/bsjax-worker.sh" \
  "$TPU_NAME:" "${GCLOUD_LOC[@]}" --worker=all ${SSH_EXTRA[@]+"${SSH_EXTRA[@]}"}

install_args=(--commit "$COMMIT" --extra tpu)
if [[ -n "$PYTHON" ]]; then
  install_args+=(--python "$PYTHON")
fi
if [[ "$USE_LOCK" == 0 ]]; then
  install_args+=(--no-lock)
fi
if [[ -n "$BUCKET" ]]; then
  install_args+=(--mount-bucket "$BUCKET")
fi
# $HOME expands on the worker.
remote="$REMOTE_WORKER install --archive \"\$HOME/bsjax-src.tar.gz\" $(quote_words "${install_args[@]}")"
on_workers all "$remote"
if [[ "$DRY_RUN" == 0 ]]; then
  note "done: every worker of $TPU_NAME has commit ${COMMIT:0:12} installed"
fi
