//! The Docker image, checked without a Docker engine: the `Dockerfile` is
//! parsed and its instructions asserted (base images, the locked build with
//! its dependency layer first, non-root user, ports, volume, health check,
//! command); `.dockerignore` and `compose.yaml` are read; the dependency
//! layer's placeholder step runs as written over the real manifests; and the
//! image's command and health check run as written (the test build's
//! `midge` in place of the image's, the baked configuration copied to a
//! temporary directory with free ports) against real clients, with and
//! without certificates mounted.
//!
//! `cargo test -p midge-broker --test ops_docker -- --ignored` also runs
//! both build steps exactly as the Dockerfile writes them (a release build
//! from scratch: minutes).

#[path = "ops_support.rs"]
mod support;

#[path = "security_support.rs"]
mod pki;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use midge_protocol::{ConnectReturnCode, QoS};
use support::*;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One Dockerfile instruction: its keyword (upper case) and its arguments,
/// continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    keyword: String,
    args: String,
}

/// Parses a Dockerfile: comments dropped, `\` continuations joined.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').expect("KEYWORD args");
                out.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    args: args.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "a continuation at the end of the file");
    out
}

/// The Dockerfile's stages, each starting with its FROM.
fn stages() -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for i in parse_dockerfile(&read("Dockerfile")) {
        if i.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("FROM first").push(i);
    }
    stages
}

/// An exec-form (JSON array) argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form: {args}: {e}"))
}

fn find<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a Instruction> {
    stage.iter().filter(|i| i.keyword == keyword).collect()
}

const BUILD: &str = "cargo build --release --locked -p midge-broker";

/// The builder stage's positions of: the dependency build, `COPY . .`, and
/// the final build.
fn build_steps(stage: &[Instruction]) -> (usize, usize, usize) {
    let builds: Vec<usize> = (0..stage.len())
        .filter(|&i| stage[i].keyword == "RUN" && stage[i].args.contains(BUILD))
        .collect();
    assert_eq!(builds.len(), 2, "two builds: dependencies, then sources");
    let copy_all = (0..stage.len())
        .find(|&i| stage[i].keyword == "COPY" && stage[i].args == ". .")
        .expect("COPY . .");
    (builds[0], copy_all, builds[1])
}

/// The workspace members' manifests, root first.
fn manifests() -> Vec<String> {
    let root: toml::Table = toml::from_str(&read("Cargo.toml")).expect("root manifest");
    let members = root["workspace"]["members"].as_array().expect("members");
    let mut out = vec!["Cargo.toml".to_owned()];
    out.extend(
        members
            .iter()
            .map(|m| format!("{}/Cargo.toml", m.as_str().expect("member"))),
    );
    out
}

/// The source paths of the COPY instructions before `upto` (sources first,
/// destination last).
fn copied_before(stage: &[Instruction], upto: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in &stage[..upto] {
        if i.keyword == "COPY" {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            let (sources, _dest) = words.split_at(words.len() - 1);
            let sources = sources.iter().filter(|w| !w.starts_with("--"));
            out.extend(sources.map(|s| s.to_string()));
        }
    }
    out
}

#[test]
fn the_image_is_built_by_the_official_rust_image_from_the_lock_file_dependencies_first() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "a builder and a runtime stage");
    let build = &stages[0];
    assert_eq!(build[0].args, "rust:1-bookworm AS build");
    let (deps, copy_all, sources) = build_steps(build);
    assert!(deps < copy_all && copy_all < sources);
    // The dependency layer sees manifests, the lock file and the placeholder
    // script: nothing that changes with the sources.
    let copied = copied_before(build, deps);
    for manifest in manifests() {
        assert!(
            copied.contains(&manifest),
            "{manifest} not copied: {copied:?}"
        );
    }
    assert!(copied.contains(&"Cargo.lock".to_owned()), "{copied:?}");
    for source in &copied {
        let allowed = source.ends_with("Cargo.toml")
            || source == "Cargo.lock"
            || source == "docker/stub-workspace.sh";
        assert!(allowed, "{source} copied before the dependency build");
    }
    assert!(build[deps].args.contains("docker/stub-workspace.sh"));
}

