//! The helpers the rest of tortie builds on: constructors, composition,
//! the §6.3 rewrites, identity traits and the `Labels` implementations.

use std::collections::{BTreeMap, HashMap, HashSet};

use tortie_selector::{BuildError, Labels, Selector};

const NAMESPACE: &str = "projectcalico.org/namespace";

fn sel(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every selector built in code must print a canonical form that parses
/// back to itself.
fn assert_round_trips(s: &Selector) {
    assert_eq!(&sel(s.canonical()), s, "canonical {:?}", s.canonical());
}

#[test]
fn leaf_constructors_print_like_parsed_text() {
    let cases = [
        (Selector::has("app"), "has(app)"),
        (Selector::label_equals("app", "web"), r#"app == "web""#),
        (
            Selector::label_not_equals("app", "it's"),
            r#"app != "it's""#,
        ),
        (
            Selector::label_contains("app", "\"q\""),
            r#"app contains '"q"'"#,
        ),
        (
            Selector::label_starts_with("app", "w"),
            r#"app starts with "w""#,
        ),
        (Selector::label_ends_with("app", ""), r#"app ends with """#),
        (
            Selector::label_in("tier", ["fe", "be", "fe"]),
            r#"tier in {"be", "fe"}"#,
        ),
        (
            Selector::label_not_in("tier", Vec::<String>::new()),
            "tier not in {}",
        ),
    ];
    for (built, expected) in cases {
        let built = built.expect("valid parts");
        assert_eq!(built.canonical(), expected);
        assert_eq!(built, sel(expected));
        assert_round_trips(&built);
    }
    assert!(Selector::all().is_all());
    assert!(Selector::global().is_global());
    assert_eq!(Selector::default(), Selector::all());
}

#[test]
fn leaf_constructors_reject_unprintable_parts() {
    for bad_key in ["", "a b", "a\"b", "é", "a:b", &"k".repeat(513)] {
        assert!(
            matches!(
                Selector::label_equals(bad_key, "v"),
                Err(BuildError::InvalidLabel { .. })
            ),
            "{bad_key:?}"
        );
        assert!(Selector::has(bad_key).is_err(), "{bad_key:?}");
        assert!(Selector::label_in(bad_key, ["v"]).is_err(), "{bad_key:?}");
    }
    let err = Selector::label_equals("a", r#"both " and '"#).unwrap_err();
    assert!(matches!(err, BuildError::UnquotableValue { .. }));
    assert!(err.to_string().contains("both quote characters"));
    assert!(Selector::label_not_in("a", ["ok", r#"'""#]).is_err());
}

#[test]
fn and_or_follow_the_printing_rules() {
    let a = sel("a == 'x'");
    let b = sel("b == 'y'");
    let ab = sel("a == 'x' && b == 'y'");
    assert_eq!(Selector::and(&[]), Selector::all());
    assert_eq!(Selector::and(std::slice::from_ref(&a)), a);
    assert_eq!(
        Selector::and(&[a.clone(), b.clone()]).canonical(),
        r#"(a == "x" && b == "y")"#
    );
    // A conjunction operand stays a nested group: the tree shape is kept.
    let nested = Selector::and(&[ab.clone(), sel("has(c)")]);
    assert_eq!(nested.canonical(), r#"((a == "x" && b == "y") && has(c))"#);
    assert_round_trips(&nested);

    assert_eq!(Selector::or(&[]).canonical(), "!all()");
    assert!(!Selector::or(&[]).matches(&labels(&[])));
    assert_eq!(
        Selector::or(&[ab, b]).canonical(),
        r#"((a == "x" && b == "y") || b == "y")"#
    );
}

#[test]
fn negation_collapses() {
    let has = sel("has(a)");
    assert_eq!(has.negated().canonical(), "!has(a)");
    assert_eq!(has.negated().negated(), has);
    let group = sel("has(a) && has(b)");
    assert_eq!(group.negated().canonical(), "!(has(a) && has(b))");
    assert_round_trips(&group.negated());
}

#[test]
fn label_prefix_rewrites_every_label() {
    let original = sel(
        r#"env == "dev" && has(tier) && a in {"1"} && !b contains "z" || c not in {} || all() || global()"#,
    );
    let prefixed = original.with_label_prefix("pcns.");
    assert_eq!(
        prefixed.canonical(),
        r#"((pcns.env == "dev" && has(pcns.tier) && pcns.a in {"1"} && !pcns.b contains "z") || pcns.c not in {} || all() || global())"#
    );
    assert_round_trips(&prefixed);
    assert!(prefixed.matches(&labels(&[
        ("pcns.env", "dev"),
        ("pcns.tier", ""),
        ("pcns.a", "1")
    ])));
    let env = sel("env == 'dev'").with_label_prefix("pcsa.");
    assert!(env.matches(&labels(&[("pcsa.env", "dev")])));
    assert!(!env.matches(&labels(&[("env", "dev")])));
}

#[test]
fn special_leaf_replacement() {
    let has_ns = Selector::has(NAMESPACE).expect("valid");
    let no_ns = has_ns.negated();

    let all = sel("all()");
    assert_eq!(all.with_all_replaced_by(&has_ns), has_ns);
    assert_eq!(sel("").with_all_replaced_by(&has_ns), has_ns);
    assert_eq!(sel("global()").with_global_replaced_by(&no_ns), no_ns);
    // A `!` over a replaced leaf collapses instead of stacking.
    let double = sel("!global()").with_global_replaced_by(&no_ns);
    assert_eq!(double, has_ns);
    assert_round_trips(&double);
    // Only the requested leaf is replaced.
    let both = sel("all() || global()");
    assert_eq!(
        both.with_all_replaced_by(&has_ns).canonical(),
        "(has(projectcalico.org/namespace) || global())"
    );
    assert_eq!(
        both.with_global_replaced_by(&no_ns).canonical(),
        "(all() || !has(projectcalico.org/namespace))"
    );
    // A group replacement nested in a group stays a nested group.
    let group = sel("has(x) && has(y)");
    let replaced = sel("all() && has(z)").with_all_replaced_by(&group);
    assert_eq!(replaced.canonical(), "((has(x) && has(y)) && has(z))");
    assert_round_trips(&replaced);
}

#[test]
fn uses_global_is_global_is_all() {
    assert!(sel("global()").is_global());
    assert!(sel("global()").uses_global());
    assert!(!sel("!global()").is_global());
    assert!(sel("!global()").uses_global());
    assert!(sel("has(a) && (b == 'c' || global())").uses_global());
    assert!(!sel("has(a) && global == 'x'").uses_global());
    assert!(sel("").is_all());
    assert!(sel(" all( ) ").is_all());
    assert!(sel("((all()))").is_all());
    assert!(!sel("!all()").is_all());
    assert!(!sel("all() && all()").is_all());
    assert!(!sel("all()").is_global());
}

#[test]
fn identity_traits_use_the_canonical_form() {
    let a = sel("x=='a'&&y=='b'");
    let b: Selector = r#"(x == "a" && y == "b")"#.parse().expect("FromStr");
    assert_eq!(a, b);
    assert_eq!(a.to_string(), r#"(x == "a" && y == "b")"#);
    assert_eq!(
        format!("{a:?}"),
        r#"Selector("(x == \"a\" && y == \"b\")")"#
    );
    let set: HashSet<Selector> = [a.clone(), b.clone(), sel("has(x)")].into_iter().collect();
    assert_eq!(set.len(), 2);
    let mut sorted = vec![sel("has(b)"), sel("has(a)"), sel("all()")];
    sorted.sort();
    assert_eq!(sorted, vec![sel("all()"), sel("has(a)"), sel("has(b)")]);
}

#[test]
fn selectors_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Selector>();
    assert_send_sync::<tortie_selector::ParseError>();
    assert_send_sync::<BuildError>();
}

#[test]
fn labels_implementations() {
    let s = sel("app == 'web' && !has(debug)");
    let btree = labels(&[("app", "web")]);
    let hash: HashMap<String, String> = btree.clone().into_iter().collect();
    assert!(s.matches(&btree));
    assert!(s.matches(&&btree));
    assert!(s.matches(&hash));
    let dynamic: &dyn Labels = &hash;
    assert!(s.matches(dynamic));
}

/// §6.2: endpoint labels first, then each profile's in order; first hit
/// wins. Callers implement `Labels` for such a view.
#[test]
fn layered_labels_from_a_caller() {
    struct Endpoint<'a> {
        own: &'a BTreeMap<String, String>,
        profiles: &'a [BTreeMap<String, String>],
    }
    impl Labels for Endpoint<'_> {
        fn get_label(&self, key: &str) -> Option<&str> {
            self.own
                .get_label(key)
                .or_else(|| self.profiles.iter().find_map(|p| p.get_label(key)))
        }
    }
    let own = labels(&[("app", "web"), ("pcns.env", "shadowed")]);
    let profiles = [
        labels(&[("pcns.env", "prod"), ("pcns.projectcalico.org/name", "ns1")]),
        labels(&[("pcsa.projectcalico.org/name", "default")]),
    ];
    let ep = Endpoint {
        own: &own,
        profiles: &profiles,
    };
    assert!(sel("pcns.env == 'shadowed'").matches(&ep));
    assert!(
        sel("pcns.projectcalico.org/name == 'ns1' && has(pcsa.projectcalico.org/name)")
            .matches(&ep)
    );
}

/// §6.3 consequences, composed the way the policy code will compose them.
#[test]
fn namespace_scoping_consequences() {
    let has_ns = Selector::has(NAMESPACE).expect("valid");
    let pod = |ns: &str, role: &str, ns_env: &str| {
        labels(&[(NAMESPACE, ns), ("role", role), ("pcns.env", ns_env)])
    };
    let host_endpoint = labels(&[("role", "fe")]);

    // Namespaced policy in N: `source: {selector: role == "fe"}`.
    let in_ns = Selector::label_equals(NAMESPACE, "N").expect("valid");
    let peer = Selector::and(&[in_ns.clone(), sel("role == 'fe'")]);
    assert_eq!(
        peer.canonical(),
        r#"(projectcalico.org/namespace == "N" && role == "fe")"#
    );
    assert!(peer.matches(&pod("N", "fe", "x")));
    assert!(!peer.matches(&pod("M", "fe", "x")));
    assert!(!peer.matches(&host_endpoint));

    // `namespaceSelector: all()` alone: any workload in any namespace.
    let any_ns = sel("all()")
        .with_label_prefix("pcns.")
        .with_all_replaced_by(&has_ns);
    assert_eq!(any_ns.canonical(), "has(projectcalico.org/namespace)");
    assert!(any_ns.matches(&pod("M", "be", "x")));
    assert!(!any_ns.matches(&host_endpoint));

    // `namespaceSelector: global()`: only non-namespaced things.
    let global = sel("global()")
        .with_label_prefix("pcns.")
        .with_global_replaced_by(&has_ns.negated());
    assert!(global.matches(&host_endpoint));
    assert!(!global.matches(&pod("N", "fe", "x")));

    // `namespaceSelector: env == "dev"` plus a selector.
    let ns_part = sel("env == 'dev'").with_label_prefix("pcns.");
    let peer = Selector::and(&[ns_part, sel("role == 'fe'")]);
    assert_eq!(peer.canonical(), r#"(pcns.env == "dev" && role == "fe")"#);
    assert!(peer.matches(&pod("M", "fe", "dev")));
    assert!(!peer.matches(&pod("M", "fe", "prod")));
}
