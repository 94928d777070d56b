//! Property tests.
//!
//! The generated-tree properties use a model of the language written here,
//! independently of the crate: a tree type, a direct evaluator, and a
//! "noisy" printer that spells each tree with random whitespace, quoting,
//! operator spellings, redundant parentheses and double negations. The
//! crate must parse the noisy text into the same canonical form as the
//! tree built through the public constructors, print idempotently, and
//! evaluate exactly like the model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tortie_selector::Selector;

#[derive(Debug, Clone, Copy)]
enum Op {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone)]
enum Model {
    All,
    Global,
    Has(String),
    Compare(String, Op, String),
    Set(String, bool, Vec<String>),
    Not(Box<Model>),
    And(Vec<Model>),
    Or(Vec<Model>),
}

/// Keys include the words that are special elsewhere in the language.
const KEYS: &[&str] = &[
    "a",
    "b",
    "app",
    "x.y/z-1_",
    "contains",
    "in",
    "not",
    "has",
    "all",
    "global",
    "startswith",
    "with",
];

const LABEL_VALUES: &[&str] = &["", "a", "b", "ab", "ba", "'", "\"", "a b", "&&", "(x)"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

/// Values with any of the awkward bytes, but never both quote characters.
fn value() -> impl Strategy<Value = String> {
    "[ab'\" &|(){}!,=\t]{0,4}".prop_filter("cannot hold both quotes", |v| {
        !(v.contains('"') && v.contains('\''))
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Equals),
        Just(Op::NotEquals),
        Just(Op::Contains),
        Just(Op::StartsWith),
        Just(Op::EndsWith),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    let leaf = prop_oneof![
        1 => Just(Model::All),
        1 => Just(Model::Global),
        3 => key().prop_map(Model::Has),
        6 => (key(), op(), value()).prop_map(|(k, o, v)| Model::Compare(k, o, v)),
        3 => (key(), any::<bool>(), prop::collection::vec(value(), 0..4))
            .prop_map(|(k, n, vs)| Model::Set(k, n, vs)),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|m| Model::Not(Box::new(m))),
            prop::collection::vec(inner.clone(), 2..5).prop_map(Model::And),
            prop::collection::vec(inner, 2..5).prop_map(Model::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), prop::sample::select(LABEL_VALUES), 0..6)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, v.to_owned())).collect())
}

fn eval(model: &Model, labels: &BTreeMap<String, String>) -> bool {
    let get = |k: &String| labels.get(k).map(String::as_str);
    match model {
        Model::All | Model::Global => true,
        Model::Has(k) => get(k).is_some(),
        Model::Compare(k, op, v) => match (get(k), op) {
            (None, Op::NotEquals) => true,
            (None, _) => false,
            (Some(actual), Op::Equals) => actual == v,
            (Some(actual), Op::NotEquals) => actual != v,
            (Some(actual), Op::Contains) => actual.contains(v.as_str()),
            (Some(actual), Op::StartsWith) => actual.starts_with(v.as_str()),
            (Some(actual), Op::EndsWith) => actual.ends_with(v.as_str()),
        },
        Model::Set(k, negated, values) => {
            let found = get(k).is_some_and(|actual| values.iter().any(|v| v == actual));
            found != *negated
        }
        Model::Not(inner) => !eval(inner, labels),
        Model::And(operands) => operands.iter().all(|m| eval(m, labels)),
        Model::Or(operands) => operands.iter().any(|m| eval(m, labels)),
    }
}

fn build(model: &Model) -> Selector {
    let ok = "generated keys and values are valid";
    match model {
        Model::All => Selector::all(),
        Model::Global => Selector::global(),
        Model::Has(k) => Selector::has(k).expect(ok),
        Model::Compare(k, op, v) => match op {
            Op::Equals => Selector::label_equals(k, v),
            Op::NotEquals => Selector::label_not_equals(k, v),
            Op::Contains => Selector::label_contains(k, v),
            Op::StartsWith => Selector::label_starts_with(k, v),
            Op::EndsWith => Selector::label_ends_with(k, v),
        }
        .expect(ok),
        Model::Set(k, false, vs) => Selector::label_in(k, vs).expect(ok),
        Model::Set(k, true, vs) => Selector::label_not_in(k, vs).expect(ok),
        Model::Not(inner) => build(inner).negated(),
        Model::And(operands) => Selector::and(&operands.iter().map(build).collect::<Vec<_>>()),
        Model::Or(operands) => Selector::or(&operands.iter().map(build).collect::<Vec<_>>()),
    }
}

