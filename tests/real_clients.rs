//! Real clients against berth: skopeo, podman, buildah, containerd's ctr, docker
//! and oras push and pull through the registry over loopback, with images built
//! offline. Each test starts what it needs (berth, containerd, dockerd) in a temp
//! folder and stops it at the end. A client that is not installed skips the test
//! with a message, except in CI (`CI` set), where `.ci/run` installs them all and
//! a missing one is a failure.

mod common;

use common::daemons::{containerd, dockerd, need, run, succeeds};
use common::{Request, Server};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// GET with every manifest type accepted; returns (status, body).
fn get(url: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Accept: {ACCEPT_ALL}"),
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .unwrap();
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&body[split + 1..]).parse().unwrap();
    body.truncate(split);
    (status, body)
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// A two-platform OCI layout written by `tests/tools/make_oci_layout.py`.
struct Layout {
    dir: PathBuf,
    index: String,
    /// Child manifest digest by architecture.
    platforms: BTreeMap<String, String>,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/make_oci_layout.py"
        );
        let index = run("python3", &[script, dir.to_str().unwrap(), "v1"])
            .trim()
            .to_owned();
        let layout = Layout {
            dir: dir.to_owned(),
            index,
            platforms: BTreeMap::new(),
        };
        let index_json = json(&layout.blob(&layout.index));
        let platforms = index_json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["platform"]["architecture"].as_str().unwrap().to_owned(),
                    m["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        Layout {
            platforms,
            ..layout
        }
    }

    fn blob(&self, d: &str) -> Vec<u8> {
        std::fs::read(
            self.dir
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    }

    fn oci(&self) -> String {
        format!("oci:{}:v1", self.dir.display())
    }

    /// Config and layer digests of one platform's image.
    fn blobs_of(&self, arch: &str) -> Vec<String> {
        let m = json(&self.blob(&self.platforms[arch]));
        std::iter::once(&m["config"])
            .chain(m["layers"].as_array().unwrap())
            .map(|d| d["digest"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The requests logged after the first `skip`.
fn since(server: &Server, skip: usize) -> Vec<Request> {
    server.requests().into_iter().skip(skip).collect()
}

/// Upload sessions started and monolithic uploads (not mounts) in `requests`.
fn uploads(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/blobs/uploads/") && r.status == 202)
        .count()
}

/// The index tagged v1 in `repo` lists amd64 and arm64, and every manifest and
/// blob under it is served intact.
fn assert_two_platforms(host: &str, repo: &str) {
    let (status, raw) = get(&format!("http://{host}/v2/{repo}/manifests/v1"));
    assert_eq!(status, 200, "{repo}:v1");
    let index = json(&raw);
    let children = index["manifests"].as_array().unwrap();
    let mut archs: Vec<&str> = children
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort();
    assert_eq!(archs, ["amd64", "arm64"]);
    for child in children {
        let child_digest = child["digest"].as_str().unwrap();
        let (status, raw) = get(&format!("http://{host}/v2/{repo}/manifests/{child_digest}"));
        assert_eq!((status, digest(&raw).as_str()), (200, child_digest));
        let manifest = json(&raw);
        for blob in
            std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap())
        {
            let blob_digest = blob["digest"].as_str().unwrap();
            let (status, bytes) = get(&format!("http://{host}/v2/{repo}/blobs/{blob_digest}"));
            assert_eq!((status, digest(&bytes).as_str()), (200, blob_digest));
        }
    }
}
#[test]
fn skopeo_copies_lists_mounts_and_deletes() {
    if !need("skopeo", &["skopeo", "python3", "curl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let host = server.addr().to_owned();
    let layout = Layout::new(&dir.path().join("layout"));
    let reg = |repo: &str| format!("docker://{host}/{repo}");

    // The two-platform index, out and back: same digests, same bytes.
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &layout.oci(),
            &reg("skopeo/multi:v1"),
        ],
    );
    let back = dir.path().join("back");
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &reg("skopeo/multi:v1"),
            &format!("oci:{}:v1", back.display()),
        ],
    );
    let back_index = json(&std::fs::read(back.join("index.json")).unwrap());
    assert_eq!(back_index["manifests"][0]["digest"], layout.index.as_str());
    for entry in std::fs::read_dir(layout.dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let copy = std::fs::read(back.join("blobs/sha256").join(entry.file_name())).unwrap();
        assert_eq!(
            copy,
            std::fs::read(entry.path()).unwrap(),
            "{:?} differs",
            entry.file_name()
        );
    }

    // One platform: the host's.
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &layout.oci(),
            &reg("skopeo/single:v1"),
        ],
    );
    let (status, raw) = get(&format!("http://{host}/v2/skopeo/single/manifests/v1"));
    assert_eq!(status, 200);
    assert_eq!(digest(&raw), layout.platforms["amd64"]);

    // A second image sharing the big layer: only its own blobs travel.
    let second = Layout::new(&dir.path().join("second"));
    let mark = server.requests().len();
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &second.oci(),
            &reg("skopeo/single:v2"),
        ],
    );
    let shared = &layout.blobs_of("amd64")[1];
    assert_eq!(
        shared,
        &second.blobs_of("amd64")[1],
        "the layouts share their first layer"
    );
    assert_eq!(
        uploads(&since(&server, mark)),
        2,
        "config and own layer only: {:#?}",
        since(&server, mark)
    );

    // Copy between repositories of the same registry: skopeo mounts.
    let mark = server.requests().len();
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &reg("skopeo/multi:v1"),
            &reg("skopeo/mounted:v1"),
        ],
    );
    let mounted = since(&server, mark)
        .iter()
        .filter(|r| r.method == "POST" && r.status == 201)
        .count();
    assert!(
        mounted >= 3,
        "no cross-repository mount: {:#?}",
        since(&server, mark)
    );
    let (status, bytes) = get(&format!("http://{host}/v2/skopeo/mounted/blobs/{shared}"));
    assert_eq!((status, digest(&bytes)), (200, shared.clone()));

    let tags = json(
        run(
            "skopeo",
            &["list-tags", "--tls-verify=false", &reg("skopeo/single")],
        )
        .as_bytes(),
    );
    assert_eq!(tags["Tags"], serde_json::json!(["v1", "v2"]));

    // skopeo deletes by digest; a DELETE by tag removes only the tag.
    run(
        "skopeo",
        &["delete", "--tls-verify=false", &reg("skopeo/single:v2")],
    );
    let (status, _) = get(&format!("http://{host}/v2/skopeo/single/manifests/v2"));
    assert_eq!(status, 404);
    run(
        "curl",
        &[
            "-sf",
            "-X",
            "DELETE",
            &format!("http://{host}/v2/skopeo/single/manifests/v1"),
        ],
    );
    let tags = json(
        run(
            "skopeo",
            &["list-tags", "--tls-verify=false", &reg("skopeo/single")],
        )
        .as_bytes(),
    );
    assert_eq!(tags["Tags"], serde_json::json!([]));
    let (status, _) = get(&format!(
        "http://{host}/v2/skopeo/single/manifests/{}",
        layout.platforms["amd64"]
    ));
    assert_eq!(status, 200, "the manifest outlives its tag");
}

