//! Configuration loading: layers, and the messages a person gets when a
//! value is wrong.

use super::*;

/// Loads `file` (written to a temporary `broker.toml`) with `env` as the
/// whole environment and `port` as the flag.
fn load(file: &str, env: &[(&str, &str)], port: Option<u16>) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, file).expect("write");
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load(&LoadOptions {
        file: Some(path),
        env: Some(env.collect()),
        port,
    })
}

fn error(file: &str, env: &[(&str, &str)]) -> String {
    match load(file, env, None) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_defaults_are_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].bind, "0.0.0.0:1883".parse().expect("addr"));
    assert_eq!(c.limits.max_packet_size, 1_048_576);
    assert_eq!(c.limits.max_connections, 100_000);
    assert_eq!(c.limits.max_inflight, 100);
    assert_eq!(c.limits.max_queued_messages, 1000);
    assert_eq!(c.limits.connect_timeout_s, 10);
    assert_eq!(c.limits.max_topic_levels, 200);
    assert_eq!(c.limits.max_subscriptions, 10_000);
    assert_eq!(c.sys.interval_s, 10);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.validate("defaults").map_err(|e| e.to_string()), Ok(()));
}

#[test]
fn the_repository_broker_toml_sets_exactly_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker.toml");
    let from_file = load_file(&path).expect("broker.toml loads");
    assert_eq!(from_file, Config::default());
}

#[test]
fn an_empty_file_gives_the_defaults() {
    assert_eq!(load("", &[], None).expect("loads"), Config::default());
}

#[test]
fn a_file_value_overrides_its_default_and_leaves_the_rest() {
    let c = load("[limits]\nmax_inflight = 7\n", &[], None).expect("loads");
    assert_eq!(c.limits.max_inflight, 7);
    assert_eq!(c.limits.max_queued_messages, 1000);
    assert_eq!(c.listeners, Config::default().listeners);
}

#[test]
fn listeners_in_the_file_replace_the_default_listener() {
    let file = "[[listeners]]\nbind = \"127.0.0.1:1884\"\n[[listeners]]\nbind = \"[::1]:1885\"\n";
    let c = load(file, &[], None).expect("loads");
    let binds: Vec<String> = c.listeners.iter().map(|l| l.bind.to_string()).collect();
    assert_eq!(binds, vec!["127.0.0.1:1884", "[::1]:1885"]);
}

#[test]
fn the_environment_overrides_the_file_and_the_port_flag_overrides_both() {
    let file = "[[listeners]]\nbind = \"127.0.0.1:1111\"\n[limits]\nmax_inflight = 3\n";
    let env = [
        ("MIDGE_LIMITS__MAX_INFLIGHT", "9"),
        ("MIDGE_LOG__LEVEL", "debug"),
        ("MIDGE_SYS__INTERVAL_S", "0"),
    ];
    let c = load(file, &env, Some(2222)).expect("loads");
    assert_eq!(c.limits.max_inflight, 9);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.sys.interval_s, 0);
    assert_eq!(c.listeners[0].bind, "127.0.0.1:2222".parse().expect("addr"));
}

