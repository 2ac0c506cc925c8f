#!/usr/bin/env python3
"""Renders BENCHMARKS.md from bench/run.sh's results: the machine, the
side-by-side table of berth and distribution, each target of issue 8 with
whether it is met, and berth on object storage beside berth on the data
folder. Usage: render.py machine.json distribution.json berth.json
BERTH_VERSION EXTRA_ARGS [berth-s3.json S3_SERVER], where each registry's
file holds the reports of all its `berth bench --json` runs and its memory
figures."""
import json
import statistics
import sys

machine, dist, berth = (json.load(open(p)) for p in sys.argv[1:4])
berth_version, extra = sys.argv[4], sys.argv[5]
berth_s3, s3_server = None, None
if len(sys.argv) > 6:
    berth_s3, s3_server = json.load(open(sys.argv[6])), sys.argv[7]


# The figure each scenario is ranked by, to pick its median run.
KEYS = {
    "push": lambda s: s["bytes_per_second"],
    "push-chunked": lambda s: s["bytes_per_second"],
    "pull": lambda s: s["bytes_per_second"],
    "manifest-get": lambda s: s["requests_per_second"],
    "blob-head": lambda s: s["requests_per_second"],
    "small-push": lambda s: s["requests_per_second"],
    "catalog": lambda s: -s["latency"]["p50_ms"],
    "pull-upstream": lambda s: s["bytes_per_second"],
    "pull-through-cold": lambda s: s["bytes_per_second"],
    "pull-through-warm": lambda s: s["bytes_per_second"],
    "ui-repositories": lambda s: -s["latency"]["p50_ms"],
    "ui-search": lambda s: -s["latency"]["p50_ms"],
    "ui-tags": lambda s: -s["latency"]["p50_ms"],
    "ui-image": lambda s: -s["latency"]["p50_ms"],
    "ui-overview": lambda s: -s["latency"]["p50_ms"],
}

# The web UI's pages, and what each shows.
UI_PAGES = {
    "ui-repositories": "`/?q=…`: the first 50 of the 1,000 repositories, each with its tags' size",
    "ui-search": "`/?q=…`: a search matching 10 repositories",
    "ui-tags": "`/r/NAME`: a repository's 10 tags",
    "ui-image": "`/r/NAME/-/TAG`: an image's page",
    "ui-overview": "`/overview`: storage, its history, collections",
}


def runs(registry, name):
    return [s for report in registry["runs"] for s in report["scenarios"] if s["name"] == name]


