//! Step-up decisions: when a stronger sign-in is all that fails.

use super::*;

fn with_claims(mut u: Identity, claims: &[(&str, &[&str])]) -> Identity {
    for (name, values) in claims {
        u.claims.insert(
            name.to_string(),
            crate::identity::list_claim(values.iter().copied()),
        );
    }
    u
}

fn reason_code(s: &PolicySet, url: &str, u: Option<&Identity>) -> (Verdict, String) {
    let req = Request::from_url(url, "GET").unwrap();
    let d = s.decide(&req, u, &Narrowing::default());
    (d.verdict, d.reason.code().to_string())
}

#[test]
fn step_up_only_when_a_stronger_sign_in_is_all_that_fails() {
    let s = set("\
- from: https://code.example.com
  policy:
    - allow:
        or:
          - groups: {has: admins}
          - and: [{domain: example.com}, {amr: mfa}]
    - deny:
        and: [{domain: evil.example}, {amr: pwd}]
- from: https://odd.example.com
  policy:
    allow:
      not: [{amr: mfa}]
");
    let dana = user("dana@example.com", &[]);
    let url = "https://code.example.com/";
    // Lacks MFA, which is all that fails: step up (a login verdict for a signed-in user).
    assert_eq!(
        reason_code(&s, url, Some(&dana)),
        (Verdict::Login, "step_up".into())
    );
    let req = Request::from_url(url, "GET").unwrap();
    match s.decide(&req, Some(&dana), &Narrowing::default()).reason {
        Reason::StepUp(up) => assert_eq!(up.amr, vec!["mfa".to_string()]),
        other => panic!("{other:?}"),
    }
    // With it, or through another allow, in.
    let strong = with_claims(dana.clone(), &[("amr", &["pwd", "mfa"])]);
    assert_eq!(decide(&s, url, Some(&strong)), Verdict::Allow);
    assert_eq!(
        decide(&s, url, Some(&user("a@x.org", &["admins"]))),
        Verdict::Allow
    );
    // Another domain: no sign-in makes the allow hold, so no step-up.
    assert_eq!(
        reason_code(&s, url, Some(&user("eve@other.org", &[]))),
        (Verdict::Forbidden, "no_allow_matched".into())
    );
    // A deny that holds is never stepped out of.
    let evil = with_claims(user("m@evil.example", &["admins"]), &[("amr", &["pwd"])]);
    assert_eq!(decide(&s, url, Some(&evil)), Verdict::Forbidden);
    // Under a negation, a method is something not to have: nothing to ask for.
    assert_eq!(
        decide(&s, "https://odd.example.com/", Some(&strong)),
        Verdict::Forbidden
    );
    // Anonymous: sign in, and the first sign-in asks for MFA at once.
    let route = match s.find_route(&req) {
        route::Found::Route(r) => r,
        _ => panic!("no route"),
    };
    assert_eq!(StepUp::of(route, None).amr, vec!["mfa".to_string()]);
    assert_eq!(decide(&s, url, None), Verdict::Login);
}

#[test]
fn step_up_values_that_could_not_travel_as_written_are_refused_with_their_place() {
    let e = errors(
        "\
- from: https://a.example.com
  policy:
    allow:
      or:
        - acrs: c100
        - amr: 'm fa'
        - acr: 'a\"b'
",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with("p.yaml:5:17:") && e[0].contains("c1 to c99"),
        "{e:#?}"
    );
    assert!(e[1].contains("an amr value"), "{e:#?}");
    assert!(e[2].contains("an acr value"), "{e:#?}");
}
