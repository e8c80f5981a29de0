use super::*;

#[test]
fn normalizes() {
    let n = |p: &str| normalize_path(p).map(std::borrow::Cow::into_owned);
    assert_eq!(n("/a/b/../c").unwrap(), "/a/c");
    assert_eq!(n("//admin").unwrap(), "/admin");
    assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
    assert_eq!(n("/public/%2E%2E/admin").unwrap(), "/admin");
    assert_eq!(n("/a/./b/").unwrap(), "/a/b/");
    assert_eq!(n("/").unwrap(), "/");
    assert_eq!(n("/x?y=/../z").unwrap(), "/x");
    assert_eq!(n("/caf%C3%A9").unwrap(), "/café");
    assert!(n("/public/..%2Fadmin").is_err());
    assert!(n("/a%2Fb").is_err());
    assert!(n("/a\\b").is_err());
    assert!(n("/a%5cb").is_err());
    assert!(n("/admin;x=1").is_err());
    assert!(n("/..").is_err());
    assert!(n("/a#b").is_err());
    assert!(n("/a%00").is_err());
    assert!(n("/%ff").is_err());
}

#[test]
fn ipv4_mapped_peer_of_a_dual_stack_listener_is_trusted() {
    let trusted = ["127.0.0.1/32".parse::<IpNet>().unwrap()];
    assert!(is_trusted("::ffff:127.0.0.1".parse().unwrap(), &trusted));
    assert!(!is_trusted("::ffff:10.0.0.1".parse().unwrap(), &trusted));
}

#[test]
fn hosts() {
    assert_eq!(
        parse_host("App.Example.COM.").unwrap(),
        ("app.example.com".into(), None)
    );
    assert_eq!(
        parse_host("a.example.com:8443").unwrap(),
        ("a.example.com".into(), Some(8443))
    );
    assert_eq!(parse_host("[::1]:80").unwrap(), ("[::1]".into(), Some(80)));
    assert!(parse_host("a b").is_err());
    assert!(parse_host("user@host").is_err());
    assert!(parse_host("").is_err());
}

#[test]
fn url_roundtrip() {
    let r = Request::from_url("https://App.example.com/x/../y?a=1&b=2", "get").unwrap();
    assert_eq!(r.site.host, "app.example.com");
    assert_eq!(r.path, "/y");
    assert_eq!(r.method, "GET");
    assert_eq!(r.url(), "https://app.example.com/x/../y?a=1&b=2");
}

/// A subrequest from header lines as a proxy would send them (`None`: not ASCII).
fn sub_of<'a>(lines: &'a [(&'static str, Option<&'a str>)]) -> Result<Request<'a>, RequestError> {
    let header = |name: &'static str| {
        let mut found = lines.iter().filter(|(n, _)| *n == name);
        match (found.next(), found.next()) {
            (None, _) => Field::Absent,
            (Some((_, Some(v))), None) => Field::One(v),
            _ => Field::Invalid,
        }
    };
    let mut forwarded_for = [None; FORWARDED_FOR_LINES];
    for (_, v) in lines.iter().filter(|(n, _)| *n == "x-forwarded-for") {
        forwarded_for.rotate_left(1);
        forwarded_for[FORWARDED_FOR_LINES - 1] = *v;
    }
    let sub = Subrequest {
        peer: "127.0.0.1".parse().unwrap(),
        header,
        forwarded_for,
        sources: Sources::ForwardAuth,
        scheme: "https",
    };
    rebuild(
        &sub,
        &["127.0.0.1/32".parse().unwrap(), "10.9.0.0/16".parse().unwrap()],
    )
}

const BASE: [(&str, Option<&str>); 2] = [
    ("x-forwarded-uri", Some("/")),
    ("x-forwarded-proto", Some("https")),
];

