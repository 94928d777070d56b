//! Every example, evaluation row, canonical form and error case from
//! spec/selectors.md, section by section.

use std::collections::BTreeMap;

use tortie_selector::{Selector, normalise};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn canonical(text: &str) -> String {
    match Selector::parse(text) {
        Ok(sel) => sel.canonical().to_owned(),
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn assert_rejected(text: &str) {
    if let Ok(sel) = Selector::parse(text) {
        panic!("{text:?} should be rejected, parsed as {sel}");
    }
}

fn error_of(text: &str) -> String {
    match Selector::parse(text) {
        Ok(sel) => panic!("{text:?} should be rejected, parsed as {sel}"),
        Err(e) => e.to_string(),
    }
}

// §1 Lexical rules ---------------------------------------------------------

#[test]
fn s1_whitespace_is_only_space_and_tab() {
    assert_eq!(canonical(" \ta\t==\t\"x\" \t"), r#"a == "x""#);
    for bad in [
        "a == \"x\"\n",
        "\na == \"x\"",
        "a == \"x\"\r",
        "a ==\u{a0}\"x\"",
        "a ==\u{0b}\"x\"",
        "a ==\u{0c}\"x\"",
    ] {
        assert_rejected(bad);
    }
}

#[test]
fn s1_strings_end_at_the_next_matching_quote_without_escapes() {
    assert_eq!(
        canonical(r#"a == "it's (x && y) || {z}""#),
        r#"a == "it's (x && y) || {z}""#
    );
    assert_eq!(canonical(r#"a == 'say "hi"'"#), r#"a == 'say "hi"'"#);
    assert_eq!(canonical(r#"a == "back\slash""#), r#"a == "back\slash""#);
    assert_eq!(canonical(r#"a == """#), r#"a == """#);
    // A backslash does not escape: the string ends at the second quote and
    // the rest is trailing content.
    assert_rejected(r#"a == "x\"y""#);
}

#[test]
fn s1_not_equals_is_checked_before_not() {
    assert_eq!(canonical(r#"a!="x""#), r#"a != "x""#);
    assert_eq!(canonical(r#"!a=="x""#), r#"!a == "x""#);
}

#[test]
fn s1_has_all_global_tokens() {
    assert_eq!(canonical("has( a )"), "has(a)");
    assert_eq!(canonical("has(\ta\t)"), "has(a)");
    assert_eq!(canonical("all( )"), "all()");
    assert_eq!(canonical("global(\t)"), "global()");
    assert_eq!(canonical("has(x.y/z-1_)"), "has(x.y/z-1_)");
}

#[test]
fn s1_operator_spellings() {
    let cases = [
        (r#"a contains "x""#, r#"a contains "x""#),
        (r#"a starts with "x""#, r#"a starts with "x""#),
        (r#"a startswith "x""#, r#"a starts with "x""#),
        ("a starts \t  with \"x\"", r#"a starts with "x""#),
        (r#"a ends with "x""#, r#"a ends with "x""#),
        (r#"a endswith "x""#, r#"a ends with "x""#),
        ("a ends\twith \"x\"", r#"a ends with "x""#),
        (r#"a not in {"x"}"#, r#"a not in {"x"}"#),
        (r#"a notin {"x"}"#, r#"a not in {"x"}"#),
        ("a not \t in {\"x\"}", r#"a not in {"x"}"#),
        (r#"a in {"x"}"#, r#"a in {"x"}"#),
    ];
    for (input, expected) in cases {
        assert_eq!(canonical(input), expected, "input {input:?}");
    }
}

#[test]
fn s1_operator_words_need_a_word_boundary() {
    assert_eq!(canonical(r#"a in{"x"}"#), r#"a in {"x"}"#);
    assert_eq!(canonical(r#"a contains"x""#), r#"a contains "x""#);
    assert_eq!(canonical(r#"a notin{"x"}"#), r#"a not in {"x"}"#);
    assert_eq!(canonical(r#"a startswith'x'"#), r#"a starts with "x""#);
    assert_rejected(r#"a inf {"x"}"#);
    assert_rejected(r#"a starts withs "x""#);
    assert_rejected(r#"a containsx "x""#);
    assert_rejected(r#"a notinx {"x"}"#);
    assert_rejected(r#"a in_ {"x"}"#);
    assert_rejected(r#"a in. {"x"}"#);
}

#[test]
fn s1_keywords_are_only_special_after_a_label() {
    assert_eq!(
        canonical(r#"contains contains "contains""#),
        r#"contains contains "contains""#
    );
    assert_eq!(canonical(r#"has == "x""#), r#"has == "x""#);
    assert_eq!(canonical(r#"in in {"in"}"#), r#"in in {"in"}"#);
    assert_eq!(canonical(r#"not in {"a"}"#), r#"not in {"a"}"#);
    assert_eq!(canonical(r#"not not in {"a"}"#), r#"not not in {"a"}"#);
    assert_eq!(canonical(r#"all == "x""#), r#"all == "x""#);
    assert_eq!(canonical(r#"global != "x""#), r#"global != "x""#);
    assert_eq!(
        canonical(r#"startswith startswith "x""#),
        r#"startswith starts with "x""#
    );
    assert_eq!(canonical("has(has)"), "has(has)");
    assert_eq!(canonical("has(all) && has(in)"), "(has(all) && has(in))");
}

#[test]
fn s1_there_are_no_numeric_literals() {
    assert_rejected("a == 1");
    // A digit run is a label name, so it may be compared like any label.
    assert_eq!(canonical(r#"1 == "1""#), r#"1 == "1""#);
}

#[test]
fn s1_label_length_limit() {
    let max = "k".repeat(512);
    assert_eq!(canonical(&format!("has({max})")), format!("has({max})"));
    assert_eq!(
        canonical(&format!("{max} == 'v'")),
        format!("{max} == \"v\"")
    );
    let over = "k".repeat(513);
    assert_eq!(
        error_of(&format!("{over} == 'v'")),
        "label too long (max 512 bytes) at position 0"
    );
    assert_eq!(
        error_of(&format!("has({over})")),
        "label too long (max 512 bytes) at position 4"
    );
}

// §2 Grammar ----------------------------------------------------------------

#[test]
fn s2_empty_selector_is_all() {
    for empty in ["", " ", "\t", " \t \t"] {
        let sel = Selector::parse(empty).expect("empty parses");
        assert!(sel.is_all());
        assert_eq!(sel.canonical(), "all()");
    }
}

#[test]
fn s2_precedence() {
    assert_eq!(canonical(r#"!a == "x""#), r#"!a == "x""#);
    assert_eq!(
        canonical(r#"a == "1" || b == "2" && c == "3""#),
        r#"(a == "1" || (b == "2" && c == "3"))"#
    );
    assert_eq!(
        canonical(r#"a == "1" && b == "2" || c == "3""#),
        r#"((a == "1" && b == "2") || c == "3")"#
    );
    assert_eq!(
        canonical(r#"!a == "1" && !b == "2""#),
        r#"(!a == "1" && !b == "2")"#
    );
}

#[test]
fn s2_any_number_of_nots_with_parity() {
    assert_eq!(canonical("has(a)"), "has(a)");
    assert_eq!(canonical("!has(a)"), "!has(a)");
    assert_eq!(canonical("!!has(a)"), "has(a)");
    assert_eq!(canonical("! ! !has(a)"), "!has(a)");
    assert_eq!(canonical("!!!!has(a)"), "has(a)");
    assert_eq!(canonical("!(!has(a))"), "has(a)");
    assert_eq!(canonical("!(!(!has(a)))"), "!has(a)");
}

#[test]
fn s2_sets() {
    assert_eq!(canonical("a in {}"), "a in {}");
    assert_eq!(canonical("a in { }"), "a in {}");
    assert_eq!(canonical(r#"a in {"a",}"#), r#"a in {"a"}"#);
    assert_eq!(canonical(r#"a in { "b" , 'a' , }"#), r#"a in {"a", "b"}"#);
    assert_eq!(
        canonical(r#"a not in {'"', "'"}"#),
        r#"a not in {'"', "'"}"#
    );
}

#[test]
fn s2_all_input_must_be_consumed() {
    assert_eq!(
        error_of(r#"a == "b" c"#),
        "unexpected content after selector at position 9"
    );
    assert_eq!(
        error_of("has(a) has(b)"),
        "unexpected content after selector at position 7"
    );
    assert_rejected(r#"a == "b" == "c""#);
    assert_rejected("all() all()");
}

// §3 Evaluation -------------------------------------------------------------

#[test]
fn s3_evaluation_table() {
    let l = labels(&[("a", "apple"), ("empty", ""), ("b", "banana")]);
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("all()", true),
        ("global()", true),
        ("has(a)", true),
        ("has(empty)", true),
        ("has(missing)", false),
        (r#"a == "apple""#, true),
        (r#"a == "Apple""#, false),
        (r#"a == "appl""#, false),
        (r#"missing == "x""#, false),
        (r#"missing == """#, false),
        (r#"empty == """#, true),
        (r#"a != "apple""#, false),
        (r#"a != "pear""#, true),
        (r#"missing != "x""#, true),
        (r#"missing != """#, true),
        (r#"a in {"apple", "pear"}"#, true),
        (r#"a in {"pear"}"#, false),
        (r#"missing in {"x"}"#, false),
        (r#"missing in {""}"#, false),
        (r#"empty in {""}"#, true),
        ("a in {}", false),
        ("missing in {}", false),
        (r#"a not in {"apple"}"#, false),
        (r#"a not in {"pear"}"#, true),
        (r#"missing not in {"x"}"#, true),
        ("a not in {}", true),
        ("missing not in {}", true),
        (r#"a contains "ppl""#, true),
        (r#"a contains "PPL""#, false),
        (r#"a contains """#, true),
        (r#"empty contains """#, true),
        (r#"missing contains """#, false),
        (r#"a starts with "app""#, true),
        (r#"a starts with "ple""#, false),
        (r#"a starts with """#, true),
        (r#"missing starts with """#, false),
        (r#"a ends with "ple""#, true),
        (r#"a ends with "app""#, false),
        (r#"a ends with """#, true),
        (r#"missing ends with """#, false),
        ("!has(a)", false),
        ("!has(missing)", true),
        ("!all()", false),
        ("!global()", false),
        (r#"has(a) && b == "banana""#, true),
        (r#"has(a) && b == "cherry""#, false),
        (r#"has(missing) || b == "banana""#, true),
        (r#"has(missing) || b == "cherry""#, false),
        (r#"!(has(missing) || b == "cherry")"#, true),
    ];
    for (text, expected) in cases {
        let sel = Selector::parse(text).expect("table selectors are valid");
        assert_eq!(sel.matches(&l), *expected, "{text:?} on {l:?}");
    }
}

#[test]
fn s3_keys_are_case_sensitive() {
    let l = labels(&[("App", "web")]);
    assert!(!Selector::parse("has(app)").unwrap().matches(&l));
    assert!(Selector::parse("has(App)").unwrap().matches(&l));
}

#[test]
fn s3_not_all_matches_nothing() {
    let sel = Selector::parse("!all()").unwrap();
    assert!(!sel.matches(&labels(&[])));
    assert!(!sel.matches(&labels(&[("a", "b")])));
}

// §4 Canonical form -------------------------------------------------------

#[test]
fn s4_examples_table() {
    let cases = [
        ("", "all()"),
        (" (all() )", "all()"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        ("!(k == 'v')", r#"!k == "v""#),
        (r#"a!='"'"#, r#"a != '"'"#),
        (r#"a startswith '"'"#, r#"a starts with '"'"#),
        (r#"a in {"z", "z", "x", "a"}"#, r#"a in {"a", "x", "z"}"#),
        ("x == 'a' && y == 'b'", r#"(x == "a" && y == "b")"#),
        (
            r#"a == "1" || b == "2" && c == "3""#,
            r#"(a == "1" || (b == "2" && c == "3"))"#,
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(canonical(input), expected, "input {input:?}");
        assert_eq!(canonical(expected), expected, "idempotence of {expected:?}");
    }
}

#[test]
fn s4_printing_rules() {
    let cases = [
        ("all()", "all()"),
        ("global()", "global()"),
        (r#"k=="v""#, r#"k == "v""#),
        (r#"k contains'v'"#, r#"k contains "v""#),
        (r#"k ends   with "v""#, r#"k ends with "v""#),
        (r#"k == "it's""#, r#"k == "it's""#),
        ("a in {'b', \"a\", 'b'}", r#"a in {"a", "b"}"#),
        ("a in {'\"', 'a', \"'\"}", r#"a in {'"', "'", "a"}"#),
        ("a not in {}", "a not in {}"),
        ("a in {\"B\", \"a\", \"_\"}", r#"a in {"B", "_", "a"}"#),
        // Redundant parentheses and single-operand groups vanish.
        ("((has(a)))", "has(a)"),
        ("(has(a)) && ((has(b)))", "(has(a) && has(b))"),
        ("((has(a) && has(b)))", "(has(a) && has(b))"),
        // Explicit groups keep the tree shape.
        (
            "(has(a) && has(b)) && has(c)",
            "((has(a) && has(b)) && has(c))",
        ),
        (
            "has(a) && (has(b) && has(c))",
            "(has(a) && (has(b) && has(c)))",
        ),
        ("has(a) && has(b) && has(c)", "(has(a) && has(b) && has(c))"),
        ("has(a) || has(b) || has(c)", "(has(a) || has(b) || has(c))"),
        ("!(has(a) && has(b))", "!(has(a) && has(b))"),
        ("!(all())", "!all()"),
    ];
    for (input, expected) in cases {
        assert_eq!(canonical(input), expected, "input {input:?}");
        assert_eq!(canonical(expected), expected, "idempotence of {expected:?}");
    }
}

#[test]
fn s4_unique_id() {
    assert_eq!(
        Selector::all().unique_id(),
        "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
    );
    assert_eq!(
        Selector::parse("").unwrap().unique_id(),
        "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
    );
    let a = Selector::parse("x=='a'&&y=='b'").unwrap();
    let b = Selector::parse(r#"(x == "a" && y == "b")"#).unwrap();
    assert_eq!(a.unique_id(), b.unique_id());
    assert_ne!(a.unique_id(), Selector::all().unique_id());
    let id = a.unique_id();
    assert!(id.starts_with("s:"));
    assert_eq!(id.len(), 2 + 38, "28 digest bytes are 38 base64 characters");
    assert!(
        id[2..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

#[test]
fn s4_normalise() {
    assert_eq!(
        normalise("  x == 'a' && y == 'b'\n"),
        r#"(x == "a" && y == "b")"#
    );
    assert_eq!(normalise(""), "all()");
    assert_eq!(normalise("   "), "all()");
    assert_eq!(normalise("\n a == 'b' \t"), r#"a == "b""#);
    assert_eq!(normalise("  a = b  "), "a = b");
    assert_eq!(normalise("\t%oops%\n"), "%oops%");
}

// §7 Errors ---------------------------------------------------------------

#[test]
fn s7_every_listed_error_is_rejected() {
    let over = format!("{} == 'x'", "a".repeat(513));
    let cases: &[&str] = &[
        // bare label, label vs label, literal on the left, numbers
        "b",
        "b == b",
        "'b1' == b",
        "\"b1\" == b",
        "a == 1",
        // dangling operators
        r#"a == "b" &&"#,
        "has(x) ||",
        "!",
        "a ",
        "a ==",
        "a in",
        "a contains",
        "&& has(a)",
        // single &, |, =; ===; !==
        "&",
        "|",
        "=",
        r#"a == "b" & c == "d""#,
        r#"a == "b" | c == "d""#,
        r#"a = "b""#,
        r#"a === "b""#,
        r#"a !== "b""#,
        // unterminated strings, mismatched quotes
        r#"a == "FOO'"#,
        r#"a == 'FOO""#,
        r#"a == "FOO"#,
        r#"a in {"x}"#,
        // parentheses
        "(",
        ")",
        "()",
        r#"(a == "b""#,
        r#"a == "b")"#,
        r#"((a == "b")"#,
        "( )",
        // in / not in without a proper set
        r#"a in "x""#,
        r#"a in ("x")"#,
        r#"a not in "x""#,
        r#"a in {"x""#,
        r#"a in {"x","#,
        "a in {",
        r#"a in {"x" "y"}"#,
        r#"a in {,"x"}"#,
        r#"a in {"x",,"y"}"#,
        r#"a in {"x",,}"#,
        "a in {,}",
        "a in {x}",
        r#"a in {"x", y}"#,
        r#"a in {{"x"}}"#,
        // has()/all()/global() forms
        "has()",
        "has( )",
        "has(a b)",
        "has(\"a\")",
        "has (a)",
        "HAS(a)",
        "Has(a)",
        "has(a",
        "has(",
        "all(x)",
        "all( x )",
        "all(",
        "ALL()",
        "global(x)",
        "global(",
        // unknown or upper-case operator words
        r#"a IN {"x"}"#,
        r#"a NOT IN {"x"}"#,
        r#"a Contains "x""#,
        r#"a squiggles "x""#,
        r#"a starts foo "x""#,
        r#"a ends "x""#,
        r#"a not {"x"}"#,
        r#"a starts"#,
        // characters outside the lexical set
        r#"a == "b" %"#,
        r#"a:b == "c""#,
        r#"a@b == "c""#,
        r#"a < "b""#,
        r#"a > "b""#,
        r#"ä == "b""#,
        r#"a == "b" && ☃"#,
        "a == \"b\"\n",
        "a == \"b\" &&\nc == \"d\"",
        "a\r== \"b\"",
        r#"a == "b" ; c == "d""#,
        // label names longer than 512 bytes
        &over,
    ];
    for text in cases {
        assert_rejected(text);
    }
}

#[test]
fn s7_error_messages_and_positions() {
    let cases = [
        ("abc= 'x'", r#"expected "==" at position 3"#),
        ("a == \"xyz", "unterminated string starting at position 5"),
        (
            r#"a == "b" c"#,
            "unexpected content after selector at position 9",
        ),
        ("b", "expected operator after label at position 1"),
        (
            "a squiggles 'x'",
            "expected operator after label at position 2",
        ),
        (
            "a starts foo 'x'",
            r#"expected "with" after "starts" at position 9"#,
        ),
        ("a not 'x'", r#"expected "in" after "not" at position 6"#),
        ("a == 1", "expected string literal at position 5"),
        ("b == b", "expected string literal at position 5"),
        ("'b1' == b", "expected selector expression at position 0"),
        ("a == 'b' &&", "expected selector expression at position 11"),
        ("()", "expected selector expression at position 1"),
        ("(a == 'b'", r#"expected ")" at position 9"#),
        (")", "expected selector expression at position 0"),
        ("has(a) & has(b)", r#"expected "&&" at position 7"#),
        ("a == 'b' | b", r#"expected "||" at position 9"#),
        ("a in 'x'", r#"expected "{" to start a set at position 5"#),
        (
            "a in {'x' 'y'}",
            r#"expected "," or "}" in set at position 10"#,
        ),
        (
            "a in {,}",
            r#"expected string literal or "}" in set at position 6"#,
        ),
        ("a in {'x',", "unterminated set starting at position 5"),
        ("has()", "expected label name inside has() at position 4"),
        ("has(a b)", r#"expected ")" to close has( at position 6"#),
        ("all(x)", r#"expected ")" after "all(" at position 4"#),
        (
            "global( x)",
            r#"expected ")" after "global(" at position 8"#,
        ),
        ("a == 'b' % x", "unexpected character '%' at position 9"),
        ("ü == 'b'", "unexpected character 'ü' at position 0"),
        ("a == 'b'\n", r"unexpected character '\n' at position 8"),
    ];
    for (text, expected) in cases {
        assert_eq!(error_of(text), expected, "input {text:?}");
    }
}

#[test]
fn s7_parse_error_fields() {
    let err = Selector::parse("a == \"xyz").unwrap_err();
    assert_eq!(err.position, 5);
    assert_eq!(err.message, "unterminated string starting");
    let as_error: &dyn std::error::Error = &err;
    assert_eq!(
        as_error.to_string(),
        "unterminated string starting at position 5"
    );
}
