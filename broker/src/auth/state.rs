//! The file-based access control of the `[auth]` table: who may connect,
//! and which topics each client may publish, subscribe and receive.
//!
//! [`AuthConfig`] is the `[auth]` table; [`AuthState`] is the password and
//! ACL files loaded from it, with the login and topic checks;
//! [`FileAuthorizer`] is the broker's [`Authorizer`] over it.
//!
//! [`AuthState`] is immutable: SIGHUP builds a new one with
//! [`AuthState::reload`] and swaps it in (an `arc_swap::ArcSwap` makes the
//! swap lock-free for readers); when the reload fails the caller keeps the
//! old one. Connections read the current state for every check, so a
//! reload applies to them at once without dropping them.
//!
//! Password checks are deliberately slow (argon2id); callers run
//! [`AuthState::login`] on a blocking thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use midge_protocol::ConnectReturnCode;
use serde::{Deserialize, Serialize};

use super::acl::{Acl, AclError};
use super::password::{PasswordFile, PasswordFileError};
use super::{Authorizer, ClientInfo};

/// The `[auth]` table of the configuration file.
///
/// ```toml
/// [auth]
/// allow_anonymous = true   # default: true, or false once password_file is set
/// password_file = "passwd" # Mosquitto format; default: none
/// acl_file = "acl"         # Mosquitto format; default: none (all allowed)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether clients without a user name may connect. Unset means true,
    /// unless `password_file` is set, then false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// The password file; without one, user names are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The ACL file; without one, every client may use every topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<PathBuf>,
}

impl AuthConfig {
    /// `allow_anonymous` with its default applied.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.password_file.is_none())
    }
}

/// Why the auth files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password file.
    #[error(transparent)]
    Password(#[from] PasswordFileError),
    /// The ACL file.
    #[error(transparent)]
    Acl(#[from] AclError),
}

/// Why a login was refused; maps to a CONNACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password, or a password file entry without the
    /// password given: CONNACK 0x04.
    #[error("bad user name or password")]
    BadUserNameOrPassword,
    /// Anonymous access is off, or the TLS identity is missing: CONNACK 0x05.
    #[error("not authorized")]
    NotAuthorized,
}

impl LoginError {
    /// The CONNACK return code to send.
    pub fn return_code(self) -> ConnectReturnCode {
        match self {
            LoginError::BadUserNameOrPassword => ConnectReturnCode::BadUserNameOrPassword,
            LoginError::NotAuthorized => ConnectReturnCode::NotAuthorized,
        }
    }
}

/// What a client presents to log in.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    /// The user name and password of CONNECT.
    Connect {
        /// CONNECT's user name.
        username: Option<&'a str>,
        /// CONNECT's password (binary data).
        password: Option<&'a [u8]>,
    },
    /// A listener with `identity_as_username`: the common name of the
    /// verified client certificate replaces the user name, and the password
    /// is not checked. `None` when the client sent no certificate.
    Certificate {
        /// The certificate's CN.
        common_name: Option<&'a str>,
    },
}

impl std::fmt::Debug for Credentials<'_> {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Connect { username, password } => f
                .debug_struct("Connect")
                .field("username", username)
                .field("password", &password.map(|_| "<redacted>"))
                .finish(),
            Credentials::Certificate { common_name } => f
                .debug_struct("Certificate")
                .field("common_name", common_name)
                .finish(),
        }
    }
}

/// The loaded `[auth]` configuration: a value to keep in an `ArcSwap`.
#[derive(Debug, Clone)]
pub struct AuthState {
    config: AuthConfig,
    allow_anonymous: bool,
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
}

impl Default for AuthState {
    /// No files: anonymous clients allowed, every topic allowed.
    fn default() -> AuthState {
        AuthState::from_parts(AuthConfig::default(), None, None)
    }
}

