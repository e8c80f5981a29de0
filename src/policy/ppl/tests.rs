use super::*;
use crate::yaml::{Pos, parse};

fn rules(src: &str) -> Vec<Rule> {
    let mut p = Parser::new("t.yaml".into());
    let r = p.policy(&parse(src).unwrap());
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    r
}

fn user(email: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: "s".into(),
        email: Some(email.into()),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        ..Identity::default()
    }
}

fn eval(r: &Rule, u: Option<&Identity>, url: &str) -> bool {
    let req = Request::from_url(url, "GET").unwrap();
    r.expr.eval(&Facts {
        req: &req,
        user: u,
        step_up: false,
    }) == Truth::True
}

#[test]
fn nested_blocks() {
    let r = rules(
        "allow:\n  or:\n    - and:\n        - domain: {is: example.com}\n        - groups: {has: admins}\n    - email: {is: boss@other.com}\n",
    );
    let u = "https://a.example.com/";
    assert!(eval(&r[0], Some(&user("a@example.com", &["admins"])), u));
    assert!(!eval(&r[0], Some(&user("a@example.com", &[])), u));
    assert!(eval(&r[0], Some(&user("BOSS@other.com", &[])), u));
}

#[test]
fn not_and_nor() {
    let r = rules("allow:\n  not:\n    - email: a@x.com\n    - email: b@x.com\n");
    assert!(!eval(&r[0], Some(&user("a@x.com", &[])), "https://h/"));
    assert!(eval(&r[0], Some(&user("c@x.com", &[])), "https://h/"));
    let r = rules("allow:\n  nor:\n    - domain: x.com\n    - groups: g\n");
    assert!(eval(&r[0], Some(&user("a@x.com", &[])), "https://h/"));
    assert!(!eval(&r[0], Some(&user("a@x.com", &["g"])), "https://h/"));
}

#[test]
fn all_problems_reported() {
    let mut p = Parser::new("t.yaml".into());
    p.policy(&parse("allow:\n  or:\n    - emial: a\n    - email: {iz: b}\n    - source_ip: nope\n").unwrap());
    assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
    assert_eq!(p.problems[0].pos, Pos { line: 3, column: 7 });
}

#[test]
fn matchers() {
    let m = StrMatch {
        fold: true,
        tests: vec![StrTest::EndsWith("@Example.com".into())],
    };
    assert!(m.holds("a@example.COM"));
    assert!(!m.holds("com"));
    let m = StrMatch {
        fold: false,
        tests: vec![
            StrTest::StartsWith("/api".into()),
            StrTest::NotIn(vec!["/api/x".into()]),
        ],
    };
    assert!(m.holds("/api/y"));
    assert!(!m.holds("/api/x"));
}
