#!/bin/sh
# fleetscope Slurm epilog: deletes the job's GPU record that fleetscope-prolog.sh wrote, so that the
# exporter stops attributing GPUs to a finished job. slurm.conf: Epilog=PATH, run as root on each node
# of the job at its end. Always exits 0 (a failing epilog drains the node).

JOBS_DIR=${FLEETSCOPE_JOBS_DIR:-/run/fleetscope/jobs}

job_id=${SLURM_JOB_ID:-}
case $job_id in
    '' | *[!0-9_]*) echo "fleetscope-epilog: SLURM_JOB_ID is missing or not a job id: '$job_id'" >&2; exit 0 ;;
esac
rm -f "$JOBS_DIR/$job_id.json" || echo "fleetscope-epilog: cannot delete $JOBS_DIR/$job_id.json" >&2
exit 0
