//! API clients' identities (bearer tokens), pins and narrowing.

use super::*;

fn app_token(client: &str) -> Identity {
    Identity {
        subject: "sp-oid".into(),
        client_id: Some(client.into()),
        application: true,
        roles: vec!["Tasks.Write".into()],
        ..Identity::default()
    }
}

#[test]
fn application_token_is_not_an_authenticated_user_and_has_no_email() {
    let s = set("\
- from: https://api.example.com
  allow_any_authenticated_user: true
- from: https://mail.example.com
  allowed_domains: [example.com]
- from: https://jobs.example.com
  allowed_client_ids: [11112222-3333-4444-5555-666677778888]
- from: https://tasks.example.com
  policy:
    allow:
      and:
        - client_id: {is: 11112222-3333-4444-5555-666677778888}
        - claim/roles: Tasks.Write
");
    let app = app_token("11112222-3333-4444-5555-666677778888");
    assert_eq!(
        decide(&s, "https://api.example.com/", Some(&app)),
        Verdict::Forbidden
    );
    assert_eq!(
        decide(&s, "https://mail.example.com/", Some(&app)),
        Verdict::Forbidden
    );
    assert_eq!(
        decide(&s, "https://jobs.example.com/", Some(&app)),
        Verdict::Allow
    );
    assert_eq!(
        decide(&s, "https://tasks.example.com/", Some(&app)),
        Verdict::Allow
    );
    let other = app_token("99998888-7777-6666-5555-444433332222");
    assert_eq!(
        decide(&s, "https://jobs.example.com/", Some(&other)),
        Verdict::Forbidden
    );
    // A signed-in user has no calling application.
    let u = user("a@example.com", &[]);
    assert_eq!(
        decide(&s, "https://jobs.example.com/", Some(&u)),
        Verdict::Forbidden
    );
    assert_eq!(decide(&s, "https://api.example.com/", Some(&u)), Verdict::Allow);
}

#[test]
fn scope_criterion_and_allowed_scopes() {
    let s = set("\
- from: https://files.example.com
  allowed_scopes: [Files.Read]
- from: https://write.example.com
  policy:
    allow:
      and:
        - scope: {has: Files.Write}
        - domain: {is: example.com}
");
    let mut delegated = user("a@example.com", &[]);
    delegated.client_id = Some("caller".into());
    delegated.scopes = vec!["Files.Read".into()];
    assert_eq!(
        decide(&s, "https://files.example.com/", Some(&delegated)),
        Verdict::Allow
    );
    assert_eq!(
        decide(&s, "https://write.example.com/", Some(&delegated)),
        Verdict::Forbidden
    );
    delegated.scopes.push("Files.Write".into());
    assert_eq!(
        decide(&s, "https://write.example.com/", Some(&delegated)),
        Verdict::Allow
    );
}

#[test]
fn route_context_extension_pins_like_host_and_disagreeing_pins_pin_nothing() {
    // A route's `from` without a port: its scheme's port.
    let n = Narrowing::from_query("route=https%3A%2F%2Fgrafana.example.com").unwrap();
    assert_eq!(n.host, Some(("grafana.example.com".to_string(), Some(443))));
    let n = Narrowing::from_query("route=https%3A%2F%2Fgrafana.example.com%3A8443%2F").unwrap();
    assert_eq!(n.host, Some(("grafana.example.com".to_string(), Some(8443))));
    let n =
        Narrowing::from_query("host=grafana.example.com&route=https%3A%2F%2Fgrafana.example.com").unwrap();
    assert_eq!(n.host, Some(("grafana.example.com".to_string(), Some(443))));
    let n = Narrowing::from_query("host=grafana.example.com:8443&route=https%3A%2F%2Fgrafana.example.com");
    assert_eq!(n, Err(NarrowingError::PinsDisagree));
    let n = Narrowing::from_query("host=wiki.example.com&route=https%3A%2F%2Fgrafana.example.com");
    assert_eq!(n, Err(NarrowingError::PinsDisagree));
    let n = Narrowing::from_query("route=not%20a%20url");
    assert_eq!(n, Err(NarrowingError::BadPin("route")));
}

#[test]
fn narrowing_typo_or_repeat_refuses_instead_of_widening() {
    // An attack on a location's narrowing: a typo, another case, or a second value that would
    // win. Each is an error (the request is refused), never a wider location.
    for (query, err) in [
        (
            "allowed_group=admins",
            NarrowingError::UnknownKey("allowed_group".into()),
        ),
        (
            "Allowed_Groups=admins",
            NarrowingError::UnknownKey("Allowed_Groups".into()),
        ),
        (
            "policy=admins&policy=staff",
            NarrowingError::Repeated("policy".into()),
        ),
        (
            "allowed_groups=a&allowed_groups=b",
            NarrowingError::Repeated("allowed_groups".into()),
        ),
        (
            "host=a.example.com&host=b.example.com",
            NarrowingError::Repeated("host".into()),
        ),
        ("policy=", NarrowingError::Empty("policy".into())),
        ("host=a%20b", NarrowingError::BadPin("host")),
    ] {
        assert_eq!(Narrowing::from_query(query), Err(err), "{query}");
    }
    let pairs = [("host", "a.example.com"), ("team", "x")];
    assert_eq!(
        Narrowing::from_pairs(pairs),
        Err(NarrowingError::UnknownKey("team".into()))
    );
    assert_eq!(Narrowing::from_query(""), Ok(Narrowing::default()));
}
