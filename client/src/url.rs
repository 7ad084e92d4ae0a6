//! Broker URLs: [`BrokerUrl`] parses `mqtt://` and `mqtts://` URLs with
//! optional credentials, for [`Client::builder`](crate::Client::builder) and
//! for `-L` in the command-line clients.

use std::fmt;

use crate::error::ConnectError;

/// A parsed `mqtt://` or `mqtts://` URL:
/// `scheme://[user[:password]@]host[:port][/path]`.
///
/// `tcp://` is accepted as `mqtt://`, and `ssl://` and `tls://` as `mqtts://`.
/// A URL without a scheme is `mqtt://`. User and password may be
/// percent-encoded; an IPv6 host is written in brackets (`[::1]:1883`).
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Whether the scheme asks for TLS.
    pub tls: bool,
    /// Host name or IP address, without brackets.
    pub host: String,
    /// Port, if the URL names one (otherwise 1883, or 8883 with TLS).
    pub port: Option<u16>,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// The path after the authority without its leading `/`; `mosquitto_pub
    /// -L` uses it as the topic.
    pub path: String,
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("path", &self.path)
            .finish()
    }
}

impl BrokerUrl {
    /// Parses a broker URL.
    pub fn parse(url: &str) -> Result<BrokerUrl, ConnectError> {
        let bad = |reason: &str| ConnectError::InvalidUrl {
            url: redact_url(url),
            reason: reason.to_string(),
        };
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "mqtt" | "tcp" => (false, rest),
                "mqtts" | "ssl" | "tls" => (true, rest),
                _ => return Err(bad("scheme must be mqtt:// or mqtts://")),
            },
            None => (false, url),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (u, p) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let u = percent_decode(u).ok_or_else(|| bad("bad percent-encoding in user"))?;
                let p = match p {
                    Some(p) => Some(
                        percent_decode(p).ok_or_else(|| bad("bad percent-encoding in password"))?,
                    ),
                    None => None,
                };
                (Some(u), p)
            }
        };
        let (host, port) = split_host_port(hostport).map_err(bad)?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        Ok(BrokerUrl {
            tls,
            host,
            port,
            username,
            password,
            path: path.to_string(),
        })
    }
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 host")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("junk after IPv6 host")?),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| "port must be a number from 0 to 65535")?,
        ),
    };
    Ok((host.to_string(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A URL with its password replaced, for error messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((info, host)) if info.contains(':') => {
            let user = info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_credentials_ports_and_paths() {
        let u = BrokerUrl::parse("mqtt://user:p%3Ass@example.com:1884/a/b").expect("parse");
        assert_eq!(
            (
                u.tls,
                u.host.as_str(),
                u.port,
                u.username.as_deref(),
                u.password.as_deref(),
                u.path.as_str()
            ),
            (
                false,
                "example.com",
                Some(1884),
                Some("user"),
                Some("p:ss"),
                "a/b"
            )
        );
        let u = BrokerUrl::parse("mqtts://[::1]:8883").expect("parse");
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", Some(8883)));
        let u = BrokerUrl::parse("localhost").expect("parse");
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "localhost", None));
        let u = BrokerUrl::parse("ssl://only-user@h").expect("parse");
        assert_eq!(
            (u.tls, u.username.as_deref(), u.password),
            (true, Some("only-user"), None)
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for bad in [
            "http://h",
            "mqtt://h:99999",
            "mqtt://:1883",
            "mqtt://[::1",
            "mqtt://u:%zz@h",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
        let err = BrokerUrl::parse("mqtt://u:hunter2@h:x").expect_err("bad port");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
