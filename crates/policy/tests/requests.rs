//! Request rules: the shipped packs judging HTTP requests, and packs whose request rules
//! are wrong being refused at load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use stakpak_policy::{
    Action, Decision, HttpRequest, Policy, Settings, load::load_dirs, parse_pack,
};

fn check(example: &str) -> (Decision, Option<String>) {
    static POLICY: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        load_dirs(
            &[Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")],
            Settings::default(),
        )
        .unwrap()
    });
    let v = policy.check(&Action::Request(
        HttpRequest::parse_example(example).unwrap(),
    ));
    (v.decision, v.rule)
}

#[test]
fn shipped_packs_judge_requests() {
    let deny = |rule: &str| (Decision::Deny, Some(rule.to_string()));
    let allow = (Decision::Allow, None);
    let cases = [
        (
            "DELETE https://kube.test/api/v1/namespaces/prod",
            deny("k8s-api.delete-namespace"),
        ),
        (
            "GET https://kube.test/api/v1/namespaces/prod",
            allow.clone(),
        ),
        (
            "DELETE https://kube.test/apis/apps/v1/namespaces/dev/deployments/web",
            allow.clone(),
        ),
        (
            "GET https://aws.test/?Action=TerminateInstances&InstanceId.1=i-1",
            deny("aws-api.ec2-terminate"),
        ),
        (
            "GET https://aws.test/?Action=DescribeInstances",
            allow.clone(),
        ),
        (
            "POST https://aws.test/\nX-Amz-Target: DynamoDB_20120810.DeleteTable\n\n{\"TableName\":\"t\"}",
            deny("aws-api.dynamodb-delete-table"),
        ),
        (
            "POST https://aws.test/\nX-Amz-Target: DynamoDB_20120810.ListTables\n\n{}",
            allow.clone(),
        ),
        (
            "PATCH https://api.github.com/repos/o/r/git/refs/heads/dev\n\n{\"sha\":\"a\",\"force\":true}",
            deny("github-api.force-push"),
        ),
        ("GET https://api.github.com/repos/o/r", allow.clone()),
    ];
    for (example, expected) in cases {
        assert_eq!(check(example), expected, "{example}");
    }
}

#[test]
fn request_rules_that_are_wrong_are_refused() {
    let pack = |rule: &str| format!("[pack]\nid = \"t\"\n[[request]]\n{rule}");
    let bad = [
        (
            "id = \"t.r\"\ndecision = \"deny\"\nreason = \"r\"\nmatch = { methods = [\"DELETE\"] }\nexamples.match = [\"GET https://x/\"]",
            "example `GET https://x/` does not match it",
        ),
        (
            "id = \"t.r\"\ndecision = \"deny\"\nreason = \"r\"\nmatch = { methods = [\"DELETE\"] }\nexamples.match = [\"DELETE x\"]",
            "is not a request",
        ),
        (
            "id = \"t.r\"\ndecision = \"deny\"\nreason = \"r\"\nmatch = { body = \"x\" }\nexamples.match = [\"DELETE https://x/\"]",
            "needs `methods`, `hosts`, `paths` or `operations`",
        ),
        (
            "id = \"t.r\"\ndecision = \"deny\"\nreason = \"r\"\nmatch = { paths = [\"~(\"] }\nexamples.match = [\"DELETE https://x/\"]",
            "bad regular expression",
        ),
        (
            "id = \"t.r\"\ndecision = \"deny\"\nreason = \"r\"\nmatch = { hosts = [\"*.example.com\"] }\nexamples.match = [\"GET https://api.example.com/\"]\nexamples.not_match = [\"GET https://x.example.com.evil/\", \"GET https://API.example.com/\"]",
            "example `GET https://API.example.com/` matches it but is listed under not_match",
        ),
    ];
    for (rule, expected) in bad {
        let err = parse_pack("t.toml", &pack(rule))
            .map_err(|e| e.to_string())
            .and_then(|p| {
                Policy::new(vec![p], Settings::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .unwrap_err();
        assert!(err.contains(expected), "{err}\nexpected: {expected}");
    }
}