def scenario(registry, name):
    """The median run of a scenario (the lower middle one of an even count)."""
    found = sorted(runs(registry, name), key=KEYS[name])
    return found[(len(found) - 1) // 2] if found else None


def spread(registry, name, show):
    """` (min–max, N runs)` when a scenario ran more than once."""
    found = sorted(runs(registry, name), key=KEYS[name])
    if len(found) < 2:
        return ""
    return f" ({show(found[0])}–{show(found[-1])}, {len(found)} runs)"


def rate(bps):
    return f"{bps / 1e9:.2f} GB/s" if bps >= 1e9 else f"{bps / 1e6:.0f} MB/s"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "-"


def yes(ok):
    return "**yes**" if ok else "**no**"


sha = machine["sha256_bytes_per_second"]
dd = machine["dd_bytes_per_second"]
dd_median = statistics.median(dd)
ceiling = 0.7 * min(sha, dd_median)

rows = []
targets = []


def throughput(name, label, need_ratio=None, need_ceiling=False, dist=dist, berth=berth, rows=rows):
    d, b = scenario(dist, name), scenario(berth, name)
    if not d or not b:
        return
    db, bb = d["bytes_per_second"], b["bytes_per_second"]
    show = lambda s: rate(s["bytes_per_second"])
    rows.append((label, rate(db) + spread(dist, name, show), rate(bb) + spread(berth, name, show), ratio(bb, db)))
    if need_ratio:
        targets.append((f"{label}: ≥ {need_ratio}× distribution", ratio(bb, db), bb >= need_ratio * db))
    if need_ceiling:
        targets.append((f"{label}: ≥ 70% of min(sha256, dd) = {rate(ceiling)}", rate(bb), bb >= ceiling))


def requests(name, label, need_ratio=None, p99_ms=None, dist=dist, berth=berth, rows=rows):
    d, b = scenario(dist, name), scenario(berth, name)
    if not d or not b:
        return
    dr, br = d["requests_per_second"], b["requests_per_second"]
    dl, bl = d["latency"], b["latency"]
    rows.append((
        label,
        f"{dr:,.0f} req/s (p50 {dl['p50_ms']:.2f} ms, p99 {dl['p99_ms']:.1f} ms)",
        f"{br:,.0f} req/s (p50 {bl['p50_ms']:.2f} ms, p99 {bl['p99_ms']:.1f} ms)",
        ratio(br, dr),
    ))
    if need_ratio is None:
        return
    targets.append((f"{label}: ≥ {need_ratio}× distribution's requests/s", ratio(br, dr), br >= need_ratio * dr))
    targets.append((f"{label}: p99 ≤ {p99_ms} ms", f"{bl['p99_ms']:.2f} ms", bl["p99_ms"] <= p99_ms))


throughput("push", "push, monolithic", 3, True)
throughput("push-chunked", "push, chunked", 3, True)
throughput("pull", "pull", 1)
requests("manifest-get", "manifest GET by tag", 10, 5)
requests("blob-head", "blob HEAD", 10, 5)

def small_pushes(dist, berth, rows, label):
    d, b = scenario(dist, "small-push"), scenario(berth, "small-push")
    pushes = lambda s: f"{s['requests_per_second']:,.0f}/s"
    if not d or not b:
        return None
    dr, br = d["requests_per_second"], b["requests_per_second"]
    rows.append((
        label,
        f"{dr:,.0f} pushes/s (p50 {d['latency']['p50_ms']:.1f} ms)" + spread(dist, "small-push", pushes),
        f"{br:,.0f} pushes/s (p50 {b['latency']['p50_ms']:.1f} ms)" + spread(berth, "small-push", pushes),
        ratio(br, dr),
    ))
    return dr, br


def catalog(dist, berth, rows):
    d, b = scenario(dist, "catalog"), scenario(berth, "catalog")
    if not d or not b:
        return None
    dl, bl = d["latency"], b["latency"]
    rows.append((
        "catalog in one page",
        f"p50 {dl['p50_ms']:.2f} ms, p99 {dl['p99_ms']:.2f} ms",
        f"p50 {bl['p50_ms']:.2f} ms, p99 {bl['p99_ms']:.2f} ms",
        f"{dl['p50_ms'] / bl['p50_ms']:.2f}× faster" if bl["p50_ms"] <= dl["p50_ms"]
        else f"{bl['p50_ms'] / dl['p50_ms']:.2f}× slower",
    ))
    return bl


pushed = small_pushes(dist, berth, rows, "small pushes, each durable")
if pushed:
    dr, br = pushed
    targets.append(("small pushes: ≥ 6× distribution's rate", ratio(br, dr), br >= 6 * dr))
bl = catalog(dist, berth, rows)
if bl:
    targets.append(("catalog in one page: ≤ 2 ms (p50; p99 in the table)", f"{bl['p50_ms']:.2f} ms", bl["p50_ms"] <= 2))

# The caches pull from one upstream (a berth): the upstream row is the same
# pulls without a cache, measured before each cache's.
throughput("pull-upstream", "pull-through: the pulls straight from the upstream")
throughput("pull-through-cold", "pull-through cache, cold (first pulls, fetched upstream)")
throughput("pull-through-warm", "pull-through cache, warm (served from the cache)")

dm, bm = dist["rss_kib"], berth["rss_kib"]
rows.append(("RSS idle (after start-up)", mib(dm["idle"]), mib(bm["idle"]), ratio(bm["idle"], dm["idle"])))
rows.append(("RSS peak through the run (VmHWM)", mib(dm["peak"]), mib(bm["peak"]), ratio(bm["peak"], dm["peak"])))
rows.append(("RSS idle after the run", mib(dm["after"]), mib(bm["after"]), ratio(bm["after"], dm["after"])))
targets.append(("RSS idle ≤ 16 MiB", mib(bm["idle"]), bm["idle"] <= 16 * 1024))
targets.append(("RSS ≤ 48 MiB through everything", mib(bm["peak"]), bm["peak"] <= 48 * 1024))

# berth on S3 beside berth on the data folder (the table above's medians).
s3_rows = []
if berth_s3:
    both = dict(dist=berth, berth=berth_s3, rows=s3_rows)
    throughput("push", "push, monolithic", **both)
    throughput("push-chunked", "push, chunked", **both)
    throughput("pull", "pull", **both)
    requests("manifest-get", "manifest GET by tag", **both)
    requests("blob-head", "blob HEAD", **both)
    small_pushes(berth, berth_s3, s3_rows, "small pushes, each stored")
    catalog(berth, berth_s3, s3_rows)
    dm, bm = berth["rss_kib"], berth_s3["rss_kib"]
    s3_rows.append(("RSS idle (after start-up)", mib(dm["idle"]), mib(bm["idle"]), ratio(bm["idle"], dm["idle"])))
    s3_rows.append(("RSS peak through the run (VmHWM)", mib(dm["peak"]), mib(bm["peak"]), ratio(bm["peak"], dm["peak"])))

out = []
w = out.append
w("# Benchmarks\n")
w("berth against Debian's `docker-registry` package (the CNCF distribution registry, what")
w("MicroK8s and minikube run), both serving a fresh data folder on the same disk over")
w("loopback, measured in the same run by `berth bench` (every answer's status, digest and")
w("bytes checked). Written by `bench/run.sh`; run it to refresh this file.\n")
w("## Machine\n")
w(f"- date: {machine['date']}")
w(f"- CPU: {machine['cpu']}, {machine['cores']} cores; memory {machine['memory_gib']} GiB; kernel {machine['kernel']}")
w(f"- data folders on: {machine['filesystem']}")
w(f"- berth: {berth_version} (commit {machine['commit']}, {machine['rustc']}, release profile)")
w(f"- distribution: {machine['distribution']} (Debian package {machine['distribution_package']})")
w(f"- sha256 on one core (`openssl speed -evp sha256`, 16 KiB blocks): {rate(sha)}")
w(f"- durable write (`dd bs=1M count=1024 conv=fdatasync`, before the rounds and after each): "
  + ", ".join(rate(x) for x in dd) + f"; median {rate(dd_median)}")
w(f"- so a durable push can go at most about min(sha256, dd) = {rate(min(sha, dd_median))}; the target is 70% of it, {rate(ceiling)}")
if extra.strip():
    w(f"- `berth bench` arguments: `{extra}`")
w("")
def table(header, rows):
    w("| " + " | ".join(header) + " |")
    w("|" + "---|" * len(header))
    for r in rows:
        w("| " + " | ".join(r) + " |")
    w("")


w("## Results\n")
table(("scenario", "distribution", "berth", "berth / distribution"), rows)
w("## Targets (issue 8)\n")
w("| target | berth | met |")
w("|---|---|---|")
for label, value, ok in targets:
    w(f"| {label} | {value} | {yes(ok)} |")
met = sum(ok for *_, ok in targets)
w(f"\n{met} of {len(targets)} targets met in this run (medians).\n")
if s3_rows:
    w("## berth on object storage (S3)\n")
    w(f"The same scenarios with berth on a bucket of {s3_server} on loopback (a real S3 server,")
    w("SigV4, which keeps each object as a file on the disk above): `berth serve --storage")
    w("s3://berth --storage-option endpoint=…`, beside berth on the data folder (the medians")
    w("above). Each scenario ran once, after the rounds above. A push is answered once the S3")
    w("server has stored the object; how durable that is, is the S3 server's to say. Every")
    w("request is one or more HTTP requests to the S3 server, so these figures are mostly")
    w("its own. distribution is not in this table: its `s3` driver lists multipart uploads")
    w("at each blob commit, which s3s-fs does not implement (it answers 501).\n")
    table(("scenario", "berth, data folder", "berth, S3", "S3 / data folder"), s3_rows)
ui_rows = [
    (label, f"{s['latency']['p50_ms']:.1f} ms", f"{s['latency']['p99_ms']:.1f} ms", yes(s["latency"]["p99_ms"] < 100))
    for name, label in UI_PAGES.items()
    if (s := scenario(berth, name))
]
if ui_rows:
    w("## berth's web UI\n")
    w("How long each page takes to render, on the registry above once it holds 1,000 more")
    w("repositories of 10 tags each (distinct manifests of one config): 50 GETs one after")
    w("another, each checked to be the page. The target is well under 100 ms (issue 22).\n")
    table(("page", "p50", "p99", "p99 under 100 ms"), ui_rows)
w("## What each scenario does (sizes and counts of this run)\n")
for name in KEYS:
    s, ds = scenario(berth, name), scenario(dist, name)
    if not s:
        continue
    w(f"- **{s['name']}**: {s['description']}")
    if ds and ds["description"] != s["description"]:
        w(f"  (distribution: {ds['description']})")
w("")
w("The pull-through rows are measured on their own caches, each mirroring one upstream")
w("berth: berth as `berth serve --proxy up.test=UPSTREAM` (the image is `up.test/REPO`),")
w("distribution in its proxy mode (`proxy: remoteurl: UPSTREAM`, the image at its root).")
w("The clients pull at once, as nodes do when a DaemonSet rolls out; a cold pull is each")
w("cache's first, while it fetches from the upstream, and the upstream row is the same")
w("pulls straight from it (a berth both times), so the two figures of that row show how")
w("steady the machine was. Memory figures are of the two registries above, not the caches.")
w("")
w("Memory is read from `/proc/PID/status` of each registry: VmRSS once it answers and")
w("before any request, VmHWM (the peak) and VmRSS after the run.")
w("")
w("The durable writes of a shared virtual disk vary by 2× and more from one minute to the")
w("next, so push, push-chunked and small-push ran in rounds that alternate the two")
w("registries scenario by scenario (each with `sync` before it, so no registry pays for")
w("pages another left unwritten); the table shows each one's median run and, in")
w("brackets, the slowest and fastest. The other scenarios ran once each. The durable-push")
w("ceiling uses the median of the dd runs (one before the rounds, one after each).")
w("Both fsync before answering a push: distribution each file it writes (about 11 fsyncs")
w("per small push, by strace); berth three: the data, then the folders of the blob and of")
w("the repository's link (the 256 sha256 prefix folders are made at start-up, so a push")
w("never syncs a fourth). Each fsync waits for the disk to flush its cache (0.2–0.3 ms")
w("here, by strace); those waits, one push at a time, are what bounds the small-push")
w("rate. berth writes the body of a large upload with direct")
w("I/O (`O_DIRECT`) where the file system allows it, past the page cache, whose writeback is")
w("the slow part of a durable write on this disk (dd with `oflag=direct` sustains about three")
w("times the buffered figure here): so its pushes can go faster than the dd line, which is")
w("buffered. The blob a push wrote that way is not in the page cache afterwards; pull reads")
w("it once untimed, so that both registries are measured serving a blob from memory.")
print("\n".join(out))
