//! Every CRD that a real kube-apiserver v1.36 judged (`tests/real-apiserver/crd-budget/`, copied
//! from `shared/real-apiserver/`) gets the same verdict from our estimate, the same fields, and
//! each factor it printed within 5 %.

use std::path::{Path, PathBuf};

use kubetask_validation::crd_rules::check_crd;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real-apiserver/crd-budget")
}

fn crds(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).expect("fixture");
    text.split("\n---")
        .map(serde_yaml::from_str::<Value>)
        .collect::<Result<Vec<Value>, _>>()
        .expect("fixture YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// `(field, factor)` of each error: the factor as printed (`"32.1x"`, `"more than 100x"`), or
/// `None` for the "contributed to" lines, which carry none.
type Lines = Vec<(String, Option<String>)>;

/// The factor an error message prints.
fn factor_in(message: &str) -> Option<String> {
    message
        .split_once("factor of ")
        .map(|(_, f)| f.split_once(" (try").map_or(f, |(f, _)| f).to_owned())
}

/// The errors of a server message.
fn verdict_lines(message: &str) -> Lines {
    let mut lines = Vec::new();
    for part in message.split("spec.validation.openAPIV3Schema").skip(1) {
        let (rest, text) = part.split_once(": Forbidden: ").expect("a Forbidden error");
        lines.push((
            format!("spec.validation.openAPIV3Schema{rest}"),
            factor_in(text),
        ));
    }
    lines
}

/// Our errors for `crd`.
fn our_lines(crd: &Value) -> Lines {
    check_crd(crd)
        .into_iter()
        .map(|c| {
            let factor = factor_in(&c.message);
            (c.field, factor)
        })
        .collect()
}

fn factor_value(factor: &str) -> Option<f64> {
    factor.strip_suffix('x')?.parse().ok()
}

/// The same fields in the same order, and each factor within 5 % of the server's.
fn assert_same_verdict(what: &str, ours: &Lines, theirs: &Lines) {
    assert_eq!(
        ours.iter().map(|l| &l.0).collect::<Vec<_>>(),
        theirs.iter().map(|l| &l.0).collect::<Vec<_>>(),
        "{what}: fields"
    );
    for ((_, a), (_, b)) in ours.iter().zip(theirs) {
        match (
            a.as_deref().and_then(factor_value),
            b.as_deref().and_then(factor_value),
        ) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() / y <= 0.05,
                "{what}: our factor {a:?} is not within 5 % of the server's {b:?}"
            ),
            _ => assert_eq!(a, b, "{what}"),
        }
    }
}

#[test]
fn every_recorded_probe_gets_the_real_servers_verdict_and_factor() {
    let verdicts: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("verdicts.json")).expect("verdicts.json"),
    )
    .expect("verdicts JSON");
    assert_eq!(verdicts.len(), 36);
    for verdict in &verdicts {
        let file = verdict["file"].as_str().expect("file");
        let [crd] = crds(&fixtures().join(file))
            .try_into()
            .expect("one CRD per probe");
        let theirs = match verdict["verdict"].as_str() {
            Some("accepted") => Vec::new(),
            _ => verdict_lines(verdict["server_says"].as_str().expect("message")),
        };
        assert_same_verdict(file, &our_lines(&crd), &theirs);
    }
}

#[test]
fn the_project_crds_of_55f7de9_are_refused_and_accepted_without_matches() {
    let refused = crds(&fixtures().join("project-crds-55f7de9.yaml"));
    let verdict = std::fs::read_to_string(fixtures().join("project-crds-55f7de9.verdict.txt"))
        .expect("verdict");
    let messages: Vec<&str> = verdict.lines().collect();
    assert_eq!(refused.len(), 2);
    for (crd, message) in refused.iter().zip(&messages) {
        let name = crd["metadata"]["name"].as_str().expect("name");
        assert!(
            message.contains(name),
            "the verdicts are in the file's order"
        );
        let inner = message
            .split_once("is invalid: [")
            .expect("a list of errors")
            .1
            .trim_end_matches(']');
        assert_same_verdict(name, &our_lines(crd), &verdict_lines(inner));
    }
    for crd in crds(&fixtures().join("project-crds-55f7de9-without-matches.yaml")) {
        assert_eq!(our_lines(&crd), Vec::new(), "{}", crd["metadata"]["name"]);
    }
}
