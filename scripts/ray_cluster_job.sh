#!/usr/bin/env bash
# Submit a PrunePilot search as a Ray job to a Ray cluster.
#
#   scripts/ray_cluster_job.sh --address http://HEAD:8265 [-- SEARCH ARGS...]
#       submit to an existing cluster's job server (the cluster's nodes need this venv / package installed)
#   scripts/ray_cluster_job.sh --local-cluster [-- SEARCH ARGS...]
#       start a throwaway single-node cluster on 127.0.0.1, submit, then `ray stop` it (even on failure)
#
# SEARCH ARGS go to `prunepilot search --method ray --address auto ...` (default: a small search into
# runs/ray-job). The job's entrypoint uses this venv's absolute python, so the cluster runs the same code.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PRUNEPILOT_VENV:-$here/.venv}"
py="$venv/bin/python"
ray_bin="$venv/bin/ray"
address=""
local_cluster=0
while [ $# -gt 0 ]; do
  case "$1" in
    --address) address="$2"; shift 2 ;;
    --local-cluster) local_cluster=1; shift ;;
    --) shift; break ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
search_args=("$@")
[ ${#search_args[@]} -gt 0 ] || search_args=(--trials 4 --final-epochs 0 --out "$here/runs/ray-job" --overwrite)

if [ "$local_cluster" = 1 ]; then
  export RAY_TMPDIR="${RAY_TMPDIR:-$here/.ray_tmp}"
  export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  mkdir -p "$RAY_TMPDIR"
  port="${RAY_PORT:-$((20000 + RANDOM % 20000))}"
  dash="${RAY_DASHBOARD_PORT:-$((port + 1))}"
  trap '"$ray_bin" stop --force >/dev/null 2>&1 || true' EXIT
  "$ray_bin" start --head --node-ip-address=127.0.0.1 --port="$port" --dashboard-host=127.0.0.1 \
    --dashboard-port="$dash" --disable-usage-stats --temp-dir="$RAY_TMPDIR" --num-cpus="${RAY_NUM_CPUS:-2}" \
    --include-dashboard=true >/dev/null
  address="http://127.0.0.1:$dash"
fi
[ -n "$address" ] || { echo "pass --address http://HEAD:8265 or --local-cluster" >&2; exit 2; }

"$ray_bin" job submit --address "$address" --working-dir "$here" \
  --runtime-env-json '{"excludes": [".venv", ".git", "runs", ".ray_tmp", "bench"]}' \
  -- "$py" -m agent.cli.main search --method ray --address auto --quiet "${search_args[@]}"
