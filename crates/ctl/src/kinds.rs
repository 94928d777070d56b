//! Kind and namespace arguments of the resource commands.

use anyhow::{Result, bail};
use tortie_model::Kind;

/// A kind named on the command line: singular, plural or short alias, any case.
pub fn parse_kind(arg: &str) -> Result<Kind> {
    match Kind::from_cli_name(arg) {
        Some(k) => Ok(k),
        None => {
            let known: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
            bail!(
                "resource type '{arg}' is not supported; known types: {}",
                known.join(", ")
            )
        }
    }
}

/// The namespace a command works in for `kind`: `-n`, else `default`;
/// none for cluster kinds, where `-n` is an error.
pub fn namespace_for(kind: Kind, cli: Option<&str>) -> Result<String> {
    match (kind.namespaced(), cli) {
        (true, Some(ns)) => Ok(ns.to_string()),
        (true, None) => Ok("default".to_string()),
        (false, Some(_)) => bail!("{kind} is not namespaced"),
        (false, None) => Ok(String::new()),
    }
}
