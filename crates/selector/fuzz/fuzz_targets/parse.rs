//! Fuzz target: parse arbitrary bytes as a selector.
//!
//! Parsing must never panic, and whenever it succeeds the canonical form
//! must parse again to the same canonical form, keep the same unique ID and
//! agree on evaluation against an empty label map and a small fixed one.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tortie_selector::Selector;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(selector) = Selector::parse(&text) else {
        return;
    };
    let again = match Selector::parse(selector.canonical()) {
        Ok(again) => again,
        Err(e) => panic!(
            "canonical form {:?} of {:?} does not parse: {e}",
            selector.canonical(),
            text
        ),
    };
    assert_eq!(selector.canonical(), again.canonical(), "input {text:?}");
    assert_eq!(selector.unique_id(), again.unique_id());

    let empty = BTreeMap::new();
    let some: BTreeMap<String, String> = [("a", "x"), ("b", ""), ("has", "y")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(selector.matches(&empty), again.matches(&empty));
    assert_eq!(selector.matches(&some), again.matches(&some));
});
