#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Policy evaluation with 10,000 routes (target: under 1 µs per decision).
//! `cargo bench --bench policy`

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use forwarden::identity::Identity;
use forwarden::policy::{Narrowing, PolicySet};
use forwarden::request::Request;

fn policy(n: usize) -> PolicySet {
    let mut src = String::from(
        "policies:\n  staff:\n    allow:\n      or:\n        - domain: {is: example.com}\n        - groups: {has: admins}\nroutes:\n",
    );
    for i in 0..n {
        // A mix of shapes: plain hosts, prefixes on the same host, PPL, named policies, wildcards.
        match i % 4 {
            0 => src.push_str(&format!("  - from: https://app{i}.example.com\n    allowed_domains: [example.com]\n")),
            1 => src.push_str(&format!(
                "  - from: https://app{}.example.com\n    prefix: /admin{i}\n    allowed_groups: [admins]\n",
                i - 1
            )),
            2 => src.push_str(&format!(
                "  - from: https://app{i}.example.com\n    policy:\n      allow:\n        or:\n          - email: {{in: [a@example.com, b@example.com]}}\n          - and:\n              - domain: {{is: example.com}}\n              - groups: {{has: staff}}\n      deny:\n        or:\n          - http_method: {{is: DELETE}}\n"
            )),
            _ => src.push_str(&format!("  - from: https://*.zone{i}.example.com\n    policy: staff\n")),
        }
    }
    PolicySet::from_sources(&[("bench.yaml".into(), src)]).unwrap_or_else(|e| panic!("{e:?}"))
}

fn bench(c: &mut Criterion) {
    let set = policy(10_000);
    assert_eq!(set.routes().len(), 10_000);
    let user = Identity {
        subject: "u".into(),
        email: Some("someone@example.com".into()),
        groups: vec!["staff".into(), "admins".into()],
        ..Identity::default()
    };
    let none = Narrowing::default();
    let cases = [
        ("exact host", "https://app5000.example.com/some/page"),
        ("prefix on host", "https://app5000.example.com/admin5001/users"),
        ("ppl", "https://app5002.example.com/x"),
        ("wildcard", "https://deep.host.zone5003.example.com/x"),
        ("no route", "https://unknown.example.org/x"),
    ];
    for (name, url) in cases {
        let req = Request::from_url(url, "GET").unwrap_or_else(|e| panic!("{e}"));
        c.bench_function(&format!("decide 10k routes: {name}"), |b| {
            b.iter(|| black_box(set.decide(black_box(&req), Some(&user), &none).verdict))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
