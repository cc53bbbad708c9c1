#!/bin/sh
# fleetscope Slurm prolog: records which GPUs of this node a job holds, so that the fleetscope
# exporter can attribute GPU metrics and Xid errors to the job. slurm.conf: Prolog=/etc/slurm/prolog.d/*
# (or Prolog=PATH), run as root on each node of the job at its start. The epilog deletes the record.
#
# Writes $FLEETSCOPE_JOBS_DIR/<job_id>.json (default /run/fleetscope/jobs), atomically (temporary file,
# then rename), as one JSON object:
#   job_id      string   SLURM_JOB_ID
#   step_id     string or null   SLURM_STEP_ID where Slurm sets it (not in a job's Prolog)
#   user        string   SLURM_JOB_USER
#   gpus        list of int      nvidia-smi indexes, from SLURM_JOB_GPUS, else SLURM_STEP_GPUS, else
#                                CUDA_VISIBLE_DEVICES (indexes, or GPU UUIDs mapped through nvidia-smi)
#   uuids       list of string   the GPUs' UUIDs from `nvidia-smi --query-gpu=index,uuid`; empty
#                                where nvidia-smi is missing or fails
#   started_at  string   RFC 3339 UTC time the prolog ran
#
# It always exits 0: Slurm drains a node whose prolog fails, and monitoring must never do that. What
# went wrong goes to stderr (slurmd's log).

JOBS_DIR=${FLEETSCOPE_JOBS_DIR:-/run/fleetscope/jobs}

warn() { echo "fleetscope-prolog: $*" >&2; }

job_id=${SLURM_JOB_ID:-}
case $job_id in
    '' | *[!0-9_]*) warn "SLURM_JOB_ID is missing or not a job id: '$job_id'"; exit 0 ;;
esac

# JSON string: backslash and double quote escaped; control characters dropped.
json_string() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# index,uuid pairs of this node's GPUs, one per line; nothing where nvidia-smi cannot tell.
gpu_table=$(nvidia-smi --query-gpu=index,uuid --format=csv,noheader 2>/dev/null | tr -d ' ') || gpu_table=

devices=${SLURM_JOB_GPUS:-${SLURM_STEP_GPUS:-${CUDA_VISIBLE_DEVICES:-}}}
gpus=
uuids=
for device in $(printf '%s' "$devices" | tr ',' ' '); do
    case $device in
        *[!0-9]*)  # a UUID (GPU-..., MIG-...): its index from nvidia-smi, where it knows it
            index=$(printf '%s\n' "$gpu_table" | awk -F, -v u="$device" '$2 == u { print $1 }')
            uuid=$device ;;
        *)
            index=$device
            uuid=$(printf '%s\n' "$gpu_table" | awk -F, -v i="$device" '$1 == i { print $2 }') ;;
    esac
    [ -n "$index" ] && gpus="${gpus:+$gpus, }$index"
    [ -n "$uuid" ] && uuids="${uuids:+$uuids, }$(json_string "$uuid")"
done

if [ -n "${SLURM_STEP_ID:-}" ]; then step_id=$(json_string "$SLURM_STEP_ID"); else step_id=null; fi

if ! mkdir -p "$JOBS_DIR" 2>/dev/null; then warn "cannot create $JOBS_DIR"; exit 0; fi
tmp="$JOBS_DIR/.$job_id.json.$$"
if printf '{"job_id": %s, "step_id": %s, "user": %s, "gpus": [%s], "uuids": [%s], "started_at": %s}\n' \
    "$(json_string "$job_id")" "$step_id" "$(json_string "${SLURM_JOB_USER:-}")" "$gpus" "$uuids" \
    "$(json_string "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" > "$tmp" && chmod 0644 "$tmp" \
    && mv -f "$tmp" "$JOBS_DIR/$job_id.json"; then
    exit 0
fi
rm -f "$tmp"
warn "cannot write $JOBS_DIR/$job_id.json"
exit 0