impl AuthState {
    /// Loads the files `config` names.
    pub fn load(config: &AuthConfig) -> Result<AuthState, AuthError> {
        let passwords = match &config.password_file {
            Some(path) => Some(PasswordFile::load(path)?),
            None => None,
        };
        let acl = match &config.acl_file {
            Some(path) => Some(Acl::load(path)?),
            None => None,
        };
        Ok(AuthState::from_parts(config.clone(), passwords, acl))
    }

    /// Builds a state from already parsed parts (tests, embedding).
    pub fn from_parts(
        config: AuthConfig,
        passwords: Option<PasswordFile>,
        acl: Option<Acl>,
    ) -> AuthState {
        AuthState {
            allow_anonymous: config.anonymous_allowed(),
            config,
            passwords,
            acl,
        }
    }

    /// Re-reads the same files (SIGHUP). On error the caller keeps `self`.
    pub fn reload(&self) -> Result<AuthState, AuthError> {
        AuthState::load(&self.config)
    }

    /// The configuration this state was loaded from.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Whether clients without a user name may connect.
    pub fn allow_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Number of users in the password file (0 without one).
    pub fn user_count(&self) -> usize {
        self.passwords.as_ref().map_or(0, PasswordFile::len)
    }

    /// Whether an ACL file is in force.
    pub fn has_acl(&self) -> bool {
        self.acl.is_some()
    }

    /// Checks a login; on success returns the user name the client acts
    /// as (`None` for an anonymous client). Slow when a password is
    /// verified: run it on a blocking thread.
    pub fn login(&self, credentials: Credentials<'_>) -> Result<Option<String>, LoginError> {
        match credentials {
            Credentials::Certificate { common_name } => common_name
                .filter(|cn| !cn.is_empty())
                .map(|cn| Some(cn.to_owned()))
                .ok_or(LoginError::NotAuthorized),
            Credentials::Connect { username: None, .. } => match self.allow_anonymous {
                true => Ok(None),
                false => Err(LoginError::NotAuthorized),
            },
            Credentials::Connect {
                username: Some(user),
                password,
            } => match &self.passwords {
                Some(file) => match password {
                    Some(pw) if file.verify(user, pw) => Ok(Some(user.to_owned())),
                    Some(_) => Err(LoginError::BadUserNameOrPassword),
                    None => {
                        // Spend the same time as a wrong password would.
                        file.verify(user, b"");
                        Err(LoginError::BadUserNameOrPassword)
                    }
                },
                // Without a password file a user name is an unchecked
                // label, which is as good as anonymous.
                None if self.allow_anonymous => Ok(Some(user.to_owned())),
                None => Err(LoginError::NotAuthorized),
            },
        }
    }

    /// Whether the client may publish on `topic` (will topics included).
    /// Nobody may publish on `$SYS` topics but for a bridge's state
    /// ([`crate::sys::client_may_write`]).
    pub fn can_write(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        if !crate::sys::client_may_write(topic) {
            return false;
        }
        self.acl
            .as_ref()
            .map_or(true, |acl| acl.can_write(client_id, username, topic))
    }

    /// Whether the client may receive a message published on `topic`:
    /// checked at delivery, retained messages included.
    pub fn can_read(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.acl
            .as_ref()
            .map_or(true, |acl| acl.can_read(client_id, username, topic))
    }

    /// Whether a SUBSCRIBE to `filter` is granted (else SUBACK 0x80).
    pub fn can_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.acl
            .as_ref()
            .map_or(true, |acl| acl.can_subscribe(client_id, username, filter))
    }
}

/// The broker's [`Authorizer`] over the `[auth]` files: the current
/// [`AuthState`] behind an [`ArcSwap`], so every check is a lock-free load
/// and [`FileAuthorizer::reload`] (SIGHUP) applies to connected clients at
/// once without dropping them.
#[derive(Debug)]
pub struct FileAuthorizer {
    state: ArcSwap<AuthState>,
    /// Whether the state in force has an ACL: without one every delivery
    /// is allowed, and asking costs a load of `state` per delivery.
    has_acl: AtomicBool,
}

