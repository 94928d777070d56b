//! `selector check` and `selector match`: the selector language from the
//! command line, for trying expressions before they go into a policy.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use tortie_selector::Selector;

#[derive(Subcommand, Debug, Clone)]
pub enum SelectorCommand {
    /// Parse a selector and print its canonical form
    Check {
        /// The selector expression
        expr: String,
    },
    /// Evaluate a selector against a set of labels
    Match(MatchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MatchArgs {
    /// The selector expression
    pub expr: String,
    /// Labels as a JSON object of strings, e.g. '{"app": "web"}'
    #[arg(long)]
    pub labels: String,
}

pub fn run(cmd: &SelectorCommand) -> ExitCode {
    match cmd {
        SelectorCommand::Check { expr } => match Selector::parse(expr) {
            Ok(s) => {
                println!("{}", s.canonical());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invalid selector {expr:?}: {e}");
                ExitCode::FAILURE
            }
        },
        SelectorCommand::Match(args) => {
            let selector = match Selector::parse(&args.expr) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("invalid selector {:?}: {e}", args.expr);
                    return ExitCode::FAILURE;
                }
            };
            let labels: BTreeMap<String, String> = match serde_json::from_str(&args.labels) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!(
                        "invalid --labels {:?}: expected a JSON object of string values: {e}",
                        args.labels
                    );
                    return ExitCode::FAILURE;
                }
            };
            println!("{}", selector.matches(&labels));
            ExitCode::SUCCESS
        }
    }
}
