//! Topic names and topic filters: validation and matching, shared by the
//! broker and the client.
//!
//! Levels are separated by `/`. A filter may use `+` for exactly one level
//! and `#` for any number of levels (zero included) at its end:
//!
//! | filter        | matches                     | does not match           |
//! |---------------|-----------------------------|--------------------------|
//! | `sport/#`     | `sport`, `sport/`, `sport/a/b` | `sports`              |
//! | `sport/+`     | `sport/`, `sport/a`         | `sport`, `sport/a/b`     |
//! | `+/+`         | `/a`, `a/b`                 | `a`, `$SYS/a`            |
//! | `#`           | every topic not starting with `$` | `$SYS/uptime`      |
//! | `$SYS/#`      | `$SYS/uptime`               |                          |
//!
//! Invalid filters: `sport#`, `sport/#/a`, `sp+rt/a`, `` (empty).

/// Whether `topic` is a valid topic name for PUBLISH: not empty
/// [MQTT-4.7.3-1] and without wildcards [MQTT-3.3.2-2].
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.bytes().any(|b| b == b'+' || b == b'#')
}

/// Whether `filter` is a valid topic filter: not empty [MQTT-4.7.3-1], `#`
/// only as a whole last level [MQTT-4.7.1-2], `+` only as a whole level
/// [MQTT-4.7.1-3].
pub fn valid_topic_filter(filter: &str) -> bool {
    valid_topic_filter_bytes(filter.as_bytes())
}

/// [`valid_topic_filter`] over the bytes of a UTF-8 string, in one pass. `+`,
/// `#` and `/` are ASCII, so they never occur inside a multi-byte character:
/// a wildcard is a whole level when the bytes either side of it are `/` or the
/// ends of the filter, and `#` must also be the last byte.
pub(crate) fn valid_topic_filter_bytes(filter: &[u8]) -> bool {
    let n = filter.len();
    if n == 0 {
        return false;
    }
    let after_separator = |i: usize| i == 0 || filter[i - 1] == b'/';
    for (i, &b) in filter.iter().enumerate() {
        let whole_level = match b {
            b'+' => after_separator(i) && (i + 1 == n || filter[i + 1] == b'/'),
            b'#' => after_separator(i) && i + 1 == n,
            _ => true,
        };
        if !whole_level {
            return false;
        }
    }
    true
}

/// Whether the topic name `topic` matches the topic filter `filter`.
///
/// Both are assumed valid. A filter that starts with a wildcard does not
/// match a topic that starts with `$` [MQTT-4.7.2-1]; `a/#` matches `a`
/// [MQTT-4.7.1-2].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "/", "a/b", "$SYS/x", " ", "a//b"] {
            assert!(valid_topic_name(ok), "{ok}");
        }
        for bad in ["", "a/+", "#", "a/#", "a+b"] {
            assert!(!valid_topic_name(bad), "{bad}");
        }
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "#", "+", "a/#", "+/+", "/+", "a/+/b", "+/#", "/", "a//#", "$SYS/#",
        ] {
            assert!(valid_topic_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "#/a", "a+", "+a/b", "a/b+", "##"] {
            assert!(!valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching_table() {
        let table = [
            ("sport/#", "sport", true),
            ("sport/#", "sport/", true),
            ("sport/#", "sport/a/b", true),
            ("sport/#", "sports", false),
            ("sport/+", "sport/", true),
            ("sport/+", "sport", false),
            ("sport/+", "sport/a/b", false),
            ("+/+", "/a", true),
            ("+", "/a", false),
            ("/+", "/a", true),
            ("#", "a/b/c", true),
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/b", "a/b/c", false),
            ("a/+/c", "a/b/c", true),
            ("a//c", "a//c", true),
            ("+/+/+", "a//c", true),
        ];
        for (f, t, want) in table {
            assert_eq!(matches(f, t), want, "{f} vs {t}");
        }
    }

    #[test]
    fn mqtt_4_7_2_1_wildcards_at_start_do_not_match_dollar_topics() {
        assert!(!matches("#", "$SYS/uptime"));
        assert!(!matches("+/uptime", "$SYS/uptime"));
        assert!(matches("$SYS/#", "$SYS/uptime"));
        assert!(matches("$SYS/+", "$SYS/uptime"));
        assert!(matches("a/#", "a/$b"));
    }
}
