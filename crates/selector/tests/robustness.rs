//! Hostile inputs: deep nesting, long runs of `!`, long chains and very
//! large inputs must give a result or an error without overflowing the
//! stack or taking super-linear time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tortie_selector::{MAX_NESTING, Selector};

const HUGE: usize = 100_000;

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

#[test]
fn hundred_thousand_open_parens() {
    let err = Selector::parse(&"(".repeat(HUGE)).unwrap_err();
    assert_eq!(err.position, MAX_NESTING);
    assert_eq!(
        err.to_string(),
        "selector nested too deeply (max 128 levels) at position 128"
    );
}

#[test]
fn hundred_thousand_balanced_parens() {
    let text = format!("{}has(a){}", "(".repeat(HUGE), ")".repeat(HUGE));
    let err = Selector::parse(&text).unwrap_err();
    assert!(err.message.contains("nested too deeply"), "{err}");
}

#[test]
fn nesting_limit_is_exact() {
    let at_limit = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(Selector::parse(&at_limit).unwrap().canonical(), "has(a)");
    let over = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    assert!(Selector::parse(&over).is_err());
}

#[test]
fn hundred_thousand_nots() {
    assert!(Selector::parse(&"!".repeat(HUGE)).is_err());
    let even = format!("{}a == \"b\"", "!".repeat(HUGE));
    assert_eq!(Selector::parse(&even).unwrap().canonical(), r#"a == "b""#);
    let odd = format!("{}a == \"b\"", "!".repeat(HUGE + 1));
    assert_eq!(Selector::parse(&odd).unwrap().canonical(), r#"!a == "b""#);
}

#[test]
fn hundred_thousand_not_parens() {
    let err = Selector::parse(&"!(".repeat(HUGE)).unwrap_err();
    assert!(err.message.contains("nested too deeply"), "{err}");
}

/// The deepest tree the parser accepts: every parenthesis level adds an
/// `||` and a `!` or an `&&` node. Run on a thread with half the default
/// test stack to leave a margin.
#[test]
fn deepest_accepted_tree_prints_evaluates_and_drops() {
    fn nested(levels: usize) -> String {
        let mut text = String::from("has(x)");
        for i in 0..levels {
            text = if i % 2 == 0 {
                format!("has(a) || !({text})")
            } else {
                format!("has(b) && ({text})")
            };
        }
        text
    }
    assert!(Selector::parse(&nested(MAX_NESTING + 1)).is_err());
    let text = nested(MAX_NESTING);
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let sel = Selector::parse(&text).expect("within the nesting limit");
            let again = Selector::parse(sel.canonical()).expect("canonical re-parses");
            assert_eq!(sel, again);
            std::hint::black_box(sel.matches(&no_labels()));
            let prefixed = sel.with_label_prefix("pcns.");
            assert!(prefixed.canonical().contains("has(pcns.x)"));
            drop(sel);
        })
        .expect("spawn")
        .join()
        .expect("no stack overflow");
}

#[test]
fn long_and_or_chains() {
    for op in [" && ", " || "] {
        let text = vec![r#"a == "b""#; HUGE].join(op);
        let sel = Selector::parse(&text).expect("long chains are fine");
        assert_eq!(sel.canonical().len(), text.len() + 2);
        let mut labels = no_labels();
        labels.insert("a".into(), "b".into());
        assert!(sel.matches(&labels));
    }
}

#[test]
fn long_set_literal() {
    let items: Vec<String> = (0..HUGE).rev().map(|i| format!("'v{i}'")).collect();
    let text = format!("a in {{{}}}", items.join(","));
    let sel = Selector::parse(&text).expect("large sets are fine");
    let mut labels = no_labels();
    labels.insert("a".into(), "v77777".into());
    assert!(sel.matches(&labels));
    assert!(sel.canonical().starts_with(r#"a in {"v0", "v1", "v10""#));
}

/// Builds a pathological input of about `n` bytes.
type MakeInput = fn(usize) -> String;

/// Each shape is parsed at two sizes; the larger (8×) must not take more
/// than 40× as long (quadratic would be 64×), and the whole test has a
/// generous absolute bound.
/// Super-linear behaviour on megabyte inputs would blow both.
#[test]
fn parse_time_is_linear() {
    fn time(text: &str) -> Duration {
        let start = Instant::now();
        let _ = Selector::parse(text);
        start.elapsed()
    }
    let shapes: [(&str, MakeInput); 8] = [
        ("string", |n| format!("a == \"{}\"", "x".repeat(n))),
        ("unterminated string", |n| {
            format!("a == \"{}", "x".repeat(n))
        }),
        ("long label", |n| "k".repeat(n)),
        ("nots", |n| "!".repeat(n)),
        ("chain", |n| "has(a) && ".repeat(n / 10) + "has(a)"),
        ("set", |n| format!("a in {{{}}}", "'x',".repeat(n / 4))),
        ("whitespace", |n| format!("{}has(a)", " \t".repeat(n / 2))),
        ("starts spaces", |n| format!("a starts{}", " ".repeat(n))),
    ];
    let overall = Instant::now();
    for (name, make) in &shapes {
        let small = make(125_000);
        let large = make(1_000_000);
        // Warm up, then take the best of three to reduce noise.
        let _ = time(&small);
        let t_small = (0..3).map(|_| time(&small)).min().expect("three runs");
        let t_large = (0..3).map(|_| time(&large)).min().expect("three runs");
        let bound = t_small * 40 + Duration::from_millis(50);
        assert!(
            t_large <= bound,
            "{name}: {t_small:?} for 125k bytes but {t_large:?} for 1M bytes"
        );
    }
    assert!(overall.elapsed() < Duration::from_secs(60));
}
