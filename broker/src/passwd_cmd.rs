//! `midge passwd`: manages a Mosquitto-format password file, writing
//! argon2id entries.
//!
//! ```text
//! midge passwd [-c] FILE USER          prompt for the password twice
//! midge passwd [-c] -b FILE USER PASS  batch: password on the command line
//! midge passwd -D FILE USER            delete USER
//! ```
//!
//! `-c` creates the file, overwriting an existing one. Otherwise the file
//! must exist; the user's line is replaced (or appended) and every other
//! line, comments and `$6$` / `$7$` entries included, is kept as it was.
//! The file is replaced atomically (written beside it, then renamed) with
//! mode 0600 for a new file. When standard input is not a terminal, the
//! password is its first line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::auth::password::{line_username, PasswordHash};

/// The arguments of `midge passwd`, for embedding as a clap subcommand.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct PasswdArgs {
    /// Create a new password file, overwriting an existing one.
    #[arg(short = 'c', conflicts_with = "delete")]
    pub create: bool,
    /// Delete USER instead of setting a password.
    #[arg(short = 'D', conflicts_with = "batch")]
    pub delete: bool,
    /// Batch mode: the password is the third argument (it will show in the
    /// shell history and the process list).
    #[arg(short = 'b', requires = "password")]
    pub batch: bool,
    /// The password file.
    pub file: PathBuf,
    /// The user name.
    pub username: String,
    /// The password, with -b only.
    #[arg(requires = "batch")]
    pub password: Option<String>,
}

/// `midge passwd` as a standalone parser, for [`run`].
#[derive(Debug, Parser)]
#[command(
    name = "midge passwd",
    about = "Manage a Mosquitto-format password file (new entries use argon2id)"
)]
struct Cli {
    #[command(flatten)]
    args: PasswdArgs,
}

/// Why `midge passwd` failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// The user name cannot be stored in the file.
    #[error("invalid user name {0:?}: it must be non-empty, without ':' or line breaks")]
    BadUsername(String),
    /// The two passwords typed differ.
    #[error("passwords do not match")]
    Mismatch,
    /// No password could be read.
    #[error("cannot read the password: {0}")]
    Prompt(std::io::Error),
    /// `-D` for a user the file does not hold.
    #[error("user {user:?} not found in {}", file.display())]
    NotFound {
        /// The user name.
        user: String,
        /// The password file.
        file: PathBuf,
    },
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Parses `args` (the words after `passwd`), does the work, prints errors
/// to standard error; returns the process exit code (0, 1 on failure, 2
/// on a usage error).
pub fn run(args: &[String]) -> i32 {
    let words = std::iter::once("midge passwd".to_owned()).chain(args.iter().cloned());
    match Cli::try_parse_from(words) {
        Ok(cli) => exit_code(execute(&cli.args)),
        Err(e) => {
            // Printing help or usage can only fail when stdout is gone.
            let _ = e.print();
            e.exit_code()
        }
    }
}

/// Prints the error, if any, and gives the exit code.
pub fn exit_code(result: Result<(), PasswdError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("midge passwd: error: {e}");
            1
        }
    }
}

/// Runs the command, reading the password from the terminal (twice) or
/// from standard input when needed.
pub fn execute(args: &PasswdArgs) -> Result<(), PasswdError> {
    execute_with(args, read_password)
}

/// [`execute`] with the password source given, for tests.
pub fn execute_with(
    args: &PasswdArgs,
    password: impl FnOnce() -> Result<String, PasswdError>,
) -> Result<(), PasswdError> {
    let user = args.username.as_str();
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        return Err(PasswdError::BadUsername(user.to_owned()));
    }
    let io_err = |source| PasswdError::Io {
        path: args.file.clone(),
        source,
    };
    let existing = match args.create {
        true => String::new(),
        false => std::fs::read_to_string(&args.file).map_err(io_err)?,
    };
    let new_line = match args.delete {
        true => None,
        false => {
            let pw = match &args.password {
                Some(pw) => pw.clone(),
                None => password()?,
            };
            let hash = PasswordHash::new_argon2id(pw.as_bytes())
                .map_err(|e| PasswdError::Hash(e.to_string()))?;
            Some(format!("{user}:{hash}"))
        }
    };
    let (text, found) = edit(&existing, user, new_line.as_deref());
    if args.delete && !found {
        return Err(PasswdError::NotFound {
            user: user.to_owned(),
            file: args.file.clone(),
        });
    }
    write_atomically(&args.file, &text).map_err(io_err)
}

/// The file with `user`'s entry replaced by `new_line` (appended when
/// absent) or removed (`None`); other lines are kept. Also tells whether
/// the user was there.
pub fn edit(text: &str, user: &str, new_line: Option<&str>) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + 128);
    let mut found = false;
    for line in text.lines() {
        if line_username(line.trim_end_matches('\r')) == Some(user) {
            if !found {
                if let Some(new_line) = new_line {
                    out.push_str(new_line);
                    out.push('\n');
                }
            }
            found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let (false, Some(new_line)) = (found, new_line) {
        out.push_str(new_line);
        out.push('\n');
    }
    (out, found)
}

/// Writes `text` beside `path` and renames it over `path`, keeping the
/// permissions of an existing file (0600 for a new one).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.midge-tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        set_permissions(&file, path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file is useless now.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn set_permissions(file: &std::fs::File, original: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let perms = match std::fs::metadata(original) {
        Ok(meta) => meta.permissions(),
        Err(_) => std::fs::Permissions::from_mode(0o600),
    };
    file.set_permissions(perms)
}