fn with(extra: &[(&'static str, Option<&'static str>)]) -> Vec<(&'static str, Option<&'static str>)> {
    BASE.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn host_smuggling_several_forwarded_hosts_are_refused() {
    let l = with(&[
        ("x-forwarded-host", Some("www.test")),
        ("x-forwarded-host", Some("app.test")),
    ]);
    assert_eq!(
        sub_of(&l).unwrap_err(),
        RequestError::Ambiguous("x-forwarded-host")
    );
    let l = with(&[("host", Some("www.test")), ("host", Some("app.test"))]);
    assert_eq!(sub_of(&l).unwrap_err(), RequestError::Ambiguous("host"));
}

#[test]
fn host_smuggling_comma_list_is_refused() {
    let l = with(&[("x-forwarded-host", Some("www.test,app.test"))]);
    assert_eq!(
        sub_of(&l).unwrap_err(),
        RequestError::Ambiguous("x-forwarded-host")
    );
    let l = with(&[("host", Some("www.test, app.test"))]);
    assert_eq!(
        sub_of(&l).unwrap_err(),
        RequestError::Ambiguous("x-forwarded-host")
    );
}

#[test]
fn host_smuggling_malformed_forwarded_host_never_falls_back_to_host() {
    // Not ASCII: refused, not replaced by the Host header.
    let l = with(&[("x-forwarded-host", None), ("host", Some("public.test"))]);
    assert_eq!(
        sub_of(&l).unwrap_err(),
        RequestError::Ambiguous("x-forwarded-host")
    );
    let l = with(&[
        ("x-forwarded-host", Some("app.tést")),
        ("host", Some("public.test")),
    ]);
    assert_eq!(sub_of(&l).unwrap_err(), RequestError::BadHost);
}

#[test]
fn host_smuggling_client_chosen_port_is_overruled_by_the_proxy_port() {
    let l = with(&[
        ("x-forwarded-host", Some("app.test")),
        ("x-forwarded-port", Some("443")),
    ]);
    assert_eq!(sub_of(&l).unwrap().site.port, Some(443));
    let l = with(&[
        ("x-forwarded-host", Some("app.test:8080")),
        ("x-forwarded-port", Some("443")),
    ]);
    assert_eq!(sub_of(&l).unwrap_err(), RequestError::PortMismatch);
}

#[test]
fn spoofed_forwarded_for_over_several_lines_takes_the_rightmost_untrusted_hop() {
    let l = with(&[
        ("x-forwarded-host", Some("app.test")),
        ("x-forwarded-for", Some("10.1.1.1")),
        ("x-forwarded-for", Some("198.51.100.9, 10.9.0.5")),
    ]);
    assert_eq!(
        sub_of(&l).unwrap().client_ip,
        Some("198.51.100.9".parse().unwrap())
    );
    // A garbage hop right of the real one ends the search: nothing further left counts.
    let l = with(&[
        ("x-forwarded-host", Some("app.test")),
        ("x-forwarded-for", Some("10.1.1.1, junk, 10.9.0.5")),
    ]);
    assert_eq!(sub_of(&l).unwrap().client_ip, None);
}

proptest::proptest! {
    /// The one-pass shortcut of `normalize_path` answers only where the careful way, rule by
    /// rule, leaves the path as it is: a path the shortcut lets through unchanged is never one
    /// the careful way would refuse or rewrite (a dot segment, `//`, `%2e`, `;`, `\`, a control).
    #[test]
    fn the_plain_path_shortcut_agrees_with_the_careful_way(
        p in "/[a-z./%2eE;#\\\\\\x00\\x7f\u{e9}-]{0,12}"
    ) {
        let fast = normalize_path(&p);
        let careful = normalize_careful(&p);
        proptest::prop_assert_eq!(format!("{fast:?}"), format!("{careful:?}"));
    }

    /// The one-scan `parse_host` reads every authority as the earlier way did, rule by rule
    /// (`@` refused, the port after the last `:`, then the name's letters and dots).
    #[test]
    fn the_one_scan_host_parse_agrees_with_the_rule_by_rule_way(
        a in "[a-zA-Z0-9._@:\\[\\] -]{0,16}"
    ) {
        proptest::prop_assert_eq!(format!("{:?}", parse_host(&a)), format!("{:?}", host_rule_by_rule(&a)));
    }
}

/// `parse_host` as it was before the one-scan version: the reference the property test holds
/// it to.
fn host_rule_by_rule(authority: &str) -> Result<(Cow<'_, str>, Option<u16>), RequestError> {
    if authority.contains('@') {
        return Err(RequestError::BadHost);
    }
    if authority.starts_with('[') {
        return super::site::parse_ip_literal(authority);
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| RequestError::BadHost)?)),
        None => (authority, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('.')
        && !host.contains("..")
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    if !labels_ok {
        return Err(RequestError::BadHost);
    }
    Ok((Cow::Owned(host.to_ascii_lowercase()), port))
}