#[test]
fn containerd_pulls_each_platform_and_pushes_back() {
    if !need(
        "containerd",
        &["containerd", "ctr", "skopeo", "python3", "curl"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let host = server.addr().to_owned();
    let layout = Layout::new(&dir.path().join("layout"));
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &layout.oci(),
            &format!("docker://{host}/ctr/multi:v1"),
        ],
    );
    let (_containerd, socket) = containerd(dir.path());
    let ctr = |args: &[&str]| run("ctr", &[&["-a", socket.as_str()], args].concat());
    let image = format!("{host}/ctr/multi:v1");

    // As a kubelet: one platform at a time, every layer of that platform fetched.
    for arch in ["arm64", "amd64"] {
        ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--platform",
            &format!("linux/{arch}"),
            &image,
        ]);
        for blob in layout.blobs_of(arch) {
            let content = Command::new("ctr")
                .args(["-a", &socket, "content", "get", &blob])
                .output()
                .unwrap();
            assert_eq!(
                digest(&content.stdout),
                blob,
                "{arch}: {blob} not fetched intact"
            );
        }
        ctr(&["images", "rm", &image]);
    }

    // Push the whole index to another repository (containerd mounts what it can).
    ctr(&["images", "pull", "--plain-http", "--all-platforms", &image]);
    let pushed = format!("{host}/ctr/pushed:v1");
    ctr(&["images", "tag", &image, &pushed]);
    let mark = server.requests().len();
    ctr(&["images", "push", "--plain-http", &pushed]);
    let mounts = since(&server, mark)
        .iter()
        .filter(|r| r.method == "POST" && r.status == 201)
        .count();
    assert!(
        mounts >= 1,
        "containerd did not mount: {:#?}",
        since(&server, mark)
    );
    let (status, raw) = get(&format!("http://{host}/v2/ctr/pushed/manifests/v1"));
    assert_eq!((status, digest(&raw)), (200, layout.index.clone()));

    // A single platform push.
    let single = format!("{host}/ctr/single:v1");
    ctr(&["images", "tag", &image, &single]);
    ctr(&[
        "images",
        "push",
        "--plain-http",
        "--platform",
        "linux/arm64",
        &single,
    ]);
    let (status, raw) = get(&format!("http://{host}/v2/ctr/single/manifests/v1"));
    assert_eq!(status, 200);
    let children = json(&raw)["manifests"].as_array().map_or(0, Vec::len);
    assert!(
        digest(&raw) == layout.platforms["arm64"] || children >= 1,
        "unexpected {}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn docker_pushes_pulls_and_shares_layers() {
    if !need(
        "docker",
        &[
            "dockerd",
            "docker",
            "containerd",
            "ctr",
            "skopeo",
            "python3",
            "curl",
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let host = server.addr().to_owned();
    let layout = Layout::new(&dir.path().join("layout"));
    let d = dir.path();
    let (_daemons, docker_socket) = dockerd(d);
    let docker = |args: &[&str]| run("docker", &[&["-H", docker_socket.as_str()], args].concat());
    // docker gets its images from archives that skopeo writes.
    let load = |layout: &Layout, arch: &str, name: &str| {
        let archive = d.join(format!("{}.tar", name.replace(['/', ':'], "_")));
        run(
            "skopeo",
            &[
                "copy",
                "--override-arch",
                arch,
                &layout.oci(),
                &format!("docker-archive:{}:{name}", archive.display()),
            ],
        );
        docker(&["load", "-i", archive.to_str().unwrap()]);
    };

    let app = format!("{host}/docker/app:v1");
    load(&layout, "amd64", &app);
    let out = docker(&["push", &app]);
    let pushed = out
        .split("digest: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (status, raw) = get(&format!("http://{host}/v2/docker/app/manifests/v1"));
    assert_eq!((status, digest(&raw)), (200, pushed.clone()));
    for layer in json(&raw)["layers"].as_array().unwrap() {
        let (status, bytes) = get(&format!(
            "http://{host}/v2/docker/app/blobs/{}",
            layer["digest"].as_str().unwrap()
        ));
        assert_eq!(
            (status, digest(&bytes)),
            (200, layer["digest"].as_str().unwrap().to_owned())
        );
    }
    docker(&["rmi", &app]);
    docker(&["pull", &app]);
    let repo_digests = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &app,
    ]);
    assert!(repo_digests.contains(&pushed), "{repo_digests}");

    // A second image sharing a layer: docker says "Layer already exists".
    let second = Layout::new(&d.join("second"));
    let v2 = format!("{host}/docker/app:v2");
    load(&second, "amd64", &v2);
    let mark = server.requests().len();
    docker(&["push", &v2]);
    assert_eq!(
        uploads(&since(&server, mark)),
        2,
        "shared layer uploaded again: {:#?}",
        since(&server, mark)
    );

    // A two-platform list made by `docker manifest`, which mounts across repositories.
    let arm = format!("{host}/docker/arm:v1");
    load(&layout, "arm64", &arm);
    docker(&["push", &arm]);
    let multi = format!("{host}/docker/multi:v1");
    docker(&["manifest", "create", "--insecure", &multi, &app, &arm]);
    docker(&["manifest", "push", "--insecure", &multi]);
    let (status, raw) = get(&format!("http://{host}/v2/docker/multi/manifests/v1"));
    assert_eq!(status, 200);
    let list = json(&raw);
    let archs: Vec<&str> = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let inspected = json(docker(&["manifest", "inspect", "--insecure", &multi]).as_bytes());
    assert_eq!(inspected["manifests"][0]["digest"], pushed.as_str());
}

#[test]
fn podman_and_buildah_push_images_and_indexes() {
    if !need(
        "podman/buildah",
        &["podman", "buildah", "skopeo", "python3", "curl"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let host = server.addr().to_owned();
    let layout = Layout::new(&dir.path().join("layout"));
    let store = |tool: &str| {
        vec![
            "--root".to_owned(),
            dir.path()
                .join(format!("{tool}-root"))
                .display()
                .to_string(),
            "--runroot".to_owned(),
            dir.path().join(format!("{tool}-run")).display().to_string(),
            "--storage-driver".to_owned(),
            "vfs".to_owned(),
        ]
    };
    let tool = |name: &str, args: &[&str]| {
        let mut all = store(name);
        all.extend(args.iter().map(|a| a.to_string()));
        run(name, &all.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // podman: a loaded image, then a two-platform list with `manifest push --all`.
    // (`podman pull oci:DIR` would name the image after the temp folder's path.)
    let archive = dir.path().join("app.tar");
    run(
        "skopeo",
        &[
            "copy",
            &layout.oci(),
            &format!("docker-archive:{}:localhost/app:v1", archive.display()),
        ],
    );
    tool("podman", &["load", "-q", "-i", archive.to_str().unwrap()]);
    tool(
        "podman",
        &[
            "push",
            "--tls-verify=false",
            "localhost/app:v1",
            &format!("docker://{host}/podman/app:v1"),
        ],
    );
    tool("podman", &["rmi", "-a", "-f"]);
    tool(
        "podman",
        &[
            "pull",
            "--tls-verify=false",
            &format!("{host}/podman/app:v1"),
        ],
    );
    let (status, raw) = get(&format!("http://{host}/v2/podman/app/manifests/v1"));
    assert_eq!(status, 200);
    let pulled = tool(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("{host}/podman/app:v1"),
        ],
    );
    assert_eq!(pulled.trim(), digest(&raw));
    tool("podman", &["manifest", "create", "plist"]);
    tool(
        "podman",
        &["manifest", "add", "--all", "plist", &layout.oci()],
    );
    tool(
        "podman",
        &[
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            "plist",
            &format!("docker://{host}/podman/multi:v1"),
        ],
    );
    assert_two_platforms(&host, "podman/multi");
    let tags = json(&get(&format!("http://{host}/v2/podman/app/tags/list")).1);
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // buildah: from scratch, then a two-platform build of a FROM scratch Containerfile.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello from buildah\n").unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    let container = tool("buildah", &["from", "scratch"]).trim().to_owned();
    tool(
        "buildah",
        &[
            "copy",
            &container,
            ctx.join("hello.txt").to_str().unwrap(),
            "/hello.txt",
        ],
    );
    tool("buildah", &["commit", "-q", &container, "bimage"]);
    tool(
        "buildah",
        &[
            "push",
            "--tls-verify=false",
            "bimage",
            &format!("docker://{host}/buildah/app:v1"),
        ],
    );
    let (status, raw) = get(&format!("http://{host}/v2/buildah/app/manifests/v1"));
    assert_eq!(status, 200);
    let layer = json(&raw)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, bytes) = get(&format!("http://{host}/v2/buildah/app/blobs/{layer}"));
    assert_eq!((status, digest(&bytes)), (200, layer));

    tool(
        "buildah",
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "--manifest",
            "blist",
            ctx.to_str().unwrap(),
        ],
    );
    tool(
        "buildah",
        &[
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            "blist",
            &format!("docker://{host}/buildah/multi:v1"),
        ],
    );
    assert_two_platforms(&host, "buildah/multi");
    tool("buildah", &["rmi", "-a", "-f"]);
    tool(
        "buildah",
        &[
            "pull",
            "--tls-verify=false",
            &format!("{host}/buildah/app:v1"),
        ],
    );
}

#[test]
fn oras_pushes_artifacts_found_through_referrers() {
    if !need("oras", &["python3", "skopeo", "curl"]) {
        return;
    }
    if !succeeds("python3", &["-c", "import oras.client"]) {
        if std::env::var_os("CI").is_some() {
            panic!("the oras Python SDK is not installed, but .ci/run installs it");
        }
        eprintln!("SKIPPED oras: the oras Python SDK is not installed (pip install oras)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let host = server.addr().to_owned();
    let layout = Layout::new(&dir.path().join("layout"));
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &layout.oci(),
            &format!("docker://{host}/oras/app:v1"),
        ],
    );
    let subject = layout.platforms["amd64"].clone();
    let size = layout.blob(&subject).len().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/oras_push.py");
    let work = dir.path().to_str().unwrap();
    run(
        "python3",
        &[
            script,
            work,
            &host,
            "oras/app:sbom",
            "application/vnd.berth.test.sbom",
            &subject,
            &size,
        ],
    );
    run(
        "python3",
        &[
            script,
            work,
            &host,
            "oras/notes:v1",
            "application/vnd.berth.test.notes",
            "",
            "",
        ],
    );

    let (status, raw) = get(&format!("http://{host}/v2/oras/app/referrers/{subject}"));
    assert_eq!(status, 200);
    let referrers = json(&raw);
    assert_eq!(referrers["mediaType"], INDEX);
    let found = referrers["manifests"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{referrers}");
    assert_eq!(found[0]["artifactType"], "application/vnd.berth.test.sbom");
    let (status, sbom) = get(&format!("http://{host}/v2/oras/app/manifests/sbom"));
    assert_eq!(
        (status, digest(&sbom)),
        (200, found[0]["digest"].as_str().unwrap().to_owned())
    );
    let (status, notes) = get(&format!("http://{host}/v2/oras/notes/manifests/v1"));
    assert_eq!(status, 200);
    assert_eq!(
        json(&notes)["config"]["mediaType"],
        "application/vnd.berth.test.notes"
    );
}

#[test]
fn clients_log_in_to_a_protected_registry() {
    if !need(
        "login",
        &[
            "skopeo",
            "podman",
            "dockerd",
            "docker",
            "containerd",
            "ctr",
            "python3",
            "curl",
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hash = bcrypt::hash_with_result("s3cret", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(d.join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    let server = Server::start_with(
        &d.join("data"),
        &["--htpasswd", d.join("htpasswd").to_str().unwrap()],
    );
    let host = server.addr().to_owned();
    let layout = Layout::new(&d.join("layout"));
    let target = format!("docker://{host}/private/app:v1");

    // skopeo: refused without credentials, accepted with them.
    let anonymous = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", &layout.oci(), &target])
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "an anonymous push went through"
    );
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            &layout.oci(),
            &target,
        ],
    );
    let wrong = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:wrong",
            &target,
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong password was accepted");

    // containerd pulls with --user, as a kubelet with an image pull secret does.
    let (_containerd, socket) = containerd(&d.join("ctr"));
    let image = format!("{host}/private/app:v1");
    assert!(!succeeds(
        "ctr",
        &["-a", &socket, "images", "pull", "--plain-http", &image]
    ));
    run(
        "ctr",
        &[
            "-a",
            &socket,
            "images",
            "pull",
            "--plain-http",
            "--user",
            "alice:s3cret",
            &image,
        ],
    );

    // podman logs in with its own auth file, then pushes.
    let authfile = d.join("podman-auth.json");
    let podman = |args: &[&str]| {
        let store = [
            "--root",
            &d.join("podman-root").display().to_string(),
            "--runroot",
            &d.join("podman-run").display().to_string(),
            "--storage-driver",
            "vfs",
        ]
        .map(str::to_owned);
        let all: Vec<String> = store
            .into_iter()
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        run(
            "podman",
            &all.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let archive = d.join("app.tar");
    run(
        "skopeo",
        &[
            "copy",
            &layout.oci(),
            &format!("docker-archive:{}:localhost/app:v1", archive.display()),
        ],
    );
    podman(&["load", "-q", "-i", archive.to_str().unwrap()]);
    podman(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        "-u",
        "alice",
        "-p",
        "s3cret",
        &host,
    ]);
    podman(&[
        "push",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        "localhost/app:v1",
        &format!("docker://{host}/private/podman:v1"),
    ]);

    // docker logs in (its config in a temp folder), pushes, logs out, is refused.
    let (_daemons, docker_socket) = dockerd(&d.join("docker"));
    let docker_config = d.join("docker-config");
    let docker = |args: &[&str]| {
        Command::new("docker")
            .env("DOCKER_CONFIG", &docker_config)
            .args(["-H", &docker_socket])
            .args(args)
            .output()
            .unwrap()
    };
    let archive = d.join("docker.tar");
    let pushed = format!("{host}/private/docker:v1");
    run(
        "skopeo",
        &[
            "copy",
            &layout.oci(),
            &format!("docker-archive:{}:{pushed}", archive.display()),
        ],
    );
    assert!(
        docker(&["load", "-i", archive.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        !docker(&["push", &pushed]).status.success(),
        "docker pushed without logging in"
    );
    let login = Command::new("docker")
        .env("DOCKER_CONFIG", &docker_config)
        .args([
            "-H",
            &docker_socket,
            "login",
            "-u",
            "alice",
            "--password-stdin",
            &host,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"s3cret")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        login.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&login.stderr)
    );
    let push = docker(&["push", &pushed]);
    assert!(
        push.status.success(),
        "docker push after login: {}",
        String::from_utf8_lossy(&push.stderr)
    );
    let (status, _) = get(&format!("http://{host}/v2/private/docker/manifests/v1"));
    assert_eq!(status, 401, "the registry answered an anonymous read");
}