#[cfg(not(unix))]
fn set_permissions(_file: &std::fs::File, _original: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Prompts twice on the terminal, or reads the first line of standard
/// input when it is not a terminal.
fn read_password() -> Result<String, PasswdError> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(PasswdError::Prompt)?;
        let second =
            rpassword::prompt_password("Reenter password: ").map_err(PasswdError::Prompt)?;
        if first != second {
            return Err(PasswdError::Mismatch);
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(PasswdError::Prompt)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::PasswordFile;

    fn parse(words: &[&str]) -> Result<PasswdArgs, clap::Error> {
        let words = std::iter::once("midge passwd").chain(words.iter().copied());
        Cli::try_parse_from(words).map(|cli| cli.args)
    }

    fn args(words: &[&str]) -> PasswdArgs {
        parse(words).expect("valid arguments")
    }

    fn no_prompt() -> Result<String, PasswdError> {
        panic!("must not prompt")
    }

    #[test]
    fn argument_combinations() {
        let a = args(&["-c", "-b", "f", "u", "p"]);
        assert!(a.create && a.batch && !a.delete);
        assert_eq!(a.password.as_deref(), Some("p"));
        let a = args(&["-D", "f", "u"]);
        assert!(a.delete && a.password.is_none());
        let a = args(&["f", "u"]);
        assert!(!a.create && !a.batch && !a.delete);
        for bad in [
            &["-b", "f", "u"][..],
            &["f", "u", "p"],
            &["-c", "-D", "f", "u"],
            &["-D", "-b", "f", "u", "p"],
            &["f"],
            &["-x", "f", "u"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_add_replace_and_delete_keep_other_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("passwd");
        let f = file.to_str().expect("utf-8");
        execute_with(&args(&["-c", "-b", f, "alice", "one"]), no_prompt).expect("create");
        let mut text = std::fs::read_to_string(&file).expect("read");
        text.insert_str(0, "# managed by hand\n");
        text.push_str("mosq:$6$ppGs6qoFaNYD4IVd$5t4FcqpVnr2ZXY2rQlobClvtzpxk9IFCnn4FjxSlNqxpOhYRD6QL/Vv7o0PXhOt3xpZfh4aaVVyudiZrYW9UkA==\n");
        std::fs::write(&file, &text).expect("write");

        execute_with(&args(&[f, "bob"]), || Ok("two".into())).expect("add");
        execute_with(&args(&["-b", f, "alice", "three"]), no_prompt).expect("replace");
        let loaded = PasswordFile::load(&file).expect("loads");
        assert!(loaded.verify("alice", b"three"));
        assert!(!loaded.verify("alice", b"one"));
        assert!(loaded.verify("bob", b"two"));
        assert!(loaded.verify("mosq", b"correct horse"));
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            text.starts_with("# managed by hand\nalice:$argon2id$"),
            "{text}"
        );

        execute_with(&args(&["-D", f, "bob"]), no_prompt).expect("delete");
        let loaded = PasswordFile::load(&file).expect("loads");
        assert!(!loaded.contains("bob") && loaded.contains("alice") && loaded.contains("mosq"));
        let e = execute_with(&args(&["-D", f, "bob"]), no_prompt).expect_err("gone");
        assert!(matches!(e, PasswdError::NotFound { .. }), "{e}");

        execute_with(&args(&["-c", "-b", f, "carol", "x"]), no_prompt).expect("overwrite");
        let loaded = PasswordFile::load(&file).expect("loads");
        assert_eq!(loaded.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("passwd");
        let f = file.to_str().expect("utf-8");
        execute_with(&args(&["-c", "-b", f, "a", "b"]), no_prompt).expect("create");
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn failures_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("missing");
        let f = file.to_str().expect("utf-8");
        let e = execute_with(&args(&["-b", f, "a", "b"]), no_prompt).expect_err("no file");
        assert!(e.to_string().contains("missing"), "{e}");
        let e = execute_with(&args(&["-c", f, "a:b"]), no_prompt).expect_err("colon");
        assert!(matches!(e, PasswdError::BadUsername(_)));
        let e = execute_with(&args(&["-c", f, "a"]), || Err(PasswdError::Mismatch))
            .expect_err("mismatch");
        assert!(matches!(e, PasswdError::Mismatch));
        assert!(!file.exists(), "nothing written on failure");
    }

    #[test]
    fn edit_replaces_the_first_entry_and_drops_duplicates() {
        let (text, found) = edit("a:1\r\nb:2\na:3\n#a:4\n", "a", Some("a:new"));
        assert!(found);
        assert_eq!(text, "a:new\nb:2\n#a:4\n");
        let (text, found) = edit("", "a", Some("a:x"));
        assert!(!found);
        assert_eq!(text, "a:x\n");
    }

    #[test]
    fn run_returns_exit_codes() {
        assert_eq!(run(&["-b".to_owned()]), 2);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("passwd").to_string_lossy().into_owned();
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run(&words(&["-c", "-b", &file, "u", "p"])), 0);
        assert_eq!(run(&words(&["-D", &file, "nobody"])), 1);
    }
}
