//! Password files made by the real `mosquitto_passwd` load and verify, and
//! `midge passwd` edits them without disturbing their entries.
//!
//! The tests that need `mosquitto_passwd` say so and pass without it when
//! it is not installed (`apt-get install mosquitto` brings it).

use std::path::Path;
use std::process::Command;

use midge_broker::auth::password::PasswordFile;
use midge_broker::passwd_cmd;

const MOSQUITTO_PASSWD: &str = "mosquitto_passwd";

fn have_mosquitto_passwd() -> bool {
    let found = Command::new(MOSQUITTO_PASSWD).arg("-h").output().is_ok();
    if !found {
        panic!("{MOSQUITTO_PASSWD} is not installed: ./scripts/test.sh installs it (apt-get install mosquitto)");
    }
    found
}

/// `mosquitto_passwd [-H hash] [-c] -b FILE USER PASS`.
fn mosquitto_passwd(file: &Path, hash: Option<&str>, create: bool, user: &str, pass: &str) {
    let mut cmd = Command::new(MOSQUITTO_PASSWD);
    if let Some(hash) = hash {
        cmd.args(["-H", hash]);
    }
    if create {
        cmd.arg("-c");
    }
    cmd.arg("-b").arg(file).args([user, pass]);
    let out = cmd.output().expect("runs mosquitto_passwd");
    assert!(
        out.status.success(),
        "mosquitto_passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

#[test]
fn files_made_by_mosquitto_passwd_are_accepted() {
    if !have_mosquitto_passwd() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("passwd");
    // The default (sha512-pbkdf2, `$7$`) and the 1.x scheme (`$6$`).
    mosquitto_passwd(&file, None, true, "pbkdf2-user", "pbkdf2 pass");
    mosquitto_passwd(&file, Some("sha512"), false, "sha-user", "sha:pass");
    mosquitto_passwd(&file, Some("sha512-pbkdf2"), false, "unicode", "pässwörd✓");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("pbkdf2-user:$7$"), "{text}");
    assert!(text.contains("sha-user:$6$"), "{text}");

    let loaded = PasswordFile::load(&file).expect("our loader accepts it");
    assert_eq!(loaded.len(), 3);
    assert!(loaded.verify("pbkdf2-user", b"pbkdf2 pass"));
    assert!(loaded.verify("sha-user", b"sha:pass"));
    assert!(loaded.verify("unicode", "pässwörd✓".as_bytes()));
    assert!(!loaded.verify("pbkdf2-user", b"pbkdf2 pasS"));
    assert!(!loaded.verify("sha-user", b"sha"));
    assert!(!loaded.verify("nobody", b"pbkdf2 pass"));
}

#[test]
fn midge_passwd_edits_a_mosquitto_file_in_place() {
    if !have_mosquitto_passwd() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("passwd");
    mosquitto_passwd(&file, None, true, "old", "kept");
    let f = file.to_str().expect("utf-8 path");

    assert_eq!(passwd_cmd::run(&words(&["-b", f, "new", "fresh"])), 0);
    // And mosquitto_passwd still accepts the file midge wrote.
    mosquitto_passwd(&file, None, false, "later", "added");

    let loaded = PasswordFile::load(&file).expect("loads");
    assert!(loaded.verify("old", b"kept"));
    assert!(loaded.verify("new", b"fresh"));
    assert!(loaded.verify("later", b"added"));
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("new:$argon2id$"), "{text}");

    assert_eq!(passwd_cmd::run(&words(&["-D", f, "old"])), 0);
    let loaded = PasswordFile::load(&file).expect("loads");
    assert!(!loaded.contains("old"));
    assert_eq!(loaded.len(), 2);
}
