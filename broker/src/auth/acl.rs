//! The ACL file: Mosquitto's syntax and Mosquitto's decisions.
//!
//! ```text
//! # rules before any `user` line apply to anonymous clients
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#          # no access word means readwrite
//! topic deny alice/secret
//!
//! # patterns apply to every client; %c is the client id, %u the user name
//! pattern write devices/%c/status
//! pattern read users/%u/#
//! ```
//!
//! A topic is checked the way Mosquitto 2.x checks it:
//! 1. the client's own rules (its `user` section, or the anonymous section
//!    when it has no user name): a matching `deny` refuses at once, whatever
//!    its position; otherwise a matching rule with the wanted access grants;
//! 2. then the patterns, the same way, after `%c` / `%u` are substituted
//!    (a pattern with `%u` is skipped for a client without a user name, and a
//!    client whose id or user name holds `+` or `#` is refused by all
//!    patterns, so it cannot widen them);
//! 3. nothing matched: refused.
//!
//! A rule matches `$`-topics only if it starts with `$` itself, as topic
//! filters do [MQTT-4.7.2-1], so `topic read #` does not open `$SYS`.
//!
//! Mosquitto grants every SUBSCRIBE and filters at delivery. Midge also
//! filters at delivery ([`Acl::can_read`]) but answers SUBACK 0x80 when the
//! ACL can never allow reading anything the filter matches
//! ([`Acl::can_subscribe`]): when a `deny` rule covers the whole filter, or
//! no readable rule overlaps it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use midge_protocol::topic::{matches, valid_topic_filter};

/// Why an ACL file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The file could not be read.
    #[error("cannot read ACL file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The access a rule gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `deny`: refuses both, and wins over grants in the same section.
    Deny,
    /// `read`: receive (and subscribe).
    Read,
    /// `write`: publish.
    Write,
    /// `readwrite`, or no access word.
    ReadWrite,
}

impl Access {
    fn parse(word: &str) -> Option<Access> {
        Some(match word {
            "deny" => Access::Deny,
            "read" => Access::Read,
            "write" => Access::Write,
            "readwrite" => Access::ReadWrite,
            _ => return None,
        })
    }

    fn grants(self, wanted: Want) -> bool {
        matches!(
            (self, wanted),
            (Access::Read | Access::ReadWrite, Want::Read)
                | (Access::Write | Access::ReadWrite, Want::Write)
        )
    }
}

/// What a check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// Rules before the first `user` line: clients without a user name.
    anonymous: Vec<Rule>,
    /// Rules per `user` section; a name may have several sections.
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` lines, for every client.
    patterns: Vec<Rule>,
}

impl Acl {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclError::Io {
            path: path.to_owned(),
            source,
        })?;
        Acl::parse(&text, path)
    }

    /// Parses file contents; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Acl, AclError> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let err = |reason: String| AclError::Line {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` without a name".into()));
                    }
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(err)?;
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else if let Some(name) = &user {
                        acl.users.entry(name.clone()).or_default().push(rule);
                    } else {
                        acl.anonymous.push(rule);
                    }
                }
                other => return Err(err(format!("unknown keyword {other:?}"))),
            }
        }
        Ok(acl)
    }

    /// Whether the client may receive a message published on `topic`;
    /// checked at delivery, for every message.
    pub fn can_read(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(client_id, username, Want::Read, |filter| {
            matches(filter, topic)
        })
    }

    /// Whether the client may publish on `topic` (a will topic included).
    pub fn can_write(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.check(client_id, username, Want::Write, |filter| {
            matches(filter, topic)
        })
    }

    /// Whether a SUBSCRIBE to `filter` is granted: refused when a `deny`
    /// rule covers every topic the filter matches, or when no rule that
    /// allows reading overlaps it. A granted filter may still match topics
    /// the client cannot read; [`Acl::can_read`] stops those at delivery.
    pub fn can_subscribe(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        if let Some(verdict) = subscribe_verdict(self.own_rules(username).iter(), filter) {
            return verdict;
        }
        match self.patterns_for(client_id, username) {
            Some(patterns) => subscribe_verdict(patterns.iter(), filter).unwrap_or(false),
            None => false,
        }
    }

    fn own_rules(&self, username: Option<&str>) -> &[Rule] {
        match username {
            None => &self.anonymous,
            Some(name) => self.users.get(name).map(Vec::as_slice).unwrap_or_default(),
        }
    }

    /// The patterns with `%c` / `%u` substituted; `None` when the client's
    /// id or user name could widen a pattern, which refuses it.
    fn patterns_for(&self, client_id: &str, username: Option<&str>) -> Option<Vec<Rule>> {
        if self.patterns.is_empty() {
            return Some(Vec::new());
        }
        let dangerous = |s: &str| s.contains(['+', '#']);
        if dangerous(client_id) || username.is_some_and(dangerous) {
            return None;
        }
        let rules = self
            .patterns
            .iter()
            .filter_map(|rule| {
                Some(Rule {
                    access: rule.access,
                    filter: substitute(&rule.filter, client_id, username)?,
                })
            })
            .collect();
        Some(rules)
    }

    fn check(
        &self,
        client_id: &str,
        username: Option<&str>,
        want: Want,
        matches: impl Fn(&str) -> bool,
    ) -> bool {
        if let Some(verdict) = verdict(self.own_rules(username).iter(), want, &matches) {
            return verdict;
        }
        match self.patterns_for(client_id, username) {
            Some(patterns) => verdict(patterns.iter(), want, &matches).unwrap_or(false),
            None => false,
        }
    }
}

