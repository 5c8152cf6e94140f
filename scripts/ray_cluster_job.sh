#!/usr/bin/env bash
# Submit a PrunePilot search as a Ray job to a Ray cluster.
#
#   scripts/ray_cluster_job.sh --address http://HEAD:8265 [-- SEARCH ARGS...]
#       submit to an existing cluster's job server (the cluster's nodes need this venv / package installed)
#   scripts/ray_cluster_job.sh --local-cluster [-- SEARCH ARGS...]
#       start a throwaway single-node cluster on 127.0.0.1 (its own temp dir and ports), submit, then stop
#       exactly that cluster (even on failure); any other Ray on the machine is left alone
#
# SEARCH ARGS go to `prunepilot search --method ray --address auto ...` (default: a small search into
# runs/ray-job). A relative --out is resolved against the directory you run this from (the job itself runs in
# Ray's copy of the working dir). The job's entrypoint uses this venv's absolute python.
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
search_args=()
while [ $# -gt 0 ]; do  # --out relative to the caller's directory, not Ray's runtime working_dir
  case "$1" in
    --out) search_args+=(--out "$(realpath -m -- "$2")"); shift 2 ;;
    --out=*) search_args+=("--out=$(realpath -m -- "${1#--out=}")"); shift ;;
    *) search_args+=("$1"); shift ;;
  esac
done
[ ${#search_args[@]} -gt 0 ] || search_args=(--trials 4 --final-epochs 0 --out "$here/runs/ray-job" --overwrite)

head_pid=""
stop_cluster() {  # only the cluster started here: its `ray start --block` process, then any of its stragglers
  [ -n "$head_pid" ] || return 0
  kill -TERM "$head_pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$head_pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$head_pid" 2>/dev/null || true
  for pid in $(pgrep -f -- "$RAY_TMPDIR" || true); do  # processes whose command line names this cluster's temp dir
    [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null || true
  done
}

if [ "$local_cluster" = 1 ]; then
  # a private temp dir (short: Ray's socket paths must stay under 108 characters) names this cluster alone
  export RAY_TMPDIR="${RAY_TMPDIR:-$(mktemp -d /tmp/rayjob.XXXXXX)}"
  export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  mkdir -p "$RAY_TMPDIR"
  port="${RAY_PORT:-$((20000 + RANDOM % 20000))}"
  dash="${RAY_DASHBOARD_PORT:-$((port + 1))}"
  trap stop_cluster EXIT
  # --block keeps `ray start` alive as the owner of the cluster's processes: SIGTERM to it stops them all
  "$ray_bin" start --head --block --node-ip-address=127.0.0.1 --port="$port" --dashboard-host=127.0.0.1 \
    --dashboard-port="$dash" --disable-usage-stats --temp-dir="$RAY_TMPDIR" --num-cpus="${RAY_NUM_CPUS:-2}" \
    --include-dashboard=true >"$RAY_TMPDIR/ray_start.log" 2>&1 &
  head_pid=$!
  for _ in $(seq 240); do  # wait for the job server (at most 120 s)
    "$py" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$dash" \
      2>/dev/null && break
    kill -0 "$head_pid" 2>/dev/null || { echo "ray start failed, see $RAY_TMPDIR/ray_start.log" >&2; exit 1; }
    sleep 0.5
  done
  address="http://127.0.0.1:$dash"
fi
[ -n "$address" ] || { echo "pass --address http://HEAD:8265 or --local-cluster" >&2; exit 2; }

"$ray_bin" job submit --address "$address" --working-dir "$here" \
  --runtime-env-json '{"excludes": [".venv", ".git", "runs", ".ray_tmp", "bench"]}' \
  -- "$py" -m agent.cli.main search --method ray --address auto --quiet "${search_args[@]}"
