//! Validation errors and the checker every kind's rules are written with.
//!
//! An error names the resource, the field path and the reason, e.g.
//! `IPPool "p1": spec.blockSize 33: must be between 20 and 32`. A checker
//! collects every problem of a resource rather than stopping at the first,
//! so one `tortie apply` run shows them all.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use tortie_selector::Selector;

use crate::scalar;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the document root, e.g. `spec.ingress[0].protocol`.
    pub path: String,
    /// The offending value as the user wrote it, when there is one.
    pub value: Option<String>,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} {}: {}", self.path, v, self.reason),
            None => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// Everything wrong with one resource.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// `IPPool "p1"` or `NetworkPolicy "shop/web"`.
    pub resource: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.resource)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            e.fmt(f)?;
        }
        Ok(())
    }
}

/// Collects field errors while a kind's rules run.
#[derive(Default)]
pub struct Checker {
    pub(crate) errors: Vec<FieldError>,
}

/// Formats a string value for an error message.
pub(crate) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

impl Checker {
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Records a problem with a value the user wrote.
    pub fn bad(
        &mut self,
        path: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) {
        self.errors.push(FieldError {
            path: path.into(),
            value: Some(value.to_string()),
            reason: reason.into(),
        });
    }

    /// Records a problem that has no single value (missing or conflicting fields).
    pub fn fail(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            value: None,
            reason: reason.into(),
        });
    }

    pub fn check(&mut self, ok: bool, path: &str, reason: &str) {
        if !ok {
            self.fail(path, reason);
        }
    }

    /// A selector field. `global()` is forbidden unless `allow_global`.
    pub fn selector(&mut self, path: &str, s: &str, allow_global: bool) -> Option<Selector> {
        if s.len() > 1024 {
            self.fail(path, "selector is longer than 1024 characters");
            return None;
        }
        match Selector::parse(s) {
            Ok(sel) => {
                if !allow_global && sel.uses_global() {
                    self.bad(path, quoted(s), "global() is not allowed here");
                }
                Some(sel)
            }
            Err(e) => {
                self.bad(path, quoted(s), format!("invalid selector: {e}"));
                None
            }
        }
    }

    /// A selector that is optional: empty means "not set".
    pub fn opt_selector(&mut self, path: &str, s: &str, allow_global: bool) -> Option<Selector> {
        if s.is_empty() {
            None
        } else {
            self.selector(path, s, allow_global)
        }
    }

    pub fn cidr(&mut self, path: &str, s: &str) -> Option<IpNet> {
        scalar::parse_cidr(s)
            .map_err(|e| self.bad(path, quoted(s), e))
            .ok()
    }

    pub fn strict_cidr(&mut self, path: &str, s: &str) -> Option<IpNet> {
        scalar::parse_strict_cidr(s)
            .map_err(|e| self.bad(path, quoted(s), e))
            .ok()
    }

    pub fn ip(&mut self, path: &str, s: &str) -> Option<std::net::IpAddr> {
        scalar::parse_ip(s)
            .map_err(|e| self.bad(path, quoted(s), e))
            .ok()
    }

    pub fn ipv4(&mut self, path: &str, s: &str) {
        match self.ip(path, s) {
            Some(ip) if !ip.is_ipv4() => self.bad(path, quoted(s), "must be an IPv4 address"),
            _ => {}
        }
    }

    pub fn ipv6(&mut self, path: &str, s: &str) {
        match self.ip(path, s) {
            Some(ip) if !ip.is_ipv6() => self.bad(path, quoted(s), "must be an IPv6 address"),
            _ => {}
        }
    }

    pub fn mac(&mut self, path: &str, s: &str) {
        if let Err(e) = scalar::parse_mac(s) {
            self.bad(path, quoted(s), e);
        }
    }

    pub fn range(&mut self, path: &str, v: i64, lo: i64, hi: i64) {
        if v < lo || v > hi {
            self.bad(path, v, format!("must be between {lo} and {hi}"));
        }
    }

    pub fn duration(&mut self, path: &str, s: &str) {
        if let Err(e) = scalar::parse_go_duration(s) {
            self.bad(path, quoted(s), e);
        }
    }

    pub fn one_of(&mut self, path: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.bad(
                path,
                quoted(value),
                format!("must be one of {}", allowed.join(", ")),
            );
        }
    }

    /// Like `one_of`, ignoring ASCII case (log severities).
    pub fn one_of_ignore_case(&mut self, path: &str, value: &str, allowed: &[&str]) {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
            self.bad(
                path,
                quoted(value),
                format!("must be one of {}", allowed.join(", ")),
            );
        }
    }

    pub fn subdomain(&mut self, path: &str, s: &str) {
        if !scalar::is_dns_subdomain(s) {
            self.bad(
                path,
                quoted(s),
                "must be a DNS subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
            );
        }
    }

    pub fn interface_name(&mut self, path: &str, s: &str) {
        if !scalar::is_interface_name(s) {
            self.bad(path, quoted(s), "must be 1-15 characters of [a-zA-Z0-9_.-]");
        }
    }

    pub fn as_number(&mut self, path: &str, asn: &scalar::AsNumber) {
        if let Err(e) = asn.value() {
            self.bad(path, asn, e);
        }
    }

    pub fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for (k, v) in labels {
            if let Err(e) = tortie_selector::labels::validate_label_key(k) {
                self.bad(
                    path.to_string(),
                    quoted(k),
                    format!("invalid label key: {e}"),
                );
            }
            if let Err(e) = tortie_selector::labels::validate_label_value(v) {
                self.bad(
                    format!("{path}.{k}"),
                    quoted(v),
                    format!("invalid label value: {e}"),
                );
            }
        }
    }

    pub fn annotations(&mut self, path: &str, annotations: &BTreeMap<String, String>) {
        let mut total = 0usize;
        for (k, v) in annotations {
            total += k.len() + v.len();
            if let Err(e) = tortie_selector::labels::validate_annotation_key(k) {
                self.bad(path, quoted(k), format!("invalid annotation key: {e}"));
            }
        }
        if total > 256 * 1024 {
            self.fail(path, "annotations total more than 256 KiB");
        }
    }
}