#[test]
fn the_runtime_is_slim_non_root_and_declares_ports_volume_health_check_and_command() {
    let stages = stages();
    let run = stages.last().expect("a runtime stage");
    let base = &run[0].args;
    assert!(
        base == "debian:bookworm-slim" || base.starts_with("gcr.io/distroless/cc"),
        "{base}"
    );
    let user = &find(run, "USER").last().expect("a USER").args;
    let name = user.split(':').next().expect("user");
    assert!(!["root", "0", ""].contains(&name), "runs as {user}");

    let ports: BTreeSet<&str> = find(run, "EXPOSE")
        .iter()
        .flat_map(|i| i.args.split_whitespace())
        .collect();
    assert_eq!(ports, BTreeSet::from(["1883", "8883", "9100"]));
    let volumes: Vec<&str> = find(run, "VOLUME")
        .iter()
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        volumes.contains(&"/data") || volumes.contains(&"[\"/data\"]"),
        "{volumes:?}"
    );

    let health = &find(run, "HEALTHCHECK").last().expect("a HEALTHCHECK").args;
    let (_options, command) = health.split_once("CMD ").expect("HEALTHCHECK ... CMD");
    assert_eq!(exec_form(command)[..2], ["midge", "health"]);
    let cmd = exec_form(&find(run, "CMD").last().expect("a CMD").args);
    assert_eq!(cmd, ["midge", "--config", "/etc/midge/broker.toml"]);

    let copies: Vec<&str> = find(run, "COPY").iter().map(|i| i.args.as_str()).collect();
    assert!(
        copies.contains(&"docker/broker.toml /etc/midge/broker.toml"),
        "{copies:?}"
    );
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=build") && c.ends_with("/usr/local/bin/midge")),
        "{copies:?}"
    );
}

#[test]
fn dockerignore_keeps_build_output_and_secrets_out_of_the_context() {
    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for pattern in ["target/", "**/target/", "certs/", "data/", ".git/"] {
        assert!(lines.contains(&pattern), "{pattern} not ignored");
    }
    // What the build needs is not ignored.
    for needed in ["docker", "broker", "Cargo.lock"] {
        assert!(!lines.iter().any(|l| l.starts_with(needed)), "{needed}");
    }
}

#[test]
fn compose_runs_the_image_with_both_ports_mounts_restart_and_the_health_check() {
    let compose = read("compose.yaml");
    for needed in [
        "build: .",
        "\"1883:1883\"",
        "\"8883:8883\"",
        ":9100\"",
        "restart: unless-stopped",
        ":/etc/midge/broker.toml:ro",
        ":/etc/midge/certs:ro",
        "midge-data:/data",
        "healthcheck:",
        "[\"CMD\", \"midge\", \"health\"",
    ] {
        assert!(compose.contains(needed), "compose.yaml lacks {needed}");
    }
}

#[test]
fn the_baked_config_listens_on_1883_optionally_8883_with_tls_and_keeps_data_on_the_volume() {
    let config = midge_broker::config::load_file(&root().join("docker/broker.toml"))
        .expect("the baked config loads");
    let binds: Vec<String> = config
        .listeners
        .iter()
        .map(|l| l.bind.to_string())
        .collect();
    assert_eq!(binds, ["0.0.0.0:1883", "0.0.0.0:8883"]);
    assert!(config.listeners[0].tls.is_none());
    let tls = config.listeners[1].tls.as_ref().expect("TLS on 8883");
    assert_eq!(tls.cert, Path::new("/etc/midge/certs/server.crt"));
    assert_eq!(tls.key, Path::new("/etc/midge/certs/server.key"));
    assert!(config.listeners[1].optional);
    assert_eq!(
        config.metrics.bind,
        Some("0.0.0.0:9100".parse().expect("addr"))
    );
    assert!(config.persistence.enabled);
    assert_eq!(config.persistence.dir, Path::new("/data"));
}