/// One section's answer for one topic: `Some(false)` if a `deny` matches,
/// `Some(true)` if a grant matches, `None` to ask the next section.
fn verdict<'a>(
    rules: impl Iterator<Item = &'a Rule> + Clone,
    want: Want,
    matches: &impl Fn(&str) -> bool,
) -> Option<bool> {
    if rules
        .clone()
        .any(|r| r.access == Access::Deny && matches(&r.filter))
    {
        return Some(false);
    }
    let mut grants = rules.filter(|r| r.access.grants(want));
    grants.any(|r| matches(&r.filter)).then_some(true)
}

/// One section's answer for a subscription filter.
fn subscribe_verdict<'a>(
    rules: impl Iterator<Item = &'a Rule> + Clone,
    filter: &str,
) -> Option<bool> {
    if rules
        .clone()
        .any(|r| r.access == Access::Deny && covers(&r.filter, filter))
    {
        return Some(false);
    }
    let mut grants = rules.filter(|r| r.access.grants(Want::Read));
    grants.any(|r| overlaps(&r.filter, filter)).then_some(true)
}

/// `%c` to the client id, `%u` to the user name; `None` when the pattern
/// needs a user name the client does not have.
fn substitute(pattern: &str, client_id: &str, username: Option<&str>) -> Option<String> {
    let mut out = String::with_capacity(pattern.len() + client_id.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('c')) => {
                chars.next();
                out.push_str(client_id);
            }
            ('%', Some('u')) => {
                chars.next();
                out.push_str(username?);
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

/// `[read|write|readwrite|deny] FILTER`. As in Mosquitto, a single word is
/// the filter, and the filter is the rest of the line (spaces allowed).
fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (first, filter) = split_word(rest);
    if first.is_empty() {
        return Err("rule without a topic".into());
    }
    let (access, filter) = if filter.is_empty() {
        (Access::ReadWrite, first)
    } else {
        let access = Access::parse(first).ok_or_else(|| {
            format!("unknown access {first:?} (expected read, write, readwrite or deny)")
        })?;
        (access, filter)
    };
    if !valid_topic_filter(filter) {
        return Err(format!("invalid topic filter {filter:?}"));
    }
    Ok(Rule {
        access,
        filter: filter.to_owned(),
    })
}

/// The first whitespace-separated word and the trimmed rest.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

/// Whether the first level of a filter is a wildcard, which never matches a
/// `$`-topic [MQTT-4.7.2-1].
fn starts_wild(filter: &str) -> bool {
    filter.starts_with('+') || filter.starts_with('#')
}

/// Whether some topic name matches both filters.
pub fn overlaps(a: &str, b: &str) -> bool {
    if (starts_wild(a) && b.starts_with('$')) || (starts_wild(b) && a.starts_with('$')) {
        return false;
    }
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic name `filter` matches is matched by `rule`.
pub fn covers(rule: &str, filter: &str) -> bool {
    if starts_wild(rule) && filter.starts_with('$') {
        return false;
    }
    let (mut r, mut f) = (rule.split('/'), filter.split('/'));
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(x), Some(y)) if x == y && y != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> Acl {
        Acl::parse(text, Path::new("acl")).expect("parses")
    }

    const SAMPLE: &str = "\
# anonymous
topic read public/#
topic write public/anon/inbox

user alice
topic alice/#
topic deny alice/secret/#
topic read $SYS/broker/#
topic write shared/+/in

user bob
topic read alice/#

pattern write devices/%c/status
pattern read users/%u/#
pattern deny users/%u/private
";

    #[test]
    fn anonymous_rules_come_before_any_user_line() {
        let a = acl(SAMPLE);
        assert!(a.can_read("c", None, "public/news"));
        assert!(!a.can_write("c", None, "public/news"));
        assert!(a.can_write("c", None, "public/anon/inbox"));
        assert!(!a.can_read("c", Some("alice"), "public/news"));
        assert!(!a.can_read("c", Some("nobody"), "public/news"));
    }

    #[test]
    fn no_access_word_means_readwrite() {
        let a = acl(SAMPLE);
        assert!(a.can_read("c", Some("alice"), "alice/x"));
        assert!(a.can_write("c", Some("alice"), "alice/x/y"));
        assert!(a.can_write("c", Some("alice"), "alice"));
    }

    #[test]
    fn read_and_write_rules_grant_only_their_direction() {
        let a = acl(SAMPLE);
        assert!(a.can_read("c", Some("bob"), "alice/x"));
        assert!(!a.can_write("c", Some("bob"), "alice/x"));
        assert!(a.can_write("c", Some("alice"), "shared/a/in"));
        assert!(!a.can_read("c", Some("alice"), "shared/a/in"));
        assert!(!a.can_write("c", Some("alice"), "shared/a/b/in"));
    }

    #[test]
    fn deny_wins_over_an_earlier_grant_in_the_same_section() {
        let a = acl(SAMPLE);
        assert!(!a.can_read("c", Some("alice"), "alice/secret/plans"));
        assert!(!a.can_write("c", Some("alice"), "alice/secret"));
        assert!(a.can_read("c", Some("alice"), "alice/secrets"));
    }

    #[test]
    fn patterns_substitute_client_id_and_username() {
        let a = acl(SAMPLE);
        assert!(a.can_write("dev1", None, "devices/dev1/status"));
        assert!(!a.can_write("dev1", None, "devices/dev2/status"));
        assert!(!a.can_read("dev1", None, "devices/dev1/status"));
        assert!(a.can_read("c", Some("carol"), "users/carol/inbox"));
        assert!(!a.can_read("c", Some("carol"), "users/dave/inbox"));
        assert!(
            !a.can_read("c", None, "users/%u/inbox"),
            "%u needs a user name"
        );
        assert!(!a.can_read("c", Some("carol"), "users/carol/private"));
    }

    #[test]
    fn patterns_apply_to_users_with_their_own_section_too() {
        let a = acl(SAMPLE);
        assert!(a.can_write("dev9", Some("alice"), "devices/dev9/status"));
        assert!(a.can_read("c", Some("bob"), "users/bob/x"));
    }

    #[test]
    fn wildcards_in_ids_cannot_widen_patterns() {
        let a = acl(SAMPLE);
        assert!(!a.can_write("#", None, "devices/x/status"));
        assert!(!a.can_write("+", None, "devices/x/status"));
        assert!(!a.can_read("c", Some("#"), "users/x/y"));
        // The client's own section still applies, as in Mosquitto.
        assert!(a.can_read("#", None, "public/x"));
    }

    #[test]
    fn sys_topics_need_a_rule_starting_with_dollar() {
        let a = acl("topic read #\nuser alice\ntopic read $SYS/broker/#\ntopic read +/x");
        assert!(!a.can_read("c", None, "$SYS/broker/uptime"));
        assert!(a.can_read("c", None, "a/b"));
        assert!(a.can_read("c", Some("alice"), "$SYS/broker/uptime"));
        assert!(!a.can_read("c", Some("alice"), "$SYS/x"));
        assert!(!a.can_subscribe("c", None, "$SYS/#"));
        assert!(a.can_subscribe("c", Some("alice"), "$SYS/#"));
        assert!(a.can_subscribe("c", Some("alice"), "$SYS/broker/+"));
        assert!(!a.can_subscribe("c", Some("alice"), "$SYS/other"));
    }

    #[test]
    fn nothing_matching_means_refused() {
        let a = acl("user alice\ntopic alice/#");
        assert!(!a.can_read("c", None, "alice/x"));
        assert!(!a.can_write("c", Some("bob"), "alice/x"));
        assert!(!a.can_subscribe("c", Some("bob"), "#"));
        let empty = acl("# nothing\n");
        assert!(!empty.can_read("c", None, "a"));
        assert!(!empty.can_subscribe("c", None, "a"));
    }

    #[test]
    fn subscribe_is_refused_only_when_nothing_could_be_delivered() {
        let a = acl(SAMPLE);
        // Overlaps a readable rule: granted, filtered at delivery.
        assert!(a.can_subscribe("c", Some("bob"), "#"));
        assert!(a.can_subscribe("c", Some("bob"), "+/x"));
        assert!(a.can_subscribe("c", Some("bob"), "alice/+"));
        assert!(!a.can_subscribe("c", Some("bob"), "bob/#"));
        // A deny covering the whole filter refuses it.
        assert!(!a.can_subscribe("c", Some("alice"), "alice/secret/#"));
        assert!(!a.can_subscribe("c", Some("alice"), "alice/secret/+/x"));
        assert!(a.can_subscribe("c", Some("alice"), "alice/+/plans"));
        // Write-only rules do not make a filter readable.
        assert!(!a.can_subscribe("c", Some("alice"), "shared/a/in"));
        // Patterns.
        assert!(a.can_subscribe("c", Some("carol"), "users/carol/#"));
        assert!(a.can_subscribe("c", Some("carol"), "users/+/inbox"));
        assert!(!a.can_subscribe("c", Some("carol"), "users/carol/private"));
        assert!(!a.can_subscribe("dev1", None, "devices/dev1/status"));
        assert!(!a.can_subscribe("c", Some("#"), "users/#"));
    }

    #[test]
    fn filters_that_overlap() {
        for (a, b) in [
            ("#", "a/b"),
            ("a/#", "a"),
            ("a/+", "+/b"),
            ("+/+", "a/b"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/+"),
            ("#", "#"),
            ("a/+/c", "a/b/#"),
        ] {
            assert!(overlaps(a, b), "{a} {b}");
            assert!(overlaps(b, a), "{b} {a}");
        }
        for (a, b) in [
            ("a/b", "a/c"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a", "a/b"),
        ] {
            assert!(!overlaps(a, b), "{a} {b}");
            assert!(!overlaps(b, a), "{b} {a}");
        }
    }

    #[test]
    fn filters_that_cover() {
        for (rule, filter) in [
            ("#", "a/b"),
            ("#", "#"),
            ("a/#", "a"),
            ("a/#", "a/#"),
            ("a/#", "a/+/c"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("+/+", "a/+"),
            ("$SYS/#", "$SYS/a/#"),
        ] {
            assert!(covers(rule, filter), "{rule} covers {filter}");
        }
        for (rule, filter) in [
            ("a/+", "a/#"),
            ("a/b", "a/+"),
            ("a", "a/#"),
            ("a/+", "a"),
            ("#", "$SYS/a"),
            ("+/a", "$SYS/a"),
            ("a/b/c", "a/b"),
        ] {
            assert!(!covers(rule, filter), "{rule} does not cover {filter}");
        }
    }

    #[test]
    fn parsing_follows_mosquitto() {
        let a =
            acl("topic   read    a b/c  \n  # indented comment\r\nuser   some user  \ntopic x\n");
        assert!(a.can_read("c", None, "a b/c"), "filters may hold spaces");
        assert!(!a.can_write("c", None, "a b/c"));
        assert!(a.can_write("c", Some("some user"), "x"));
        // A lone word is the filter, even an access word.
        let a = acl("topic read");
        assert!(a.can_write("c", None, "read"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        for (text, line) in [
            ("topic read a\ntopic sometimes a/b", 2),
            ("\n\ntopic read a/#/b", 3),
            ("user", 1),
            ("topic", 1),
            ("# ok\nsubscribe a", 2),
            ("pattern read a+", 1),
        ] {
            let e = Acl::parse(text, Path::new("acl.conf")).expect_err(text);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("acl.conf:{line}: ")),
                "{text:?}: {msg}"
            );
        }
    }

    #[test]
    fn repeated_user_sections_merge() {
        let a = acl("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic read z");
        assert!(a.can_read("c", Some("a"), "x"));
        assert!(a.can_read("c", Some("a"), "z"));
        assert!(!a.can_read("c", Some("a"), "y"));
    }

    #[test]
    fn substitution_replaces_every_occurrence() {
        assert_eq!(
            substitute("%c/%u/%c", "id", Some("u")),
            Some("id/u/id".into())
        );
        assert_eq!(substitute("a/%u", "id", None), None);
        assert_eq!(substitute("100%/x%", "id", None), Some("100%/x%".into()));
    }
}