#[test]
fn an_unknown_key_is_named_with_its_file_and_section() {
    let e = error("[limits]\nmax_inflght = 3\n", &[]);
    assert!(e.contains("broker.toml"), "{e}");
    assert!(e.contains("`limits.max_inflght`: unknown key"), "{e}");
    assert!(e.contains("max_inflight"), "suggests the real keys: {e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn an_unknown_section_is_named() {
    let e = error("[limitz]\nmax_inflight = 3\n", &[]);
    assert!(e.contains("`limitz`: unknown key"), "{e}");
}

#[test]
fn an_unknown_listener_key_is_named_with_its_index() {
    let e = error("[[listeners]]\nbind = \"127.0.0.1:1\"\nport = 1\n", &[]);
    assert!(e.contains("`listeners[0].port`: unknown key"), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_names_file_key_and_problem() {
    let e = error("[limits]\nmax_inflight = \"many\"\n", &[]);
    assert!(e.contains("broker.toml"), "{e}");
    assert!(e.contains("`limits.max_inflight`"), "{e}");
    assert!(e.contains("expected an integer"), "{e}");
}

#[test]
fn a_bad_address_names_the_listener() {
    let e = error("[[listeners]]\nbind = \"localhost\"\n", &[]);
    assert!(
        e.contains("`listeners[0].bind`: invalid socket address"),
        "{e}"
    );
}

#[test]
fn out_of_range_values_are_refused_with_their_bounds() {
    let cases = [
        (
            "[limits]\nmax_inflight = 0\n",
            "limits.max_inflight",
            "between 1 and 65535",
        ),
        (
            "[limits]\nmax_inflight = 70000\n",
            "limits.max_inflight",
            "between 1 and 65535",
        ),
        (
            "[limits]\nmax_packet_size = 10\n",
            "limits.max_packet_size",
            "between 64",
        ),
        (
            "[limits]\nmax_connections = 0\n",
            "limits.max_connections",
            "at least 1",
        ),
        (
            "[limits]\nmax_queued_messages = 0\n",
            "limits.max_queued_messages",
            "at least 1",
        ),
        (
            "[limits]\nconnect_timeout_s = 0\n",
            "limits.connect_timeout_s",
            "at least 1",
        ),
        (
            "[limits]\nmax_topic_levels = 0\n",
            "limits.max_topic_levels",
            "at least 1",
        ),
        (
            "[limits]\nmax_subscriptions = 0\n",
            "limits.max_subscriptions",
            "at least 1",
        ),
        ("[limits]\nmax_inflight = -1\n", "limits.max_inflight", "-1"),
        ("listeners = []\n", "listeners", "at least one listener"),
        (
            "[log]\nlevel = \"loud[\"\n",
            "log.level",
            "not a valid log filter",
        ),
    ];
    for (file, key, problem) in cases {
        let e = error(file, &[]);
        assert!(e.contains(&format!("`{key}`")), "{file:?}: {e}");
        assert!(e.contains(problem), "{file:?}: {e}");
        assert!(e.contains("broker.toml"), "{file:?}: {e}");
    }
}

#[test]
fn a_toml_syntax_error_gives_the_line_and_column() {
    let e = error("[limits]\nmax_inflight = = 3\n", &[]);
    assert!(e.contains("broker.toml"), "{e}");
    assert!(e.contains("TOML syntax error at line 2"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn an_unreadable_file_is_named() {
    let err = Config::load(&LoadOptions {
        file: Some(PathBuf::from("/nonexistent/midge.toml")),
        env: Some(HashMap::new()),
        port: None,
    })
    .expect_err("missing file");
    let e = err.to_string();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(e.contains("/nonexistent/midge.toml"), "{e}");
}

#[test]
fn an_environment_mistake_names_the_variable() {
    let e = error("", &[("MIDGE_LIMITS__MAX_INFLIGHT", "lots")]);
    assert!(
        e.contains("environment variable MIDGE_LIMITS__MAX_INFLIGHT"),
        "{e}"
    );
    let e = error("", &[("MIDGE_LIMITS__MAX_INFLIGHT", "0")]);
    assert!(
        e.contains("environment variable MIDGE_LIMITS__MAX_INFLIGHT"),
        "{e}"
    );
    assert!(e.contains("between 1 and 65535"), "{e}");
    let e = error("", &[("MIDGE_LIMITS__TYPO", "1")]);
    assert!(e.contains("MIDGE_LIMITS__TYPO"), "{e}");
    assert!(e.contains("unknown key"), "{e}");
}

#[test]
fn the_printed_configuration_loads_back_to_the_same_configuration() {
    let mut c = Config::default();
    c.limits.max_inflight = 42;
    c.listeners[0].bind = "127.0.0.1:1999".parse().expect("addr");
    let printed = c.to_toml();
    assert_eq!(load(&printed, &[], None).expect("loads"), c);
}

#[test]
fn metrics_are_off_and_logs_are_text_by_default() {
    let c = Config::default();
    assert_eq!(c.metrics.bind, None);
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn metrics_bind_and_log_format_load_from_the_file_and_the_environment() {
    let c = load(
        "[metrics]\nbind = \"127.0.0.1:9100\"\n[log]\nformat = \"json\"\n",
        &[],
        None,
    )
    .expect("loads");
    assert_eq!(
        c.metrics.bind,
        Some("127.0.0.1:9100".parse().expect("addr"))
    );
    assert_eq!(c.log.format, LogFormat::Json);
    let env = [
        ("MIDGE_METRICS__BIND", "0.0.0.0:9200"),
        ("MIDGE_LOG__FORMAT", "json"),
    ];
    let c = load("", &env, None).expect("loads");
    assert_eq!(c.metrics.bind, Some("0.0.0.0:9200".parse().expect("addr")));
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn an_unknown_log_format_or_metrics_key_is_refused_by_name() {
    let e = error("[log]\nformat = \"xml\"\n", &[]);
    assert!(e.contains("`log.format`"), "{e}");
    assert!(e.contains("xml"), "{e}");
    let e = error("[metrics]\nport = 9100\n", &[]);
    assert!(e.contains("`metrics.port`: unknown key"), "{e}");
    let e = error("[metrics]\nbind = \"9100\"\n", &[]);
    assert!(e.contains("`metrics.bind`"), "{e}");
}

#[test]
fn only_a_tls_listener_can_be_optional() {
    let e = error(
        "[[listeners]]\nbind = \"127.0.0.1:1\"\noptional = true\n",
        &[],
    );
    assert!(e.contains("`listeners[0].optional`"), "{e}");
    assert!(e.contains("only a TLS listener"), "{e}");
}

#[test]
fn an_optional_tls_listener_without_its_files_is_removed_and_others_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    let file = format!(
        "[[listeners]]\nbind = \"127.0.0.1:1883\"\n\
         [[listeners]]\nbind = \"127.0.0.1:8883\"\noptional = true\n\
         tls = {{ cert = {cert:?}, key = {key:?} }}\n"
    );
    let mut c = load(&file, &[], None).expect("loads");
    let absent = c.clone().remove_absent_listeners();
    assert_eq!(absent.len(), 1);
    assert_eq!(absent[0].bind.port(), 8883);
    std::fs::write(&cert, "x").expect("write");
    let mut only_cert = c.clone();
    assert_eq!(only_cert.remove_absent_listeners().len(), 1);
    std::fs::write(&key, "x").expect("write");
    assert!(c.remove_absent_listeners().is_empty());
    assert_eq!(c.listeners.len(), 2);
}

#[test]
fn persistence_is_on_by_default_in_data_with_sync_always() {
    let p = Config::default().persistence;
    assert!(p.enabled);
    assert_eq!(p.dir, PathBuf::from("data"));
    assert_eq!(p.sync, SyncMode::Always);
    assert_eq!(p.sync_interval_ms, 1000);
    let c = load(
        "[persistence]\nenabled = false\ndir = \"/var/lib/midge\"\nsync = \"periodic\"\nsync_interval_ms = 50\n",
        &[("MIDGE_PERSISTENCE__SYNC", "off")],
        None,
    )
    .expect("loads");
    assert!(!c.persistence.enabled);
    assert_eq!(c.persistence.dir, PathBuf::from("/var/lib/midge"));
    assert_eq!(c.persistence.sync, SyncMode::Off);
    assert_eq!(c.persistence.sync_interval_ms, 50);
}

#[test]
fn a_bad_persistence_value_is_refused_by_name() {
    let e = error("[persistence]\nsync = \"sometimes\"\n", &[]);
    assert!(e.contains("sync"), "{e}");
    let e = error("[persistence]\nsync_interval_ms = 0\n", &[]);
    assert!(e.contains("persistence.sync_interval_ms"), "{e}");
    let e = error("[persistence]\nfsync = true\n", &[]);
    assert!(e.contains("persistence.fsync"), "{e}");
}