/// Copies what the Dockerfile copies before its dependency build into a
/// temporary directory and runs that RUN's steps before `cargo build`.
fn dependency_layer() -> (tempfile::TempDir, String) {
    let stages = stages();
    let build = &stages[0];
    let (deps, _, _) = build_steps(build);
    let dir = tempfile::tempdir().expect("tempdir");
    for source in copied_before(build, deps) {
        let to = dir.path().join(&source);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(root().join(&source), &to).unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    let run = build[deps].args.clone();
    let (prepare, cargo) = run
        .split_once(&format!("&& {BUILD}"))
        .expect("steps && build");
    let status = std::process::Command::new("sh")
        .args(["-c", prepare])
        .current_dir(dir.path())
        .status()
        .expect("run sh");
    assert!(status.success(), "{prepare}");
    (dir, format!("{BUILD}{cargo}"))
}

#[test]
fn the_dependency_layer_gives_cargo_a_whole_workspace_from_manifests_alone() {
    let (dir, _) = dependency_layer();
    // What `cargo build --locked` does first: read every manifest (each
    // target's file must exist) and check the lock file against them.
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .current_dir(dir.path())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "a release build from scratch: minutes"]
fn both_build_steps_run_as_written() {
    let (dir, deps_build) = dependency_layer();
    let target = dir.path().join("target");
    let sh = |script: &str, cwd: &Path| {
        let status = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(cwd)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run sh");
        assert!(status.success(), "{script}");
    };
    sh(&deps_build, dir.path());
    // COPY . . (minus what .dockerignore keeps out), then the final RUN.
    let copy = format!(
        "tar -C {} --exclude=./target --exclude=./.git --exclude=./fuzz -cf - . | tar -xf -",
        root().display()
    );
    sh(&copy, dir.path());
    let stages = stages();
    let (_, _, sources) = build_steps(&stages[0]);
    sh(&stages[0][sources].args, dir.path());
    let help = std::process::Command::new(target.join("release/midge"))
        .args(["health", "--help"])
        .output()
        .expect("run the built midge");
    assert!(help.status.success());
}

/// The image's CMD and HEALTHCHECK, with `midge` and the baked config's path
/// replaced, and the baked config rewritten to free loopback ports, `certs`
/// for /etc/midge/certs and `data` for /data, all in a temporary directory.
struct Image {
    dir: tempfile::TempDir,
    cmd: Vec<String>,
    health: Vec<String>,
    mqtt: u16,
    tls: u16,
    metrics: u16,
}

impl Image {
    fn new() -> Image {
        let stages = stages();
        let run = stages.last().expect("runtime stage");
        let dir = tempfile::tempdir().expect("tempdir");
        let (mqtt, tls, metrics) = (free_port(), free_port(), free_port());
        let certs = dir.path().join("certs");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&certs).expect("mkdir certs");
        std::fs::create_dir_all(&data).expect("mkdir data");
        let mut baked = read("docker/broker.toml");
        let rewrites = [
            ("\"0.0.0.0:1883\"", format!("\"127.0.0.1:{mqtt}\"")),
            ("\"0.0.0.0:8883\"", format!("\"127.0.0.1:{tls}\"")),
            ("\"0.0.0.0:9100\"", format!("\"127.0.0.1:{metrics}\"")),
            ("\"/etc/midge/certs/", format!("\"{}/", certs.display())),
            ("dir = \"/data\"", format!("dir = \"{}\"", data.display())),
        ];
        for (from, to) in rewrites {
            assert!(baked.contains(from), "the baked config lost {from}");
            baked = baked.replace(from, &to);
        }
        let config = dir.path().join("broker.toml");
        std::fs::write(&config, baked).expect("write config");
        let rewrite = |args: Vec<String>| -> Vec<String> {
            assert_eq!(args[0], "midge");
            let config = config.display().to_string();
            let swap = |a: String| {
                if a == "/etc/midge/broker.toml" {
                    config.clone()
                } else {
                    a
                }
            };
            args.into_iter().skip(1).map(swap).collect()
        };
        let cmd = exec_form(&find(run, "CMD").last().expect("CMD").args);
        let health = &find(run, "HEALTHCHECK").last().expect("HEALTHCHECK").args;
        let health = exec_form(health.split_once("CMD ").expect("CMD").1);
        Image {
            cmd: rewrite(cmd),
            health: rewrite(health),
            dir,
            mqtt,
            tls,
            metrics,
        }
    }

    /// WORKDIR /data.
    fn workdir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn start(&self) -> tokio::process::Child {
        spawn_midge(&self.cmd, &self.workdir(), self.mqtt).await
    }

    /// Runs the HEALTHCHECK command plus `extra`; (exit code, stdout + stderr).
    async fn health(&self, extra: &[&str]) -> (Option<i32>, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_midge"))
            .args(&self.health)
            .args(extra)
            .current_dir(self.workdir())
            .output()
            .await
            .expect("run midge health");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    }
}