/// A small deterministic random source for the noisy printer.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }

    /// Optional whitespace.
    fn ws(&mut self) -> &'static str {
        self.pick(&["", "", " ", "\t", "  ", " \t"])
    }

    /// Required whitespace.
    fn ws1(&mut self) -> &'static str {
        self.pick(&[" ", "\t", "  ", " \t "])
    }

    fn quote(&mut self, v: &str) -> String {
        let q = if v.contains('"') {
            '\''
        } else if v.contains('\'') {
            '"'
        } else if self.chance(2) {
            '\''
        } else {
            '"'
        };
        format!("{q}{v}{q}")
    }
}

/// Spells `model` with random but equivalent syntax. `context` says what
/// the text will be embedded in, which decides where parentheses are
/// needed to keep the tree shape.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    Top,
    AndOperand,
    OrOperand,
    NotOperand,
}

fn noisy(model: &Model, context: Context, n: &mut Noise) -> String {
    let body = match model {
        Model::All => format!("all({})", n.ws()),
        Model::Global => format!("global({})", n.ws()),
        Model::Has(k) => format!("has({}{k}{})", n.ws(), n.ws()),
        Model::Compare(k, op, v) => {
            let spelled = match op {
                Op::Equals => format!("{}==", n.ws()),
                Op::NotEquals => format!("{}!=", n.ws()),
                Op::Contains => format!("{}contains", n.ws1()),
                Op::StartsWith => format!(
                    "{}{}",
                    n.ws1(),
                    n.pick(&["starts with", "startswith", "starts \t with"])
                ),
                Op::EndsWith => format!(
                    "{}{}",
                    n.ws1(),
                    n.pick(&["ends with", "endswith", "ends\twith"])
                ),
            };
            format!("{k}{spelled}{}{}", n.ws(), n.quote(v))
        }
        Model::Set(k, negated, values) => {
            let word = if *negated {
                n.pick(&["not in", "notin", "not\t in"])
            } else {
                "in"
            };
            let mut items: Vec<String> = Vec::new();
            for v in values {
                items.push(n.quote(v));
                if n.chance(4) {
                    items.push(n.quote(v));
                }
            }
            let sep = format!("{},{}", n.ws(), n.ws());
            let trailing = if !items.is_empty() && n.chance(3) {
                ","
            } else {
                ""
            };
            format!(
                "{k}{}{word}{}{{{}{}{trailing}{}}}",
                n.ws1(),
                n.ws(),
                n.ws(),
                items.join(&sep),
                n.ws()
            )
        }
        Model::Not(inner) => {
            let bangs = n.pick(&["!", "! ", "!!!", "!\t!!"]);
            format!("{bangs}{}", noisy(inner, Context::NotOperand, n))
        }
        Model::And(operands) => join(operands, "&&", Context::AndOperand, n),
        Model::Or(operands) => join(operands, "||", Context::OrOperand, n),
    };
    // `&&` binds tighter than `||`, so only an `&&` group inside an `||`
    // may go without parentheses.
    let needs_parens = match model {
        Model::And(_) => context != Context::Top && context != Context::OrOperand,
        Model::Or(_) => context != Context::Top,
        _ => false,
    };
    let mut text = if needs_parens || n.chance(5) {
        format!("({}{body}{})", n.ws(), n.ws())
    } else {
        body
    };
    // An even number of extra negations changes nothing; `!` binds to a
    // single primary, so the operand must be parenthesised.
    if n.chance(8) {
        text = format!("!!({text})");
    }
    text
}

fn join(operands: &[Model], op: &str, context: Context, n: &mut Noise) -> String {
    let mut out = String::new();
    for (i, operand) in operands.iter().enumerate() {
        if i > 0 {
            out.push_str(n.ws());
            out.push_str(op);
            out.push_str(n.ws());
        }
        out.push_str(&noisy(operand, context, n));
    }
    out
}

