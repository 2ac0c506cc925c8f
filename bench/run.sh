#!/usr/bin/env bash
# Writes BENCHMARKS.md: berth against Debian's docker-registry (the CNCF
# distribution registry 2.8), both on loopback with fresh data folders on the
# same disk, in the same run, measured by `berth bench --json`; with this
# machine's single-core sha256 and `dd conv=fdatasync` speeds, each registry's
# resident memory (idle, and its peak through the run), versions and date;
# then the same scenarios with berth on an S3 bucket of s3s-fs on loopback
# (tests/tools/install-s3s.sh builds it when target/s3s has none).
#
# The disk of a virtual machine changes speed from one minute to the next, so
# the scenarios bound by it (push, push-chunked, small-push) are run in rounds
# that alternate the two registries scenario by scenario, and the table shows
# each one's median; before every measurement `sync` writes out what earlier
# ones left in the page cache, so that no registry pays for another's writes.
#
#   bench/run.sh                 # the full run (1 GiB blobs; about twenty minutes)
#   bench/run.sh --blob-size 64MiB --duration 2s   # extra arguments go to berth bench
#
# Environment: CARGO_TARGET_DIR (where berth is built), BERTH (use this berth
# binary instead of building one), BENCH_DIR (work folder, default a fresh one
# under /var/tmp), BENCH_OUT (default BENCHMARKS.md), BENCH_ROUNDS (default 3), S3S_FS
# (an s3s-fs binary to use instead of target/s3s's).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${BENCH_OUT:-$repo/BENCHMARKS.md}
target=${CARGO_TARGET_DIR:-$repo/target}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/berth-bench.XXXXXX)}
rounds=${BENCH_ROUNDS:-3}
mkdir -p "$work"
extra=("$@")

if ! command -v docker-registry >/dev/null; then
    echo "installing Debian's docker-registry" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq docker-registry >/dev/null
fi
# The package may start its own service on :5000; ours run on other ports.

if [ -n "${BERTH:-}" ]; then
    berth=$BERTH # an already built binary
else
    cargo build --release --locked >&2
    berth=$target/release/berth
fi

berth_env=(env)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_up() { # url
    for _ in $(seq 100); do
        curl -sf -o /dev/null "$1/v2/" && return 0
        sleep 0.1
    done
    echo "no registry answers at $1" >&2
    return 1
}