async fn stop(child: tokio::process::Child) -> String {
    terminate(&child);
    let out = tokio::time::timeout(Duration::from_secs(6), child.wait_with_output())
        .await
        .expect("midge stops within 6 s")
        .expect("output");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_image_command_serves_clients_and_passes_its_health_check() {
    let image = Image::new();
    let child = image.start().await;
    let addr = ([127, 0, 0, 1], image.mqtt).into();
    let mut sub = Mqtt::connect(addr, "device-sub", true).await;
    sub.subscribe("devices/+/temp", QoS::AtLeastOnce).await;
    let mut device = Mqtt::connect(addr, "device-1", true).await;
    device
        .publish("devices/1/temp", b"21.5", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&sub.receive().await.payload[..], b"21.5");

    let (code, text) = image.health(&[]).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("ok: mqtt 127.0.0.1:{}", image.mqtt)),
        "{text}"
    );
    let (code, text) = image.health(&["--metrics"]).await;
    assert_eq!(code, Some(0), "{text}");
    let http = ([127, 0, 0, 1], image.metrics).into();
    assert_eq!(get(http, "/health").await.status, 200);
    let s = scrape(http).await;
    assert_eq!(
        s.get("midge_listeners_up"),
        1,
        "no certificates: no TLS listener"
    );
    // Without certificates nothing listens on the TLS port.
    let tls_addr = ("127.0.0.1", image.tls);
    assert!(tokio::net::TcpStream::connect(tls_addr).await.is_err());

    let logs = stop(child).await;
    assert!(logs.contains("skipped"), "{logs}");
    let (code, text) = image.health(&["--timeout", "1"]).await;
    assert_eq!(code, Some(1), "unhealthy once stopped: {text}");
}

#[tokio::test]
async fn with_certificates_mounted_the_image_command_also_serves_tls_on_its_second_port() {
    let image = Image::new();
    let pki = pki::Pki::new();
    for file in ["server.crt", "server.key"] {
        let to = image.dir.path().join("certs").join(file);
        std::fs::copy(pki.path(file), to).expect("mount the certificates");
    }
    let child = image.start().await;
    let tls_addr = ([127, 0, 0, 1], image.tls).into();
    let config = pki.client(&rustls::version::TLS13, None);
    let mut client = pki::tls(tls_addr, config).await.expect("TLS handshake");
    let code = client.connect("tls-device", None, None).await;
    assert_eq!(code, Some(ConnectReturnCode::Accepted));
    assert!(client.ping().await);
    let s = scrape(([127, 0, 0, 1], image.metrics).into()).await;
    assert_eq!(s.get("midge_listeners_up"), 2);
    let (code, text) = image.health(&[]).await;
    assert_eq!(code, Some(0), "{text}");
    let logs = stop(child).await;
    assert!(!logs.contains("skipped"), "{logs}");
}
