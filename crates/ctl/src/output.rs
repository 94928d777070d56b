//! Output formats of `get`: aligned tables (calicoctl's `ps` and `wide`),
//! custom columns, YAML and JSON.
//!
//! Tables are laid out the way calicoctl's Go tabwriter lays them out
//! (minimum cell width 5, padding 3, every cell — the last too — followed by
//! its padding), so scripts that cut columns keep working. YAML has its keys
//! sorted, as calicoctl's has; JSON keeps the resource's field order.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use serde::Serialize;

/// The `-o` formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Wide,
    Yaml,
    Json,
    CustomColumns(Vec<String>),
}

impl OutputFormat {
    pub fn parse(s: &str) -> Result<OutputFormat> {
        Ok(match s {
            "ps" | "" => OutputFormat::Table,
            "wide" => OutputFormat::Wide,
            "yaml" => OutputFormat::Yaml,
            "json" => OutputFormat::Json,
            _ => {
                if let Some(cols) = s.strip_prefix("custom-columns=") {
                    let cols: Vec<String> = cols
                        .split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if cols.is_empty() {
                        bail!(
                            "custom-columns needs at least one column name, e.g. -o custom-columns=NAME,CIDR"
                        );
                    }
                    OutputFormat::CustomColumns(cols)
                } else if s.starts_with("go-template") {
                    bail!(
                        "unrecognized output format '{s}': Go templates are not supported by tortie; use -o json or -o yaml and a JSON/YAML tool"
                    )
                } else {
                    bail!(
                        "unrecognized output format '{s}': use ps, wide, yaml, json or custom-columns=COL,..."
                    )
                }
            }
        })
    }
}

/// Lays out rows like Go's tabwriter with minwidth 5, padding 3.
pub fn render_table(header: &[String], rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 5;
    const PADDING: usize = 3;
    let columns = header.len();
    let mut widths = vec![MIN_WIDTH; columns];
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        for (i, cell) in row.iter().enumerate().take(columns) {
            let pad = widths[i] - cell.chars().count();
            let _ = write!(out, "{cell}{}", " ".repeat(pad));
        }
        out.push('\n');
    }
    out
}

/// Rebuilds every object with its keys in sorted order.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// YAML with sorted keys.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String> {
    let v = sorted(serde_json::to_value(value)?);
    Ok(serde_yaml_ng::to_string(&v)?)
}

/// Indented JSON in the value's own field order.
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_calicoctl_layout() {
        let header = vec![
            "NAME".to_string(),
            "CIDR".to_string(),
            "SELECTOR".to_string(),
        ];
        let rows = vec![vec![
            "default-ipv4-ippool".to_string(),
            "192.168.0.0/16".to_string(),
            "all()".to_string(),
        ]];
        assert_eq!(
            render_table(&header, &rows),
            "NAME                  CIDR             SELECTOR   \ndefault-ipv4-ippool   192.168.0.0/16   all()      \n"
        );
        // Short columns are at least 5 wide.
        let t = render_table(&["A".to_string()], &[vec!["b".to_string()]]);
        assert_eq!(t, "A    \nb    \n");
    }

    #[test]
    fn formats_parse() {
        assert_eq!(OutputFormat::parse("wide").ok(), Some(OutputFormat::Wide));
        assert_eq!(
            OutputFormat::parse("custom-columns=NAME,CIDR").ok(),
            Some(OutputFormat::CustomColumns(vec![
                "NAME".into(),
                "CIDR".into()
            ]))
        );
        let err = OutputFormat::parse("xml").unwrap_err().to_string();
        assert!(err.starts_with("unrecognized output format 'xml'"), "{err}");
    }

    #[test]
    fn yaml_keys_are_sorted() {
        let v = serde_json::json!({"kind": "IPPool", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "p"}});
        assert_eq!(
            to_yaml(&v).unwrap(),
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p\n"
        );
    }
}
