//! Several identity providers: which sign-ins a route accepts (`identity_providers`,
//! `idp_client_id`), the `idp` criterion, and the routes a configuration cannot satisfy.

use super::*;

const ROUTES: &str = "\
- from: https://app.example.com
  allowed_domains: [example.com]
- from: https://app.example.com
  prefix: /staff
  identity_providers: [entra]
  allowed_domains: [example.com]
- from: https://app.example.com
  prefix: /payroll
  identity_providers: [entra]
  idp_client_id: payroll-app
  idp_client_secret: ${PAYROLL_SECRET}
  allowed_domains: [example.com]
- from: https://app.example.com
  prefix: /desk
  policy:
    allow:
      and:
        - idp: {is: partners}
";

fn from(idp: &str, client: &str) -> Identity {
    let mut u = user("alice@example.com", &[]);
    u.signed_in_by(idp, client);
    u
}

fn why(s: &PolicySet, url: &str, u: Option<&Identity>) -> (Verdict, &'static str) {
    let req = Request::from_url(url, "GET").unwrap();
    let d = s.decide(&req, u, &Narrowing::default());
    (d.verdict, d.reason.code())
}

#[test]
fn a_session_from_a_provider_the_route_does_not_accept_is_asked_to_sign_in_with_one_it_does() {
    let s = set(ROUTES);
    let partners = from("partners", "");
    let entra = from("entra", "");
    let payroll = from("entra", "payroll-app");
    // The route's own app registration (/payroll/): the provider's own client's session is
    // not it, and the payroll app's session is not the provider's own client's.
    let sign_in_elsewhere = (Verdict::Login, "other_sign_in");
    for (path, who, expected) in [
        ("/", &partners, None),
        ("/staff/x", &partners, Some(sign_in_elsewhere)),
        ("/staff/x", &entra, None),
        ("/payroll/", &entra, Some(sign_in_elsewhere)),
        ("/payroll/", &payroll, None),
        ("/staff/", &payroll, Some(sign_in_elsewhere)),
    ] {
        let got = why(&s, &format!("https://app.example.com{path}"), Some(who));
        match expected {
            // Allowed, whatever rule allowed it.
            None => assert_eq!(got.0, Verdict::Allow, "{path} {:?}", who.idp()),
            Some(e) => assert_eq!(got, e, "{path} {:?}", who.idp()),
        }
    }
}

#[test]
fn the_idp_criterion_matches_the_provider_and_is_unknown_for_anonymous() {
    let s = set(ROUTES);
    assert_eq!(why(&s, "https://app.example.com/desk/", None).0, Verdict::Login);
    assert_eq!(
        why(&s, "https://app.example.com/desk/", Some(&from("partners", ""))).0,
        Verdict::Allow
    );
    assert_eq!(
        why(&s, "https://app.example.com/desk/", Some(&from("entra", ""))).0,
        Verdict::Forbidden
    );
}

#[test]
fn a_forged_idp_claim_in_a_subject_does_not_make_a_provider() {
    // The attack: a provider's user whose `sub` is written "partners#alice" (a generic provider
    // lets users pick names). Under provider `entra` it reads entra#partners#alice, its idp is
    // entra: never partners' alice.
    let mut u = user("x@example.com", &[]);
    u.subject = "partners#alice".into();
    u.signed_in_by("entra", "");
    assert_eq!(u.subject, "entra#partners#alice");
    assert_eq!(u.idp(), "entra");
    // Nor does a `sub` spelled like an already named one become another user of the same
    // provider: `entra#bob` under entra is entra#entra#bob, never entra's bob.
    let mut twice = user("x@example.com", &[]);
    twice.subject = "entra#bob".into();
    twice.signed_in_by("entra", "");
    assert_eq!(twice.subject, "entra#entra#bob");
    assert_eq!(twice.as_provider_names_it("entra").subject, "entra#bob");
    let s = set(ROUTES);
    assert_eq!(
        why(&s, "https://app.example.com/desk/", Some(&u)).0,
        Verdict::Forbidden
    );
}

#[test]
fn a_token_from_an_issuer_the_route_does_not_accept_counts_as_no_credential() {
    let s = set(ROUTES);
    let mut token = from("partners", "");
    token.token = true;
    token.client_id = Some("caller".into());
    assert_eq!(
        why(&s, "https://app.example.com/staff/x", Some(&token)),
        (Verdict::Login, "other_sign_in")
    );
    token.claims.insert(crate::identity::IDP.into(), "entra".into());
    assert_eq!(
        why(&s, "https://app.example.com/staff/x", Some(&token)).0,
        Verdict::Allow
    );
}

#[test]
fn routes_the_configuration_cannot_satisfy_are_errors_with_their_place() {
    let s = set("\
- from: https://a.example.com
  identity_providers: [entra, partnrs]
  allow_any_authenticated_user: true
- from: https://b.example.com
  idp_client_id: other-app
  idp_client_secret: s3cret
  allow_any_authenticated_user: true
- from: https://c.example.com
  identity_providers: [api-issuer]
  allow_any_authenticated_user: true
");
    let text = |sign_in: &[&str], bearer: &[&str]| {
        s.provider_problems(sign_in, bearer)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    insta::assert_snapshot!(text(&["entra", "partners"], &["api-issuer"]), @r"
    p.yaml:2:3: identity_providers names `partnrs`, which is not a provider of the configuration (entra, partners, api-issuer)
    p.yaml:5:3: idp_client_id is an app registration at one sign-in provider: name it in identity_providers
    ");
    // The one unnamed `oidc:` provider: identity_providers cannot name it.
    insta::assert_snapshot!(text(&[""], &[]), @r"
    p.yaml:2:3: identity_providers names `entra`, but the configuration names no provider (identity_providers needs providers:, each with a name)
    p.yaml:2:3: identity_providers names `partnrs`, but the configuration names no provider (identity_providers needs providers:, each with a name)
    p.yaml:9:3: identity_providers names `api-issuer`, but the configuration names no provider (identity_providers needs providers:, each with a name)
    ");
}

#[test]
fn sign_in_settings_that_cannot_work_are_refused_at_load() {
    insta::assert_snapshot!(errors("\
- from: https://a.example.com
  identity_providers: []
  idp_client_secret: x
  allow_any_authenticated_user: true
- from: https://b.example.com
  identity_providers: [a, b]
  idp_client_id: other-app
  idp_client_secret: s3cret
  allow_any_authenticated_user: true
").join("\n"), @r"
    p.yaml:2:23: identity_providers is empty: nobody could sign in; list provider names, or remove it (every provider)
    p.yaml:3:22: idp_client_secret without idp_client_id
    p.yaml:7:18: idp_client_id is an app registration at one provider: name exactly one in identity_providers
    ");
}
