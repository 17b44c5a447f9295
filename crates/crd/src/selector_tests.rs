use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn m(sel: &str, pairs: &[(&str, &str)]) -> bool {
    Selector::parse(sel)
        .unwrap_or_else(|e| panic!("{sel:?} should parse: {e}"))
        .matches(&labels(pairs))
}

fn err(sel: &str) -> SelectorError {
    match Selector::parse(sel) {
        Ok(s) => panic!("{sel:?} should not parse, got {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn empty_and_all_match_everything() {
    assert!(m("", &[]));
    assert!(m("   ", &[("a", "b")]));
    assert!(m("all()", &[]));
    assert!(m("all( )", &[]));
    assert!(m("global()", &[]));
    assert!(!m("!all()", &[]));
}

#[test]
fn equality_and_inequality() {
    assert!(m("rack == 'r1'", &[("rack", "r1")]));
    assert!(!m("rack == 'r1'", &[("rack", "r2")]));
    assert!(!m("rack == 'r1'", &[]));
    assert!(m("rack != 'r1'", &[("rack", "r2")]));
    assert!(!m("rack != 'r1'", &[("rack", "r1")]));
    // Absent label: != is true.
    assert!(m("rack != 'r1'", &[]));
    // No spaces needed.
    assert!(m("rack=='r1'", &[("rack", "r1")]));
}

#[test]
fn quoting() {
    assert!(m("a == \"x y\"", &[("a", "x y")]));
    assert!(m("a == 'say \"hi\"'", &[("a", "say \"hi\"")]));
    assert!(m("a == \"it's\"", &[("a", "it's")]));
    assert!(m("a == ''", &[("a", "")]));
    assert!(!m("a == ''", &[]));
}

#[test]
fn labels_with_prefixes_and_punctuation() {
    let l = [
        ("topology.kubernetes.io/zone", "z-1"),
        ("node-role.kubernetes.io/rr", ""),
    ];
    assert!(m("topology.kubernetes.io/zone == 'z-1'", &l));
    assert!(m("has(node-role.kubernetes.io/rr)", &l));
    assert!(m("has( node-role.kubernetes.io/rr )", &l));
    assert!(!m("has(node-role.kubernetes.io/other)", &l));
    assert!(m("!has(missing)", &l));
}

#[test]
fn set_membership() {
    let l = [("zone", "b")];
    assert!(m("zone in {'a', 'b'}", &l));
    assert!(!m("zone in {'a','c'}", &l));
    assert!(!m("zone in {}", &l));
    assert!(m("zone in {'b',}", &l));
    assert!(!m("zone not in {'a', 'b'}", &l));
    assert!(m("zone not in {'a'}", &l));
    assert!(m("zone notin {'a'}", &l));
    // Absent label: in is false, not in is true.
    assert!(!m("x in {'a'}", &l));
    assert!(m("x not in {'a'}", &l));
}

#[test]
fn string_operators() {
    let l = [("name", "node-rack1-07")];
    assert!(m("name contains 'rack1'", &l));
    assert!(!m("name contains 'rack2'", &l));
    assert!(m("name starts with 'node-'", &l));
    assert!(m("name ends with '-07'", &l));
    assert!(!m("name ends with '-08'", &l));
    assert!(!m("other contains ''", &l));
}

#[test]
fn precedence_and_over_or() {
    // a || b && c  ==  a || (b && c)
    assert!(m("a == '1' || b == '1' && c == '1'", &[("a", "1")]));
    assert!(!m("(a == '1' || b == '1') && c == '1'", &[("a", "1")]));
    // a && b || c  ==  (a && b) || c
    assert!(m("a == '1' && b == '1' || c == '1'", &[("c", "1")]));
    assert!(!m("a == '1' && (b == '1' || c == '1')", &[("c", "1")]));
}

#[test]
fn negation_binds_tightest() {
    // !a && b == (!a) && b
    assert!(m("!has(a) && has(b)", &[("b", "")]));
    assert!(!m("!has(a) && has(b)", &[("a", ""), ("b", "")]));
    // !(a && b)
    assert!(m("!(has(a) && has(b))", &[("a", "")]));
    assert!(!m("!!has(a)", &[]));
    assert!(m("!!has(a)", &[("a", "")]));
    assert!(m("! ! ! has(a)", &[]));
    assert!(m("!(a == 'x')", &[]));
    assert!(m("!a == 'x'", &[("a", "y")]));
}

#[test]
fn keywords_can_be_labels() {
    assert!(m("in == 'x'", &[("in", "x")]));
    assert!(m("has == 'x'", &[("has", "x")]));
    assert!(m("all == 'x'", &[("all", "x")]));
    assert!(m("has(has)", &[("has", "x")]));
    assert!(m("contains contains 'x'", &[("contains", "xy")]));
}

#[test]
fn errors_carry_position_and_reason() {
    let e = err("a == 'x");
    assert_eq!(e.position, 5);
    assert_eq!(e.reason, "unterminated string");
    assert_eq!(
        e.to_string(),
        "invalid selector \"a == 'x\" at position 5: unterminated string"
    );

    let e = err("a = 'x'");
    assert_eq!(e.position, 2);
    assert!(
        e.reason
            .starts_with("expected an operator after label \"a\""),
        "{e}"
    );

    let e = err("a == x");
    assert_eq!(e.position, 5);
    assert!(e.reason.contains("quoted string"), "{e}");

    let e = err("has(a");
    assert_eq!(e.position, 5);
    assert!(e.reason.contains("')'"), "{e}");

    let e = err("(a == 'b'");
    assert_eq!(e.position, 9);
    assert_eq!(e.reason, "expected ')'");

    let e = err("a == 'b' b == 'c'");
    assert_eq!(e.position, 9);
    assert!(e.reason.contains("unexpected content"), "{e}");

    let e = err("a == 'b' &&");
    assert_eq!(e.position, 11);
    assert!(e.reason.contains("unexpected end"), "{e}");

    let e = err("a == 'b' & c == 'd'");
    assert_eq!(e.position, 9);

    let e = err("a in {'x' 'y'}");
    assert_eq!(e.position, 10);
    assert!(e.reason.contains("',' or '}'"), "{e}");

    let e = err("a in 'x'");
    assert!(e.reason.contains("'{'"), "{e}");

    let e = err("== 'x'");
    assert_eq!(e.position, 0);
    assert!(e.reason.contains("expected a label"), "{e}");

    let e = err("!= 'x'");
    assert_eq!(e.position, 0);

    let e = err("all(x)");
    assert!(e.reason.contains("all("), "{e}");

    let e = err("a == 'é' && ü == 'x'");
    assert!(e.reason.contains("expected a label"), "{e}");
}

#[test]
fn limits() {
    let long = "a".repeat(MAX_LABEL_LEN + 1);
    let e = err(&format!("has({long})"));
    assert!(e.reason.contains("longer than"), "{e}");
    assert!(!m(&format!("has({})", "a".repeat(MAX_LABEL_LEN)), &[]));

    let deep_ok = format!("{}has(a){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(m(&deep_ok, &[("a", "")]));
    let too_deep = format!(
        "{}has(a){}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(err(&too_deep).reason.contains("nesting"));
    // Very many negations do not recurse.
    let many_not = format!("{}has(a)", "!".repeat(100_001));
    assert!(m(&many_not, &[]));
}

#[test]
fn matches_opt_handles_missing_labels() {
    let s = Selector::parse("x != 'y'").unwrap();
    assert!(s.matches_opt(None));
    let s = Selector::parse("has(x)").unwrap();
    assert!(!s.matches_opt(None));
    assert_eq!(s.source(), "has(x)");
}

proptest::proptest! {
    #[test]
    fn never_panics(s in "\\PC{0,64}") {
        if let Ok(sel) = Selector::parse(&s) {
            let _ = sel.matches(&BTreeMap::new());
        }
    }

    #[test]
    fn never_panics_on_selector_alphabet(s in "[a-c!&|(){}',=\" ]{0,40}|(has|all|in|not|contains)[ (a)']{0,20}") {
        if let Ok(sel) = Selector::parse(&s) {
            let _ = sel.matches(&labels(&[("a", "b")]));
        }
    }
}

/// The CRDs' CEL rule for selectors accepts every selector petrel parses, and
/// rejects the malformed ones a regular expression can tell apart.
#[test]
fn cel_rule_agrees_with_the_parser() {
    let body = SELECTOR_CEL_RULE
        .strip_prefix(r#"self.matches(r""""#)
        .and_then(|r| r.strip_suffix(r#"""")"#))
        .expect("the rule is self.matches(r\"\"\"...\"\"\")");
    let re = regex::Regex::new(body).expect("the rule's regular expression compiles");
    let valid = [
        "",
        "   ",
        "all()",
        "all( )",
        "global()",
        "!all()",
        "has(rack)",
        "! has( petrel.dev/route-reflector )",
        "rack == 'r1'",
        "rack=='r1'",
        "rack != \"r1\"",
        "kubernetes.io/hostname in {'a', 'b',}",
        "zone not in {}",
        "zone notin {\"x\"}",
        "name contains 'x' && name starts with 'w' || name ends with 'z'",
        "name startswith 'w'",
        "(rack == 'r1' || rack == 'r2') && !(role == 'rr')",
        "((a == 'x'))",
        "route-reflector == 'true'",
        "all == 'x'",
        "a == '' && b != \"it's\"",
    ];
    for sel in valid {
        assert!(Selector::parse(sel).is_ok(), "{sel:?} should parse");
        assert!(re.is_match(sel), "the CEL rule rejects the valid {sel:?}");
    }
    let invalid = [
        "rack = 'r1'",
        "rack == r1",
        "rack == 'r1",
        "rack in ('a')",
        "rack in {a}",
        "&& a == 'x'",
        "a == 'x' &&",
        "a == 'x' b == 'y'",
        "all",
        "has()",
        "has(a",
        "!= 'x'",
        "a === 'x'",
        "a contains x",
        "rack is 'r1'",
    ];
    for sel in invalid {
        assert!(Selector::parse(sel).is_err(), "{sel:?} should not parse");
        assert!(
            !re.is_match(sel),
            "the CEL rule accepts the invalid {sel:?}"
        );
    }
}