impl FileAuthorizer {
    /// Loads the files `config` names.
    pub fn load(config: &AuthConfig) -> Result<FileAuthorizer, AuthError> {
        AuthState::load(config).map(FileAuthorizer::new)
    }

    /// Wraps an already loaded state.
    pub fn new(state: AuthState) -> FileAuthorizer {
        FileAuthorizer {
            has_acl: AtomicBool::new(state.acl.is_some()),
            state: ArcSwap::from_pointee(state),
        }
    }

    /// Re-reads the files; on error the current state stays in force.
    pub fn reload(&self) -> Result<(), AuthError> {
        let config = self.state.load().config().clone();
        self.reload_with(&config)
    }

    /// Loads `config` (a re-read `[auth]`: other files, or another
    /// `allow_anonymous`) in place of the state in force; on error that
    /// state stays.
    pub fn reload_with(&self, config: &AuthConfig) -> Result<(), AuthError> {
        let fresh = AuthState::load(config)?;
        let has_acl = fresh.acl.is_some();
        self.state.store(Arc::new(fresh));
        self.has_acl.store(has_acl, Ordering::Release);
        Ok(())
    }

    /// The state in force.
    pub fn current(&self) -> Arc<AuthState> {
        self.state.load_full()
    }
}

impl Authorizer for FileAuthorizer {
    fn authenticate(
        &self,
        client: &ClientInfo<'_>,
        password: Option<&[u8]>,
    ) -> Result<(), ConnectReturnCode> {
        let credentials = Credentials::Connect {
            username: client.username,
            password,
        };
        self.state
            .load()
            .login(credentials)
            .map(drop)
            .map_err(LoginError::return_code)
    }

    fn may_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool {
        self.state
            .load()
            .can_subscribe(client.client_id, client.username, filter)
    }

