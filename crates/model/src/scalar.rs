//! Scalar field types shared by many kinds (resources.md §1.2).
//!
//! Calico accepts several fields as "number or string" (Go's `numorstring`):
//! protocols (`TCP` or `6`), ports (`80`, `"8000:8080"`, `http`) and AS
//! numbers (`64512` or `"1.10"`). These types keep what the user wrote so a
//! decode never fails for a value that is merely out of range: range and
//! format problems are reported by validation with the field's path, and the
//! stored form is normalised on write (`"80"` becomes `80`, `"1.10"` becomes
//! `65546`).
//!
//! Also here: CIDR and IP parsing (strict masking), Go duration strings, and
//! the name rules of §1.1.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value written either as an integer or as a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::Str(s) => write!(f, "{s}"),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(i) => s.serialize_i64(*i),
            IntOrString::Str(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IntOrString, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(IntOrString::Int(v as i64))
                } else {
                    Err(E::custom(format!("expected an integer, got {v}")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The protocol names Calico accepts, in their only accepted spelling.
pub const PROTOCOL_NAMES: [(&str, u8); 6] = [
    ("TCP", 6),
    ("UDP", 17),
    ("ICMP", 1),
    ("ICMPv6", 58),
    ("SCTP", 132),
    ("UDPLite", 136),
];

/// A rule or port protocol: a name from [`PROTOCOL_NAMES`] or a number 1-255.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Protocol(pub IntOrString);

impl Protocol {
    pub fn named(name: &str) -> Protocol {
        Protocol(IntOrString::Str(name.to_string()))
    }

    /// The IANA protocol number, or an error naming what is wrong.
    pub fn number(&self) -> Result<u8, String> {
        let parse_num = |n: i64| {
            if (1..=255).contains(&n) {
                Ok(n as u8)
            } else {
                Err("must be a protocol name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or a number between 1 and 255".to_string())
            }
        };
        match &self.0 {
            IntOrString::Int(n) => parse_num(*n),
            IntOrString::Str(s) => {
                if let Some((_, n)) = PROTOCOL_NAMES.iter().find(|(name, _)| name == s) {
                    return Ok(*n);
                }
                match s.parse::<i64>() {
                    Ok(n) => parse_num(n),
                    Err(_) => Err(format!(
                        "unknown protocol {s:?}: use TCP, UDP, ICMP, ICMPv6, SCTP or UDPLite (exact case) or a number between 1 and 255"
                    )),
                }
            }
        }
    }

    /// True for protocols that carry port numbers (TCP, UDP, SCTP).
    pub fn supports_ports(&self) -> bool {
        matches!(self.number(), Ok(6 | 17 | 132))
    }

    /// Calico's canonical spelling of this protocol: a name when it has one.
    pub fn canonical(&self) -> String {
        match self.number() {
            Ok(n) => PROTOCOL_NAMES
                .iter()
                .find(|(_, num)| *num == n)
                .map(|(name, _)| name.to_string())
                .unwrap_or_else(|| n.to_string()),
            Err(_) => self.0.to_string(),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A port as written in a rule or endpoint: a number, a `"min:max"` range, or a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Port(pub IntOrString);

/// What a [`Port`] means once parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortValue {
    Range { min: u16, max: u16 },
    Named(String),
}

impl Port {
    pub fn number(n: u16) -> Port {
        Port(IntOrString::Int(i64::from(n)))
    }

    pub fn parse(&self) -> Result<PortValue, String> {
        let num = |n: i64| -> Result<u16, String> {
            if (1..=65535).contains(&n) {
                Ok(n as u16)
            } else {
                Err("port must be between 1 and 65535".to_string())
            }
        };
        match &self.0 {
            IntOrString::Int(n) => num(*n).map(|p| PortValue::Range { min: p, max: p }),
            IntOrString::Str(s) => {
                if let Some((lo, hi)) = s.split_once(':') {
                    let lo: i64 = lo
                        .parse()
                        .map_err(|_| format!("invalid port range {s:?}: expected \"min:max\""))?;
                    let hi: i64 = hi
                        .parse()
                        .map_err(|_| format!("invalid port range {s:?}: expected \"min:max\""))?;
                    let (min, max) = (num(lo)?, num(hi)?);
                    if min > max {
                        return Err(format!(
                            "invalid port range {s:?}: minimum is greater than maximum"
                        ));
                    }
                    Ok(PortValue::Range { min, max })
                } else if let Ok(n) = s.parse::<i64>() {
                    num(n).map(|p| PortValue::Range { min: p, max: p })
                } else {
                    validate_port_name(s).map(|()| PortValue::Named(s.clone()))
                }
            }
        }
    }

    /// The canonical stored form: a single port as a number, a range as
    /// `"min:max"`, a name as itself. Invalid ports are returned unchanged.
    pub fn normalised(&self) -> Port {
        match self.parse() {
            Ok(PortValue::Range { min, max }) if min == max => Port::number(min),
            Ok(PortValue::Range { min, max }) => Port(IntOrString::Str(format!("{min}:{max}"))),
            _ => self.clone(),
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Kubernetes port-name rules: 1-15 characters, lower-case alphanumerics and
/// `-`, at least one letter, no leading, trailing or doubled `-`.
pub fn validate_port_name(s: &str) -> Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if s.is_empty() || s.len() > 15 {
        return Err(format!("invalid port name {s:?}: must be 1-15 characters"));
    }
    if !ok_chars
        || !s.bytes().any(|b| b.is_ascii_lowercase())
        || s.starts_with('-')
        || s.ends_with('-')
        || s.contains("--")
    {
        return Err(format!(
            "invalid port name {s:?}: lower-case letters, digits and single inner '-' only, with at least one letter"
        ));
    }
    Ok(())
}

/// A BGP AS number: `64512` or the dotted form `"1.10"` (= 1*65536 + 10).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AsNumber(pub IntOrString);

impl AsNumber {
    pub fn value(&self) -> Result<u32, String> {
        let range =
            "AS number must be between 0 and 4294967295, or dotted X.Y with X and Y at most 65535";
        match &self.0 {
            IntOrString::Int(n) => u32::try_from(*n).map_err(|_| range.to_string()),
            IntOrString::Str(s) => {
                if let Some((hi, lo)) = s.split_once('.') {
                    let hi: u16 = hi.parse().map_err(|_| range.to_string())?;
                    let lo: u16 = lo.parse().map_err(|_| range.to_string())?;
                    Ok(u32::from(hi) * 65536 + u32::from(lo))
                } else {
                    s.parse::<u32>().map_err(|_| range.to_string())
                }
            }
        }
    }

    /// Stored form: a plain number.
    pub fn normalised(&self) -> AsNumber {
        match self.value() {
            Ok(v) => AsNumber(IntOrString::Int(i64::from(v))),
            Err(_) => self.clone(),
        }
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a CIDR or a bare IP (which becomes a /32 or /128). Host bits allowed.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err(format!("{s:?} is not a valid IP address or CIDR")),
    }
}

/// Parses a CIDR that must be strictly masked (no host bits set).
pub fn parse_strict_cidr(s: &str) -> Result<IpNet, String> {
    let net = parse_cidr(s)?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set: use {} (the network address)",
            net.trunc()
        ));
    }
    Ok(net)
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("{s:?} is not a valid IP address"))
}

/// Parses `aa:bb:cc:dd:ee:ff` (or `-`-separated) MAC addresses.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a valid MAC address (expected aa:bb:cc:dd:ee:ff)");
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// A Go duration (`90s`, `1m30s`, `500ms`, `1.5h`) in nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let bad = || format!("{s:?} is not a valid duration (use forms like 90s, 1m30s, 500ms)");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total > 9.2e18 {
        return Err(format!("{s:?} is too long a duration"));
    }
    let ns = total.round() as i128;
    Ok(if neg { -ns } else { ns })
}

/// Formats nanoseconds the way Go's `time.Duration.String()` does.
pub fn format_go_duration(ns: i128) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let rem = value % unit;
        if rem == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = unit.ilog10() as usize;
            let f = format!("{rem:0digits$}");
            format!("{whole}.{}{suffix}", f.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}", frac(u, 1_000, "µs"));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}", frac(u, 1_000_000, "ms"));
    }
    let hours = u / 3_600_000_000_000;
    let mins = (u / 60_000_000_000) % 60;
    let secs = frac(u % 60_000_000_000, 1_000_000_000, "s");
    if hours > 0 {
        format!("{sign}{hours}h{mins}m{secs}")
    } else if mins > 0 {
        format!("{sign}{mins}m{secs}")
    } else {
        format!("{sign}{secs}")
    }
}