fn reparse(canonical: &str) -> Result<Selector, TestCaseError> {
    Selector::parse(canonical)
        .map_err(|e| TestCaseError::fail(format!("canonical {canonical:?} does not parse: {e}")))
}

/// Text that parsed must print a canonical form that parses back to the
/// same canonical form.
fn check_idempotent(text: &str) -> Result<(), TestCaseError> {
    if let Ok(sel) = Selector::parse(text) {
        let again = reparse(sel.canonical())?;
        prop_assert_eq!(sel.canonical(), again.canonical(), "input {:?}", text);
    }
    Ok(())
}

/// Fragments that make random text likely to be nearly valid.
const FRAGMENTS: &[&str] = &[
    "a", "b", " ", "\t", "(", ")", "!", "&&", "||", "==", "!=", "\"x\"", "'y'", "\"", "'", "in",
    "not", "{", "}", ",", "has(a)", "has(", "all()", "global()", "contains", "starts", "with", "=",
    "&", "|", "\n", "é",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// (a) Arbitrary bytes never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check_idempotent(&String::from_utf8_lossy(&bytes))?;
    }

    /// (a) Arbitrary strings never panic.
    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check_idempotent(&text)?;
    }

    /// (a) Near-valid token soup never panics and prints idempotently.
    #[test]
    fn token_soup_never_panics(parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24)) {
        check_idempotent(&parts.concat())?;
    }

    /// (b) Generated trees: noisy spelling parses to the constructed
    /// canonical form, printing is idempotent, and evaluation agrees with
    /// the model.
    #[test]
    fn generated_trees_round_trip_and_evaluate(
        model in model(),
        seed in any::<u64>(),
        maps in prop::collection::vec(label_map(), 1..8),
    ) {
        let built = build(&model);
        let text = noisy(&model, Context::Top, &mut Noise(seed | 1));
        let parsed = Selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("noisy {text:?} does not parse: {e}")))?;
        prop_assert_eq!(parsed.canonical(), built.canonical(), "noisy input {:?}", text);

        let reparsed = reparse(built.canonical())?;
        prop_assert_eq!(reparsed.canonical(), built.canonical());
        prop_assert_eq!(reparsed.unique_id(), built.unique_id());

        for labels in &maps {
            let expected = eval(&model, labels);
            prop_assert_eq!(built.matches(labels), expected, "built {} on {:?}", built, labels);
            prop_assert_eq!(reparsed.matches(labels), expected, "reparsed {} on {:?}", reparsed, labels);
            prop_assert_eq!(parsed.matches(labels), expected, "parsed {:?} on {:?}", text, labels);
        }
    }

    /// (c) Reordering and duplicating set items gives the same canonical form.
    #[test]
    fn set_order_and_duplicates_do_not_matter(
        values in prop::collection::vec(value(), 0..6),
        shuffled_seed in any::<u64>(),
        negated in any::<bool>(),
    ) {
        let word = if negated { "not in" } else { "in" };
        let spell = |vs: &[String]| {
            let items: Vec<String> = vs
                .iter()
                .map(|v| if v.contains('"') { format!("'{v}'") } else { format!("\"{v}\"") })
                .collect();
            format!("a {word} {{{}}}", items.join(", "))
        };
        let mut noise = Noise(shuffled_seed | 1);
        let mut scrambled = values.clone();
        for v in &values {
            if noise.chance(2) {
                scrambled.push(v.clone());
            }
        }
        for i in (1..scrambled.len()).rev() {
            let j = (noise.next() % (i as u64 + 1)) as usize;
            scrambled.swap(i, j);
        }
        let original = Selector::parse(&spell(&values)).expect("generated set parses");
        let reordered = Selector::parse(&spell(&scrambled)).expect("generated set parses");
        prop_assert_eq!(original.canonical(), reordered.canonical());
        prop_assert_eq!(&original, &reordered);

        let mut sorted = values.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(original.canonical(), spell(&sorted));
    }
}
