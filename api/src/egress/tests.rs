use super::*;

fn pattern(text: &str) -> DomainPattern {
    match DomainPattern::parse(text) {
        Ok(p) => p,
        Err(e) => panic!("{text}: {e}"),
    }
}

#[test]
fn wildcards_match_subdomains_only() {
    let cases = [
        ("*.example.com", "api.example.com", true),
        ("*.example.com", "a.b.example.com", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", "evil-example.com", false),
        ("*.example.com", "example.com.evil.net", false),
        ("*.example.com", ".example.com", false),
        ("example.com", "example.com", true),
        ("example.com", "api.example.com", false),
        ("example.com", "example.co", false),
    ];
    for (p, host, want) in cases {
        assert_eq!(pattern(p).matches(host), want, "{p} vs {host}");
    }
}

#[test]
fn patterns_that_cannot_be_enforced_are_refused() {
    for bad in [
        "",
        "*",
        "*.",
        "*.com",
        "Example.com",
        "a..b",
        "-a.com",
        "a-.com",
        "a.*.com",
        "**.a.com",
        "10.0.0.1",
        "a.b.c/",
        "exa mple.com",
    ] {
        assert!(DomainPattern::parse(bad).is_err(), "{bad:?} was accepted");
    }
    let long_label = format!("{}.com", "a".repeat(64));
    assert!(DomainPattern::parse(&long_label).is_err());
}

#[test]
fn within_is_containment() {
    let cases = [
        ("api.example.com", "*.example.com", true),
        ("*.api.example.com", "*.example.com", true),
        ("*.example.com", "*.example.com", true),
        ("*.example.com", "*.api.example.com", false),
        ("*.example.com", "example.com", false),
        ("example.com", "*.example.com", false),
        ("example.com", "example.com", true),
    ];
    for (narrow, wide, want) in cases {
        assert_eq!(
            pattern(narrow).within(&pattern(wide)),
            want,
            "{narrow} within {wide}"
        );
    }
}

fn egress(mode: Option<EgressMode>, domains: &[&str], cidrs: &[&str], ports: &[i32]) -> Egress {
    Egress {
        mode,
        allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
        allowed_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        ports: ports.to_vec(),
    }
}

#[test]
fn without_egress_the_default_mode_applies() {
    let policy = effective(EgressMode::Deny, None, None);
    assert_eq!(policy, Ok(EgressPolicy::deny()));
    let open = effective(EgressMode::Open, None, None).map(|p| p.mode);
    assert_eq!(open, Ok(EgressMode::Open));
}

#[test]
fn a_task_inherits_and_narrows_its_agents_egress() {
    let agent = egress(
        Some(EgressMode::AllowList),
        &["*.github.com", "pypi.org"],
        &["10.96.0.0/12"],
        &[443, 22],
    );
    let inherited = effective(EgressMode::Open, Some(("Agent/a", &agent)), None);
    let Ok(inherited) = inherited else {
        panic!("{inherited:?}")
    };
    assert_eq!(inherited.mode, EgressMode::AllowList);
    assert!(inherited.allows_name("api.github.com"));
    assert!(!inherited.allows_name("github.com"));
    assert!(inherited.cidr_allows("10.96.0.10".parse().unwrap_or(IpAddr::from([0; 4]))));
    assert_eq!(inherited.ports, vec![443, 22]);

    let task = egress(None, &["api.github.com"], &["10.96.0.0/16"], &[443]);
    let narrowed = effective(
        EgressMode::Open,
        Some(("Agent/a", &agent)),
        Some(("Task/t", &task)),
    );
    let Ok(narrowed) = narrowed else {
        panic!("{narrowed:?}")
    };
    assert_eq!(narrowed.mode, EgressMode::AllowList);
    assert!(narrowed.allows_name("api.github.com"));
    assert!(!narrowed.allows_name("uploads.github.com"));
    assert_eq!(narrowed.ports, vec![443]);

    let deny = egress(Some(EgressMode::Deny), &[], &[], &[]);
    let denied = effective(
        EgressMode::Open,
        Some(("Agent/a", &agent)),
        Some(("Task/t", &deny)),
    );
    assert_eq!(denied.map(|p| p.mode), Ok(EgressMode::Deny));
}

#[test]
fn a_task_cannot_widen_its_agents_egress() {
    let agent = egress(
        Some(EgressMode::AllowList),
        &["*.github.com"],
        &["10.96.0.0/12"],
        &[],
    );
    let cases = [
        (
            egress(Some(EgressMode::Open), &[], &[], &[]),
            "spec.egress.mode",
        ),
        (
            egress(None, &["github.com"], &[], &[]),
            "spec.egress.allowedDomains[0]",
        ),
        (
            egress(None, &["api.github.com", "evil.net"], &[], &[]),
            "spec.egress.allowedDomains[1]",
        ),
        (
            egress(None, &[], &["10.0.0.0/8"], &[]),
            "spec.egress.allowedCIDRs[0]",
        ),
        (egress(None, &[], &[], &[22]), "spec.egress.ports[0]"),
        (
            egress(None, &["Evil.net"], &[], &[]),
            "spec.egress.allowedDomains[0]",
        ),
        (
            egress(None, &[], &["10.0.0.0/33"], &[]),
            "spec.egress.allowedCIDRs[0]",
        ),
        (egress(None, &[], &[], &[0]), "spec.egress.ports[0]"),
    ];
    for (task, field) in cases {
        let got = effective(
            EgressMode::Open,
            Some(("Agent/a", &agent)),
            Some(("Task/t", &task)),
        );
        match got {
            Err(e) => {
                assert_eq!(e.object, "Task/t");
                assert_eq!(e.field, field, "{task:?}: {}", e.message);
            }
            Ok(p) => panic!("{task:?} was allowed: {p:?}"),
        }
    }
}

#[test]
fn a_task_may_list_any_domain_under_an_open_agent() {
    let agent = egress(Some(EgressMode::Open), &[], &[], &[]);
    let task = egress(Some(EgressMode::AllowList), &["pypi.org"], &[], &[]);
    let got = effective(
        EgressMode::Deny,
        Some(("Agent/a", &agent)),
        Some(("Task/t", &task)),
    );
    assert_eq!(
        got.map(|p| (p.mode, p.domains)),
        Ok((EgressMode::AllowList, vec![pattern("pypi.org")]))
    );
}

#[test]
fn an_agents_invalid_field_is_named_on_the_agent() {
    let agent = egress(None, &["*.com"], &[], &[]);
    let got = effective(EgressMode::Open, Some(("Agent/a", &agent)), None);
    let Err(e) = got else { panic!("{got:?}") };
    assert_eq!(
        (e.object.as_str(), e.field.as_str()),
        ("Agent/a", "spec.egress.allowedDomains[0]")
    );
}