rss_kib() { # pid field
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

dd_speed() { # bytes per second of a 1 GiB write made durable by fdatasync
    local line
    line=$(LC_ALL=C dd if=/dev/zero of="$work/dd.test" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1)
    rm -f "$work/dd.test"
    awk '{ print $1 / $(NF-3) }' <<<"$line" | sed 's/,//'
}

echo "measuring sha256 (one core) and dd conv=fdatasync" >&2
sha_kbs=$(LC_ALL=C openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null | awk '/^sha256/ { print $NF }' | tr -d k)
dd_runs=("$(dd_speed)")

declare -A url pid_of
start_distribution() { # name, deletes enabled (true/false), more YAML; data in $work/NAME
    local name=$1 delete=$2 more=${3:-} port
    port=$(free_port)
    mkdir -p "$work/$name"
    cat >"$work/$name.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/$name
  delete:
    enabled: $delete
http:
  addr: 127.0.0.1:$port
$more
YAML
    docker-registry serve "$work/$name.yml" 2>"$work/$name.log" &
    pids+=($!)
    url[$name]="http://127.0.0.1:$port"
    pid_of[$name]=$!
}

start_berth() { # name, more flags; data in $work/NAME; request log off, as distribution's
    local name=$1 port
    shift
    port=$(free_port)
    RUST_LOG=warn "${berth_env[@]}" "$berth" serve --listen "127.0.0.1:$port" --root "$work/$name" "$@" 2>"$work/$name.log" &
    pids+=($!)
    url[$name]="http://127.0.0.1:$port"
    pid_of[$name]=$!
}

summarize() { # registry, its idle RSS, its bench reports: $work/NAME.json for render.py
    local name=$1 idle=$2
    shift 2
    python3 - "$work/$name.json" "$idle" "$(rss_kib "${pid_of[$name]}" VmHWM)" \
        "$(rss_kib "${pid_of[$name]}" VmRSS)" "$@" <<'PY'
import json, sys
path, idle, peak, after, *runs = sys.argv[1:]
json.dump({
    "runs": [json.load(open(run)) for run in sorted(runs)],
    "rss_kib": {"idle": int(idle), "peak": int(peak), "after": int(after)},
}, open(path, "w"), indent=2)
PY
}

bench() { # registry output scenario...
    local name=$1 output=$2
    shift 2
    local args=()
    for scenario in "$@"; do args+=(--scenario "$scenario"); done
    sync # what earlier measurements left in the page cache goes to disk first
    echo "bench $name: $*" >&2
    "$berth" bench "${url[$name]}" --json "${args[@]}" "${extra[@]}" >"$output"
}

start_distribution distribution true
start_berth berth
idle=()
for name in distribution berth; do
    wait_up "${url[$name]}"
done
sleep 1
for name in distribution berth; do
    idle+=("$(rss_kib "${pid_of[$name]}" VmRSS)")
done

# First, while the registries are empty, the scenarios that do not depend on
# the disk's speed, once.
for name in distribution berth; do
    bench "$name" "$work/$name.once.json" pull manifest-get blob-head catalog
done
for round in $(seq "$rounds"); do
    order=(distribution berth)
    if ((round % 2 == 0)); then order=(berth distribution); fi
    for scenario in push push-chunked small-push; do
        for name in "${order[@]}"; do
            bench "$name" "$work/$name.$scenario.$round.json" "$scenario"
        done
    done
    dd_runs+=("$(dd_speed)")
done

# The pull-through cache: one upstream (a berth), mirrored by a berth cache and
# by distribution in its proxy mode (which mirrors one upstream at its root).
# The same clients pull one image straight from the upstream, then through
# each cache cold, then warm; the upstream is shared, so the caches go one
# after the other.
start_berth upstream
start_berth berth-cache --proxy "up.test=${url[upstream]}"
start_distribution distribution-cache false "proxy:
  remoteurl: ${url[upstream]}"
for name in upstream berth-cache distribution-cache; do wait_up "${url[$name]}"; done
for name in distribution berth; do
    prefix=""
    if [ "$name" = berth ]; then prefix="up.test/"; fi
    sync
    echo "bench $name as a pull-through cache" >&2
    "$berth" bench "${url[$name-cache]}" --json --upstream "${url[upstream]}" --mirror-prefix "$prefix" \
        --scenario pull-upstream --scenario pull-through-cold --scenario pull-through-warm \
        "${extra[@]}" >"$work/$name.pull-through.json"
done
sleep 1

# berth's web UI (distribution has none): its pages among 1,000 repositories
# of 10 tags each, made once by the first of these scenarios.
bench berth "$work/berth.web-ui.json" ui-repositories ui-search ui-tags ui-image ui-overview

# On object storage: berth on a bucket of s3s-fs, a real S3 server on
# loopback that keeps each object as a file of $work/s3 (so its own writes
# bound what berth can do there). distribution 2.8's s3 driver cannot run on
# s3s-fs 0.14.1: it lists multipart uploads at each blob commit, which s3s-fs
# answers 501 NotImplemented; so this table compares berth with itself.
s3s=${S3S_FS:-$target/s3s/bin/s3s-fs}
[ -x "$s3s" ] || BERTH_S3S="$target/s3s" bash tests/tools/install-s3s.sh >&2
s3_port=$(free_port)
mkdir -p "$work/s3/berth"
"$s3s" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret "$work/s3" 2>"$work/s3.log" &
pids+=($!)
berth_env=(env AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1)
start_berth berth-s3 --storage s3://berth --storage-option "endpoint=http://127.0.0.1:$s3_port"
wait_up "${url[berth-s3]}"
sleep 1
s3_idle=$(rss_kib "${pid_of[berth-s3]}" VmRSS)
bench berth-s3 "$work/berth-s3.runs.json" push push-chunked pull manifest-get blob-head small-push catalog
summarize berth-s3 "$s3_idle" "$work/berth-s3.runs.json"

i=0
for name in distribution berth; do
    summarize "$name" "${idle[$i]}" "$work/$name".*.json
    i=$((i + 1))
done
cleanup
rm -rf "$work/distribution" "$work/berth" "$work/upstream" "$work/berth-cache" "$work/distribution-cache" \
    "$work/s3" "$work/berth-s3"
python3 - "$work" "$sha_kbs" "${dd_runs[@]}" >"$work/machine.json" <<'PY'
import json, os, platform, subprocess, sys, datetime
work, sha_kbs, *dd = sys.argv[1:]
def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "cpu": cpu,
    "cores": os.cpu_count(),
    "memory_gib": round(mem / 2**20, 1),
    "kernel": platform.release(),
    "filesystem": cmd("findmnt", "-no", "FSTYPE,SOURCE", "--target", work),
    "sha256_bytes_per_second": float(sha_kbs) * 1000,
    "dd_bytes_per_second": [float(x) for x in dd],
    "distribution": cmd("docker-registry", "--version"),
    "distribution_package": cmd("dpkg-query", "-W", "-f=${Version}", "docker-registry"),
    "commit": cmd("git", "rev-parse", "--short", "HEAD"),
    "rustc": cmd("rustc", "--version"),
}, sys.stdout, indent=2)
PY
python3 bench/render.py "$work/machine.json" "$work/distribution.json" "$work/berth.json" "$("$berth" --version)" "${extra[*]:-}" \
    "$work/berth-s3.json" "$("$s3s" --version)" >"$out"
echo "wrote $out (raw results in $work)" >&2