#[test]
fn scheme_smuggling_a_forwarded_proto_list_is_refused() {
    // A proxy that appends to the client's `X-Forwarded-Proto: https` sends `https, http`: the
    // first value is the client's word. Refused, never read as its first value.
    for list in ["https, http", "https,http", "http, https"] {
        let l = [
            ("x-forwarded-uri", Some("/")),
            ("x-forwarded-host", Some("app.test")),
            ("x-forwarded-proto", Some(list)),
        ];
        assert_eq!(sub_of(&l).unwrap_err(), RequestError::BadScheme, "{list}");
    }
    assert_eq!(
        Request::from_url("https,http://app.test/", "GET").unwrap_err(),
        RequestError::BadScheme
    );
    // A list in a URL's host is a bad host, not a forwarded header's ambiguity.
    assert_eq!(
        Request::from_url("https://a.test,b.test/", "GET").unwrap_err(),
        RequestError::BadHost
    );
}

#[test]
fn an_unstated_scheme_is_the_configured_one_for_every_caller() {
    // No `X-Forwarded-Proto`: the subrequest's scheme is the one it was given (the site's,
    // `Config::scheme`), never a fixed guess.
    let l = [
        ("x-forwarded-uri", Some("/")),
        ("x-forwarded-host", Some("app.test")),
    ];
    assert_eq!(sub_of(&l).unwrap().site.scheme, "https");
    let sub = Subrequest {
        peer: "127.0.0.1".parse().unwrap(),
        header: |n: &'static str| match n {
            "x-forwarded-uri" => Field::One("/"),
            "x-forwarded-host" => Field::One("app.test"),
            _ => Field::Absent,
        },
        forwarded_for: [None; FORWARDED_FOR_LINES],
        sources: Sources::ForwardAuth,
        scheme: "http",
    };
    let trusted = ["127.0.0.1/32".parse().unwrap()];
    assert_eq!(rebuild(&sub, &trusted).unwrap().site.scheme, "http");
    // A typed caller (Envoy) that states no scheme: the same rule.
    let mut parts = Parts {
        method: b"GET",
        scheme: None,
        unstated_scheme: "http",
        authority: b"app.test",
        port: None,
        path: b"/",
        client_ip: None,
    };
    let peer = "127.0.0.1".parse().unwrap();
    assert_eq!(from_parts(&parts, peer, &trusted).unwrap().site.scheme, "http");
    parts.scheme = Some(b"wss");
    assert_eq!(from_parts(&parts, peer, &trusted).unwrap().site.scheme, "https");
    parts.scheme = Some(b"https, http");
    assert!(from_parts(&parts, peer, &trusted).is_err());
}

#[test]
fn the_site_rule_is_one_for_ports() {
    let site = |scheme, authority, stated| Site::new(scheme, "https", authority, stated);
    // The proxy's port overrules none the client wrote, and must agree with it.
    assert_eq!(
        site(Some("https"), "app.test:8443", Some(8443))
            .unwrap()
            .port_or_default(),
        8443
    );
    assert_eq!(
        site(Some("https"), "app.test:8080", Some(443)).unwrap_err(),
        RequestError::PortMismatch
    );
    let s = site(Some("http"), "app.test", None).unwrap();
    assert_eq!(
        (s.port_or_default(), s.port_stated, s.origin()),
        (80, false, "http://app.test".into())
    );
    let s = site(None, "App.Test:443", Some(443)).unwrap();
    assert_eq!((s.port_stated, s.origin()), (true, "https://app.test".into()));
    let s = site(Some("https"), "app.test:8443", None).unwrap();
    assert_eq!(
        (s.port_stated, s.origin()),
        (false, "https://app.test:8443".into())
    );
    assert_eq!(
        site(Some("https"), "a.test,b.test", None).unwrap_err(),
        RequestError::Ambiguous("x-forwarded-host")
    );
}
