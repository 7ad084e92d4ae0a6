//! How `midge-sub` prints a message: plain, `-v`, `-F` format strings and
//! `--json`, with mosquitto_sub's conventions (`topic (null)` for an empty
//! payload with `-v`, mosquitto's `%j` JSON with its `tst` time stamp).

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use midge_client::Message;

/// The output settings.
pub struct Printer {
    /// `-v`: prefix the topic.
    pub verbose: bool,
    /// Not `-N`: end each message with a newline.
    pub eol: bool,
    /// `-F`: a format string.
    pub format: Option<String>,
    /// `--json`: one JSON object per message.
    pub json: bool,
}

impl Printer {
    /// Writes one message to `out` and flushes, so pipes see it at once.
    pub fn print(&self, msg: &Message, out: &mut impl Write) -> io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if self.json {
            out.write_all(json(msg, now.as_secs(), now.subsec_nanos(), false).as_bytes())?;
        } else if let Some(format) = &self.format {
            formatted(format, msg, now.as_secs(), now.subsec_nanos(), out)?;
        } else if self.verbose {
            out.write_all(msg.topic.as_bytes())?;
            if msg.payload.is_empty() {
                out.write_all(b" (null)")?;
            } else {
                out.write_all(b" ")?;
                out.write_all(&msg.payload)?;
            }
        } else {
            out.write_all(&msg.payload)?;
        }
        if self.eol {
            out.write_all(b"\n")?;
        }
        out.flush()
    }
}

/// mosquitto's `%j` (or `%J` with `parse_payload`, which embeds a payload
/// that is itself JSON). A payload that is not UTF-8 goes out as hex in
/// `payload_hex`.
pub fn json(msg: &Message, secs: u64, nanos: u32, parse_payload: bool) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    let tst = format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z+0000",
        nanos / 1000
    );
    let mut out = format!(
        "{{\"tst\":{},\"topic\":{},\"qos\":{},\"retain\":{},\"payloadlen\":{},",
        quote(&tst),
        quote(&msg.topic),
        msg.qos as u8,
        u8::from(msg.retain),
        msg.payload.len()
    );
    match std::str::from_utf8(&msg.payload) {
        Ok(text) => {
            let embedded = parse_payload
                .then(|| serde_json::from_str::<serde_json::Value>(text).ok())
                .flatten();
            match embedded {
                Some(value) => out.push_str(&format!("\"payload\":{value}}}")),
                None => out.push_str(&format!("\"payload\":{}}}", quote(text))),
            }
        }
        Err(_) => out.push_str(&format!(
            "\"payload_hex\":\"{}\"}}",
            hex(&msg.payload, false)
        )),
    }
    out
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn hex(data: &[u8], upper: bool) -> String {
    data.iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// Expands a `-F` format: `%t` topic, `%p` payload, `%l` length, `%q` QoS,
/// `%r` retain, `%m` packet id, `%x`/`%X` hex payload, `%U` Unix time,
/// `%I` ISO 8601 time, `%j`/`%J` JSON, `%%`; `@Y @m @d @H @M @S @N @s @F
/// @T @z @@` time fields (UTC); `\n \t \r \\ \e \a \v \0` escapes.
pub fn formatted(
    format: &str,
    msg: &Message,
    secs: u64,
    nanos: u32,
    out: &mut impl Write,
) -> io::Result<()> {
    let (y, mo, d, h, mi, s) = civil(secs);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.write_all(msg.topic.as_bytes())?,
                Some('p') => out.write_all(&msg.payload)?,
                Some('l') => write!(out, "{}", msg.payload.len())?,
                Some('q') => write!(out, "{}", msg.qos as u8)?,
                Some('r') => write!(out, "{}", u8::from(msg.retain))?,
                Some('m') => write!(out, "{}", msg.pkid.map_or(0, |p| p.get()))?,
                Some('x') => out.write_all(hex(&msg.payload, false).as_bytes())?,
                Some('X') => out.write_all(hex(&msg.payload, true).as_bytes())?,
                Some('U') => write!(out, "{secs}.{nanos:09}")?,
                Some('I') => write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000")?,
                Some('j') => out.write_all(json(msg, secs, nanos, false).as_bytes())?,
                Some('J') => out.write_all(json(msg, secs, nanos, true).as_bytes())?,
                Some('%') => out.write_all(b"%")?,
                Some(other) => write!(out, "%{other}")?,
                None => out.write_all(b"%")?,
            },
            '@' => match chars.next() {
                Some('Y') => write!(out, "{y:04}")?,
                Some('m') => write!(out, "{mo:02}")?,
                Some('d') => write!(out, "{d:02}")?,
                Some('H') => write!(out, "{h:02}")?,
                Some('M') => write!(out, "{mi:02}")?,
                Some('S') => write!(out, "{s:02}")?,
                Some('N') => write!(out, "{nanos:09}")?,
                Some('s') => write!(out, "{secs}")?,
                Some('F') => write!(out, "{y:04}-{mo:02}-{d:02}")?,
                Some('T') => write!(out, "{h:02}:{mi:02}:{s:02}")?,
                Some('z') => out.write_all(b"+0000")?,
                Some('@') => out.write_all(b"@")?,
                Some(other) => write!(out, "@{other}")?,
                None => out.write_all(b"@")?,
            },
            '\\' => match chars.next() {
                Some('n') => out.write_all(b"\n")?,
                Some('t') => out.write_all(b"\t")?,
                Some('r') => out.write_all(b"\r")?,
                Some('\\') => out.write_all(b"\\")?,
                Some('e') => out.write_all(b"\x1b")?,
                Some('a') => out.write_all(b"\x07")?,
                Some('v') => out.write_all(b"\x0b")?,
                Some('0') => out.write_all(b"\0")?,
                Some(other) => write!(out, "\\{other}")?,
                None => out.write_all(b"\\")?,
            },
            other => write!(out, "{other}")?,
        }
    }
    Ok(())
}

/// Unix seconds to UTC (year, month, day, hour, minute, second), by Howard
/// Hinnant's days-to-civil algorithm.
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use midge_client::QoS;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
    }

    #[test]
    fn json_matches_mosquittos_shape() {
        let msg = Message::new("r/1", "ret", QoS::AtMostOnce, true);
        assert_eq!(
            json(&msg, 0, 815_291_000, false),
            "{\"tst\":\"1970-01-01T00:00:00.815291Z+0000\",\"topic\":\"r/1\",\"qos\":0,\"retain\":1,\"payloadlen\":3,\"payload\":\"ret\"}"
        );
        let msg = Message::new("t", "{\"a\":1}", QoS::AtLeastOnce, false);
        assert!(json(&msg, 0, 0, true).ends_with("\"payload\":{\"a\":1}}"));
    }

    #[test]
    fn format_strings_expand() {
        let msg = Message::new("a/b", "hi", QoS::ExactlyOnce, false);
        let mut out = Vec::new();
        formatted("%t|%p|%l|%q|%r|%x|%X|%%|@Y\\t", &msg, 0, 0, &mut out).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "a/b|hi|2|2|0|6869|6869|%|1970\t"
        );
    }
}
