use super::*;
use crate::identity::Identity;

fn set(src: &str) -> PolicySet {
    match PolicySet::from_sources(&[("p.yaml".into(), src.into())]) {
        Ok(s) => s,
        Err(d) => panic!(
            "{}",
            d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
        ),
    }
}

fn errors(src: &str) -> Vec<String> {
    PolicySet::from_sources(&[("p.yaml".into(), src.into())])
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn user(email: &str, groups: &[&str]) -> Identity {
    Identity {
        subject: "sub-1".into(),
        email: Some(email.into()),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        ..Identity::default()
    }
}

fn decide(s: &PolicySet, url: &str, u: Option<&Identity>) -> Verdict {
    let req = Request::from_url(url, "GET").unwrap();
    s.decide(&req, u, &Narrowing::default()).verdict
}

const SEED: &str = "\
- from: https://app1.external.domain
  to: http://app1containername:8080
  allowed_users:
    - user1@azuread.domain
- from: https://app2.external.domain
  to: http://app2containername
  allowed_users:
    - user2@azuread.domain
";

#[test]
fn seed_policy_loads_and_decides() {
    let s = set(SEED);
    assert_eq!(s.routes().len(), 2);
    assert_eq!(s.notes.len(), 1, "`to` is noted once");
    let u1 = user("User1@AzureAD.domain", &[]);
    assert_eq!(
        decide(&s, "https://app1.external.domain/", Some(&u1)),
        Verdict::Allow
    );
    assert_eq!(
        decide(&s, "https://app2.external.domain/", Some(&u1)),
        Verdict::Forbidden
    );
    assert_eq!(decide(&s, "https://app1.external.domain/", None), Verdict::Login);
    assert_eq!(
        decide(&s, "https://other.external.domain/", Some(&u1)),
        Verdict::Forbidden
    );
}

#[test]
fn most_specific_route_wins() {
    let s = set("\
- from: https://*.example.com
  allow_public_unauthenticated_access: true
- from: https://app.example.com
  allow_any_authenticated_user: true
- from: https://app.example.com
  prefix: /admin
  allowed_groups: [admins]
- from: https://app.example.com
  prefix: /admin/public/
  allow_public_unauthenticated_access: true
- from: https://app.example.com
  path: /admin/exact
  allowed_users: [boss@example.com]
- from: https://*.deep.example.com
  allowed_domains: [deep.com]
");
    let u = user("a@example.com", &[]);
    let admin = user("b@example.com", &["admins"]);
    // exact host over wildcard
    assert_eq!(decide(&s, "https://app.example.com/x", None), Verdict::Login);
    assert_eq!(decide(&s, "https://other.example.com/x", None), Verdict::Allow);
    // longer wildcard suffix over shorter
    assert_eq!(
        decide(&s, "https://x.deep.example.com/", Some(&u)),
        Verdict::Forbidden
    );
    // longer prefix over shorter
    assert_eq!(
        decide(&s, "https://app.example.com/admin/x", Some(&u)),
        Verdict::Forbidden
    );
    assert_eq!(
        decide(&s, "https://app.example.com/admin/x", Some(&admin)),
        Verdict::Allow
    );
    assert_eq!(
        decide(&s, "https://app.example.com/admin/public/x", None),
        Verdict::Allow
    );
    // prefix covers whole segments only
    assert_eq!(
        decide(&s, "https://app.example.com/administrator", Some(&u)),
        Verdict::Allow
    );
    // exact path over prefix
    assert_eq!(
        decide(&s, "https://app.example.com/admin/exact", Some(&admin)),
        Verdict::Forbidden
    );
}

#[test]
fn ppl_deny_beats_allow() {
    let s = set("\
routes:
  - from: https://app.example.com
    policy:
      allow:
        or:
          - domain: {is: example.com}
      deny:
        or:
          - email: {is: mallory@example.com}
");
    assert_eq!(
        decide(&s, "https://app.example.com/", Some(&user("a@example.com", &[]))),
        Verdict::Allow
    );
    assert_eq!(
        decide(
            &s,
            "https://app.example.com/",
            Some(&user("Mallory@example.com", &[]))
        ),
        Verdict::Forbidden
    );
}

#[test]
fn named_policies_are_shared() {
    let s = set("\
policies:
  staff:
    allow:
      or:
        - domain: {is: example.com}
  admins:
    - allow:
        and:
          - groups: {has: admins}
routes:
  - from: https://a.example.com
    policy: staff
  - from: https://b.example.com
    policy: staff
");
    let u = user("a@example.com", &[]);
    assert_eq!(decide(&s, "https://b.example.com/", Some(&u)), Verdict::Allow);
    let req = Request::from_url("https://a.example.com/", "GET").unwrap();
    let n = Narrowing {
        policy: Some("admins".into()),
        ..Narrowing::default()
    };
    assert_eq!(s.decide(&req, Some(&u), &n).verdict, Verdict::Forbidden);
    let n = Narrowing {
        policy: Some("nope".into()),
        ..Narrowing::default()
    };
    assert_eq!(s.decide(&req, Some(&u), &n).verdict, Verdict::Forbidden);
}

#[test]
fn narrowing_never_widens() {
    let s = set("- from: https://a.example.com\n  allowed_groups: [g1]\n");
    let req = Request::from_url("https://a.example.com/", "GET").unwrap();
    let outsider = user("x@example.com", &["g2"]);
    let n = Narrowing::from_query("allowed_groups=g2").unwrap();
    assert_eq!(s.decide(&req, Some(&outsider), &n).verdict, Verdict::Forbidden);
    let member = user("x@example.com", &["g1"]);
    assert_eq!(s.decide(&req, Some(&member), &n).verdict, Verdict::Forbidden);
    let n = Narrowing::from_query("allowed_groups=g2,g1&allowed_email_domains=example.com").unwrap();
    assert_eq!(s.decide(&req, Some(&member), &n).verdict, Verdict::Allow);
    let n = Narrowing::from_query("allowed_emails=y@example.com").unwrap();
    assert_eq!(s.decide(&req, Some(&member), &n).verdict, Verdict::Forbidden);
}

#[test]
fn double_at_address_never_matches_a_domain_rule() {
    let s = set(
        "- from: https://a.example.com\n  allowed_domains: [evil.com]\n  allowed_users: ['a@b@evil.com']\n",
    );
    let u = user("a@b@evil.com", &[]);
    assert_eq!(decide(&s, "https://a.example.com/", Some(&u)), Verdict::Forbidden);
}

#[test]
fn methods_and_regex() {
    let s = set("\
- from: https://a.example.com
  regex: '/api/v[0-9]+/.*'
  methods: [get]
  allow_public_unauthenticated_access: true
- from: https://a.example.com
  allow_any_authenticated_user: true
");
    assert_eq!(decide(&s, "https://a.example.com/api/v2/x", None), Verdict::Allow);
    let post = Request::from_url("https://a.example.com/api/v2/x", "POST").unwrap();
    assert_eq!(
        s.decide(&post, None, &Narrowing::default()).verdict,
        Verdict::Login
    );
    assert_eq!(
        decide(&s, "https://a.example.com/xapi/v2/x", None),
        Verdict::Login
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(
        "\
- from: https://a.example.com
  allowed_user: [x@example.com]
- from: not a url
  regex: '(['
- from: https://b.example.com
  policy:
    allow:
      or:
        - emial: x
- from: https://c.example.com
  policy: missing
",
    );
    insta::assert_snapshot!(e.join("\n"), @r"
    p.yaml:2:3: unknown field `allowed_user`, expected one of `from`, `prefix`, `path`, `regex`, `methods`, `allowed_users`, `allowed_domains`, `allowed_groups`, `allowed_roles`, `roles`, `allowed_idp_claims`, `allowed_client_ids`, `allowed_scopes`, `allow_any_authenticated_user`, `allow_public_unauthenticated_access`, `cors_allow_preflight`, `identity_providers`, `idp_client_id`, `idp_client_secret`, `policy`
    p.yaml:3:9: `from` must be a URL like https://app.example.com, not `not a url`
    p.yaml:4:10: invalid regex: error: unclosed character class
    p.yaml:9:11: unknown criterion `emial`: expected accept, reject, authenticated_user, email, domain, user, groups, client_id, scope, amr, acr, acrs, claim/<name>, http_method, http_path or source_ip
    p.yaml:11:11: unknown policy `missing` (no policy file defines named policies)
    ");
}

#[test]
fn yaml_syntax_error_has_position() {
    let e = errors("- from: https://a\n  allowed_users: [a\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("p.yaml:"), "{}", e[0]);
}

#[test]
fn anonymous_allowed_by_non_user_rule() {
    let s = set("\
- from: https://a.example.com
  policy:
    allow:
      or:
        - http_path: {starts_with: /health}
        - email: {is: a@example.com}
    deny:
      or:
        - source_ip: 10.0.0.0/8
");
    assert_eq!(decide(&s, "https://a.example.com/health", None), Verdict::Allow);
    assert_eq!(decide(&s, "https://a.example.com/other", None), Verdict::Login);
    let mut req = Request::from_url("https://a.example.com/health", "GET").unwrap();
    req.client_ip = Some("10.1.2.3".parse().unwrap());
    assert_eq!(
        s.decide(&req, None, &Narrowing::default()).verdict,
        Verdict::Forbidden
    );
}

#[test]
fn roles_shorthand_matches_app_roles() {
    let s = set("- from: https://a.example.com\n  roles: [Admin]\n");
    let mut admin = user("a@example.com", &[]);
    admin.roles = vec!["Reader".into(), "Admin".into()];
    assert_eq!(decide(&s, "https://a.example.com/", Some(&admin)), Verdict::Allow);
    assert_eq!(
        decide(&s, "https://a.example.com/", Some(&user("b@example.com", &[]))),
        Verdict::Forbidden
    );
}

// ---- three-valued evaluation: an anonymous request never slips past a deny about the user ----

const DENY_ABOUT_USER: &str = "\
- from: https://app.example.com
  policy:
    - allow:
        or:
          - source_ip: 10.0.0.0/8
          - authenticated_user: true
    - deny:
        or:
          - http_method: DELETE
          - email: {is: intern@example.com}
";

fn decide_full(s: &PolicySet, method: &str, ip: &str, u: Option<&Identity>) -> Verdict {
    let mut req = Request::from_url("https://app.example.com/x", method).unwrap();
    req.client_ip = Some(ip.parse().unwrap());
    s.decide(&req, u, &Narrowing::default()).verdict
}

#[test]
fn anonymous_delete_from_an_allowed_network_is_refused_by_the_method_deny() {
    let s = set(DENY_ABOUT_USER);
    assert_eq!(decide_full(&s, "DELETE", "10.1.1.1", None), Verdict::Forbidden);
    let bob = user("bob@example.com", &[]);
    assert_eq!(
        decide_full(&s, "DELETE", "10.1.1.1", Some(&bob)),
        Verdict::Forbidden
    );
}

#[test]
fn anonymous_request_cannot_skip_a_deny_about_the_user() {
    let s = set(DENY_ABOUT_USER);
    // The deny on the intern's email may hold: the user must be known first.
    let req_anon = decide_full(&s, "GET", "10.1.1.1", None);
    assert_eq!(req_anon, Verdict::Login);
    let intern = user("intern@example.com", &[]);
    assert_eq!(
        decide_full(&s, "GET", "10.1.1.1", Some(&intern)),
        Verdict::Forbidden
    );
    let bob = user("bob@example.com", &[]);
    assert_eq!(decide_full(&s, "GET", "10.1.1.1", Some(&bob)), Verdict::Allow);
    assert_eq!(decide_full(&s, "GET", "192.0.2.1", Some(&bob)), Verdict::Allow);
}

#[test]
fn anonymous_request_is_refused_when_no_allow_rule_can_hold_for_anyone() {
    let s = set(
        "- from: https://app.example.com\n  policy:\n    allow:\n      and:\n        - source_ip: 10.0.0.0/8\n        - authenticated_user: true\n",
    );
    // From outside 10/8 the `and` is false whoever signs in: refuse instead of asking to sign in.
    assert_eq!(decide_full(&s, "GET", "192.0.2.1", None), Verdict::Forbidden);
    assert_eq!(decide_full(&s, "GET", "10.0.0.1", None), Verdict::Login);
}

#[test]
fn not_of_a_user_criterion_is_unknown_for_anonymous_requests() {
    // `not: [email is mallory]` must not allow an anonymous request (it could be mallory).
    let s = set(
        "- from: https://app.example.com\n  policy:\n    allow:\n      not:\n        - email: {is: mallory@example.com}\n",
    );
    assert_eq!(decide_full(&s, "GET", "10.0.0.1", None), Verdict::Login);
    let mallory = user("mallory@example.com", &[]);
    assert_eq!(
        decide_full(&s, "GET", "10.0.0.1", Some(&mallory)),
        Verdict::Forbidden
    );
}

#[test]
fn empty_operator_lists_are_errors_with_their_position() {
    for op in ["and", "or", "not", "nor"] {
        let e = errors(&format!(
            "- from: https://a.example.com\n  policy:\n    allow:\n      {op}: []\n"
        ));
        assert_eq!(
            e,
            vec![format!(
                "p.yaml:4:{}: `{op}` has an empty list: name at least one criterion",
                9 + op.len()
            )]
        );
    }
}

#[test]
fn cors_preflight_passes_only_after_the_deny_rules() {
    let s = set("- from: https://app.example.com
  cors_allow_preflight: true
  policy:
    - allow:
        or:
          - authenticated_user: true
    - deny:
        or:
          - source_ip: 192.0.2.0/24
");
    let preflight = |ip: &str| {
        let mut req = Request::from_url("https://app.example.com/api", "OPTIONS").unwrap();
        req.client_ip = Some(ip.parse().unwrap());
        req.preflight = true;
        s.decide(&req, None, &Narrowing::default()).verdict
    };
    assert_eq!(preflight("10.0.0.1"), Verdict::Allow);
    assert_eq!(preflight("192.0.2.7"), Verdict::Forbidden);
    let s2 = set("- from: https://app.example.com
  cors_allow_preflight: true
  policy:
    - allow:
        or:
          - authenticated_user: true
    - deny:
        or:
          - email: {is: intern@example.com}
");
    let mut req = Request::from_url("https://app.example.com/api", "OPTIONS").unwrap();
    req.preflight = true;
    // A preflight carries no credentials: a deny about the user keeps it out too.
    assert_eq!(
        s2.decide(&req, None, &Narrowing::default()).verdict,
        Verdict::Login
    );
}

#[test]
fn a_route_with_an_explicit_port_outranks_portless_ones_whatever_the_file_order() {
    let s = set("\
- from: https://app.example.com
  prefix: /admin
  allow_public_unauthenticated_access: true
- from: https://app.example.com:8443
  allowed_users: [alice@example.com]
");
    let on_8443 = Request::from_url("https://app.example.com:8443/admin/x", "GET").unwrap();
    assert_eq!(
        s.decide(&on_8443, None, &Narrowing::default()).verdict,
        Verdict::Login
    );
    let on_443 = Request::from_url("https://app.example.com/admin/x", "GET").unwrap();
    assert_eq!(
        s.decide(&on_443, None, &Narrowing::default()).verdict,
        Verdict::Allow
    );
}

#[test]
fn host_smuggling_a_port_only_the_client_wrote_never_selects_a_ports_route() {
    let s = set("\
- from: https://app.example.com
  allowed_users: [alice@example.com]
- from: https://app.example.com:8080
  allow_public_unauthenticated_access: true
");
    let mut req = Request::from_url("https://app.example.com:8080/x", "GET").unwrap();
    assert_eq!(
        s.decide(&req, None, &Narrowing::default()).verdict,
        Verdict::Allow
    );
    // The same port, but from the client's Host header only (no X-Forwarded-Port): which
    // route applies cannot be established, so neither is picked.
    req.site.port_stated = false;
    let d = s.decide(&req, None, &Narrowing::default());
    assert_ne!(d.verdict, Verdict::Allow);
    assert_eq!((d.verdict, d.reason), (Verdict::Forbidden, Reason::PortUnstated));
}

#[test]
fn port_unstated_shadow_route_is_refused_not_judged_by_the_public_any_port_route() {
    // The attack: a protected port route written after a public any-port route for the same
    // host, and a request that names the port only in X-Forwarded-Host.
    let s = set("- from: https://shadow.example.com
  allow_public_unauthenticated_access: true
- from: https://shadow.example.com:9443
  allowed_users: [alice@example.com]
");
    let mut req = Request::from_url("https://shadow.example.com:9443/x", "GET").unwrap();
    req.site.port_stated = false;
    let d = s.decide(&req, None, &Narrowing::default());
    assert_eq!(
        (d.verdict, d.reason.clone()),
        (Verdict::Forbidden, Reason::PortUnstated)
    );
    assert!(d.reason.to_string().contains("did not state the request's port"));
    // No port at all, unstated: still unknown.
    let mut req = Request::from_url("https://shadow.example.com/x", "GET").unwrap();
    req.site.port_stated = false;
    assert_eq!(
        s.decide(&req, None, &Narrowing::default()).reason,
        Reason::PortUnstated
    );
    // A stated port decides: 443 is the public route, 9443 the protected one.
    let req = Request::from_url("https://shadow.example.com/x", "GET").unwrap();
    assert_eq!(
        s.decide(&req, None, &Narrowing::default()).verdict,
        Verdict::Allow
    );
    let req = Request::from_url("https://shadow.example.com:9443/x", "GET").unwrap();
    assert_eq!(
        s.decide(&req, None, &Narrowing::default()).verdict,
        Verdict::Login
    );
    // A host with no port route is judged as before.
    let s = set("- from: https://plain.example.com
  allow_public_unauthenticated_access: true
");
    let mut req = Request::from_url("https://plain.example.com:9443/x", "GET").unwrap();
    req.site.port_stated = false;
    assert_eq!(
        s.decide(&req, None, &Narrowing::default()).verdict,
        Verdict::Allow
    );
}

mod api_clients;
mod providers;
mod step_up;