/// Normalises a Go duration string to Go's canonical spelling.
pub fn normalise_duration(s: &str) -> String {
    parse_go_duration(s)
        .map(format_go_duration)
        .unwrap_or_else(|_| s.to_string())
}

/// DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 subdomain: labels joined by `.`, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Interface names: `[a-zA-Z0-9_.-]{1,15}`.
pub fn is_interface_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Interface match patterns (BGP ignoredInterfaces, filter rules): `[a-zA-Z0-9_.*-]{1,15}`.
pub fn is_interface_pattern(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'*'))
}

/// Serialises an `f64` the way Go's JSON encoder does for whole numbers
/// (`100`, not `100.0`).
pub mod go_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => s.serialize_i64(*f as i64),
            Some(f) => s.serialize_f64(*f),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_like_go() {
        for (input, want) in [
            ("90s", "1m30s"),
            ("1m30s", "1m30s"),
            ("500ms", "500ms"),
            ("2h", "2h0m0s"),
            ("1.5h", "1h30m0s"),
            ("0", "0s"),
            ("10m", "10m0s"),
            ("1.5s", "1.5s"),
            ("120s", "2m0s"),
        ] {
            assert_eq!(normalise_duration(input), want, "{input}");
        }
        for bad in ["", "10", "1x", "s", "1..5s", "-"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_parse_and_normalise() {
        let p = |s: &str| Port(IntOrString::Str(s.into()));
        assert_eq!(p("80").normalised(), Port::number(80));
        assert_eq!(
            p("8000:8080").parse(),
            Ok(PortValue::Range {
                min: 8000,
                max: 8080
            })
        );
        assert!(p("9:1").parse().is_err());
        assert!(p("0").parse().is_err());
        assert!(Port(IntOrString::Int(65536)).parse().is_err());
        assert_eq!(p("http").parse(), Ok(PortValue::Named("http".into())));
        for bad in ["HTTP", "-a", "a-", "a--b", "abcdefghijklmnop"] {
            assert!(p(bad).parse().is_err(), "{bad}");
        }
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::named("TCP").number(), Ok(6));
        assert_eq!(Protocol(IntOrString::Str("17".into())).number(), Ok(17));
        assert!(Protocol::named("tcp").number().is_err());
        assert!(Protocol(IntOrString::Int(0)).number().is_err());
        assert!(Protocol(IntOrString::Int(256)).number().is_err());
        assert_eq!(Protocol(IntOrString::Int(6)).canonical(), "TCP");
    }

    #[test]
    fn as_numbers() {
        assert_eq!(AsNumber(IntOrString::Str("1.10".into())).value(), Ok(65546));
        assert_eq!(AsNumber(IntOrString::Int(4294967295)).value(), Ok(u32::MAX));
        assert!(AsNumber(IntOrString::Int(4294967296)).value().is_err());
        assert!(
            AsNumber(IntOrString::Str("65536.1".into()))
                .value()
                .is_err()
        );
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.1").map(|n| n.to_string()),
            Ok("10.0.0.1/32".into())
        );
        assert!(parse_strict_cidr("10.0.0.1/24").is_err());
        assert!(parse_strict_cidr("10.0.0.0/24").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(parse_mac("ee:ee:ee:ee:ee:ee"), Ok([0xee; 6]));
        assert!(parse_mac("ee:ee:ee").is_err());
    }
}