    fn may_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        self.state
            .load()
            .can_write(client.client_id, client.username, topic)
    }

    fn may_receive(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        self.state
            .load()
            .can_read(client.client_id, client.username, topic)
    }

    fn checks_receiving(&self) -> bool {
        self.has_acl.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn state(allow: Option<bool>, passwd: &str, acl: Option<&str>) -> AuthState {
        let config = AuthConfig {
            allow_anonymous: allow,
            password_file: (!passwd.is_empty()).then(|| PathBuf::from("passwd")),
            acl_file: acl.map(|_| PathBuf::from("acl")),
        };
        let passwords = (!passwd.is_empty())
            .then(|| PasswordFile::parse(passwd, Path::new("passwd")).expect("passwd"));
        let acl = acl.map(|text| Acl::parse(text, Path::new("acl")).expect("acl"));
        AuthState::from_parts(config, passwords, acl)
    }

    // bob / "s3cret:with:colons", made by mosquitto_passwd.
    const BOB: &str = "bob:$7$101$mxHQSvcnOeTCJNQs$p/p/OEwXUDWnwWB0+oH9sS14C5e+fJ3Yq4QsH1/5YV5lwQwwnLtttfkEUkRmo8bXRGVyvQ2lyTWNyL+raWXdAw==\n";

    fn connect<'a>(user: Option<&'a str>, pw: Option<&'a [u8]>) -> Credentials<'a> {
        Credentials::Connect {
            username: user,
            password: pw,
        }
    }

    #[test]
    fn anonymous_is_allowed_by_default_without_a_password_file() {
        let s = state(None, "", None);
        assert!(s.allow_anonymous());
        assert_eq!(s.login(connect(None, None)), Ok(None));
        assert_eq!(s.login(connect(Some("x"), None)), Ok(Some("x".into())));
    }

    #[test]
    fn a_password_file_turns_anonymous_off_unless_set_explicitly() {
        let s = state(None, BOB, None);
        assert!(!s.allow_anonymous());
        assert_eq!(s.login(connect(None, None)), Err(LoginError::NotAuthorized));
        let s = state(Some(true), BOB, None);
        assert_eq!(s.login(connect(None, None)), Ok(None));
        let s = state(Some(false), "", None);
        assert_eq!(s.login(connect(None, None)), Err(LoginError::NotAuthorized));
        assert_eq!(
            s.login(connect(Some("x"), None)),
            Err(LoginError::NotAuthorized)
        );
    }

    #[test]
    fn passwords_are_checked() {
        let s = state(None, BOB, None);
        let good: &[u8] = b"s3cret:with:colons";
        assert_eq!(
            s.login(connect(Some("bob"), Some(good))),
            Ok(Some("bob".into()))
        );
        for (user, pw) in [
            ("bob", Some(&b"wrong"[..])),
            ("bob", None),
            ("alice", Some(good)),
        ] {
            let e = s.login(connect(Some(user), pw)).expect_err(user);
            assert_eq!(e, LoginError::BadUserNameOrPassword);
            assert_eq!(e.return_code() as u8, 4);
        }
        assert_eq!(LoginError::NotAuthorized.return_code() as u8, 5);
    }

    #[test]
    fn certificate_identity_becomes_the_user_name() {
        let s = state(None, BOB, None);
        let cert = |cn| Credentials::Certificate { common_name: cn };
        assert_eq!(s.login(cert(Some("device-7"))), Ok(Some("device-7".into())));
        assert_eq!(s.login(cert(None)), Err(LoginError::NotAuthorized));
        assert_eq!(s.login(cert(Some(""))), Err(LoginError::NotAuthorized));
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let shown = format!("{:?}", connect(Some("bob"), Some(b"hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("104"), "{shown}");
    }

    #[test]
    fn without_an_acl_everything_but_sys_writes_is_allowed() {
        let s = state(None, "", None);
        assert!(s.can_write("c", None, "a/b"));
        assert!(s.can_read("c", None, "$SYS/broker/uptime"));
        assert!(s.can_subscribe("c", None, "$SYS/#"));
        assert!(!s.can_write("c", None, "$SYS/broker/uptime"));
        assert!(!s.can_write("c", None, "$SYS"));
        assert!(s.can_write("c", None, "$SYSTEM"));
        // A bridge's notifications, as Mosquitto allows them.
        assert!(s.can_write("c", None, "$SYS/broker/connection/b1/state"));
        assert!(!s.can_write("c", None, "$SYS/broker/connection//state"));
        assert!(!s.can_write("c", None, "$SYS/broker/connection/b1/state/x"));
        assert!(!s.can_write("c", None, "$SYS/broker/connection/+/state"));
    }

    #[test]
    fn an_acl_decides_topics() {
        let s = state(
            None,
            "",
            Some("topic read a/#\ntopic write b\ntopic readwrite $SYS/#"),
        );
        assert!(s.has_acl());
        assert!(s.can_read("c", None, "a/x"));
        assert!(!s.can_write("c", None, "a/x"));
        assert!(s.can_write("c", None, "b"));
        assert!(!s.can_write("c", None, "$SYS/x"), "$SYS is never writable");
        assert!(s.can_read("c", None, "$SYS/x"));
        assert!(!s.can_subscribe("c", None, "b"));
    }

    #[test]
    fn load_and_reload_read_the_files_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("passwd");
        let acl = dir.path().join("acl");
        std::fs::write(&pw, BOB).expect("write");
        std::fs::write(&acl, "topic read a\n").expect("write");
        let config = AuthConfig {
            allow_anonymous: Some(true),
            password_file: Some(pw.clone()),
            acl_file: Some(acl.clone()),
        };
        let s = AuthState::load(&config).expect("loads");
        assert_eq!(s.user_count(), 1);
        assert!(s.can_read("c", None, "a") && !s.can_read("c", None, "b"));

        std::fs::write(&acl, "topic read b\n").expect("write");
        let s2 = s.reload().expect("reloads");
        assert!(s2.can_read("c", None, "b") && !s2.can_read("c", None, "a"));
        assert_eq!(s2.config(), &config);

        std::fs::write(&acl, "topic sideways b\n").expect("write");
        let e = s2.reload().expect_err("bad acl");
        assert!(e.to_string().contains(":1: "), "{e}");
        std::fs::remove_file(&pw).expect("rm");
        let e = s2.reload().expect_err("no passwd");
        assert!(e.to_string().contains("passwd"), "{e}");
        // The old states are untouched.
        assert!(s2.can_read("c", None, "b"));
    }

    #[test]
    fn deliveries_are_checked_only_while_an_acl_is_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "topic read a\n").expect("write");
        let with_acl = AuthConfig {
            allow_anonymous: Some(true),
            password_file: None,
            acl_file: Some(acl.clone()),
        };
        let none = AuthConfig {
            acl_file: None,
            ..with_acl.clone()
        };
        let open = FileAuthorizer::load(&none).expect("loads");
        assert!(!open.checks_receiving());
        let guarded = FileAuthorizer::load(&with_acl).expect("loads");
        assert!(guarded.checks_receiving());
        let info = ClientInfo {
            client_id: "c",
            username: None,
            peer: "127.0.0.1:1".parse().expect("addr"),
        };
        assert!(!guarded.may_receive(&info, "b"));
        // A reload that fails keeps the ACL, and its check, in force.
        std::fs::write(&acl, "topic sideways b\n").expect("write");
        assert!(guarded.reload().is_err());
        assert!(guarded.checks_receiving());
    }

    #[test]
    fn auth_table_parses_with_defaults() {
        #[derive(Deserialize)]
        struct Root {
            auth: AuthConfig,
        }
        let root: Root = toml_like("[auth]\npassword_file = \"passwd\"\n");
        assert_eq!(root.auth.password_file, Some(PathBuf::from("passwd")));
        assert!(!root.auth.anonymous_allowed());
        assert!(AuthConfig::default().anonymous_allowed());
    }

    fn toml_like<T: serde::de::DeserializeOwned>(text: &str) -> T {
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("deserializes")
    }

    #[test]
    fn file_authorizer_answers_the_broker_hooks_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("passwd");
        let acl = dir.path().join("acl");
        std::fs::write(&pw, BOB).expect("write");
        std::fs::write(&acl, "user bob\ntopic read a/#\n").expect("write");
        let config = AuthConfig {
            allow_anonymous: None,
            password_file: Some(pw),
            acl_file: Some(acl.clone()),
        };
        let auth = FileAuthorizer::load(&config).expect("loads");
        let bob = ClientInfo {
            client_id: "c1",
            username: Some("bob"),
            peer: ([127, 0, 0, 1], 1).into(),
        };
        let anon = ClientInfo {
            username: None,
            ..bob.clone()
        };
        assert_eq!(auth.authenticate(&bob, Some(b"s3cret:with:colons")), Ok(()));
        assert_eq!(
            auth.authenticate(&bob, Some(b"nope")),
            Err(ConnectReturnCode::BadUserNameOrPassword)
        );
        assert_eq!(
            auth.authenticate(&anon, None),
            Err(ConnectReturnCode::NotAuthorized)
        );
        assert!(auth.may_subscribe(&bob, "a/#") && !auth.may_subscribe(&bob, "b"));
        assert!(auth.may_receive(&bob, "a/x") && !auth.may_publish(&bob, "a/x"));

        std::fs::write(&acl, "user bob\ntopic write a/#\n").expect("write");
        auth.reload().expect("reloads");
        assert!(!auth.may_receive(&bob, "a/x") && auth.may_publish(&bob, "a/x"));
        std::fs::write(&acl, "bogus\n").expect("write");
        assert!(auth.reload().is_err());
        assert!(auth.may_publish(&bob, "a/x"), "the old rules stay");
    }
}
