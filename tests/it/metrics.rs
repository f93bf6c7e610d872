//! Metrics in CloudWatch embedded metric format: every document the stages
//! emit in a run is checked against the EMF specification, and the figures
//! against what the control plane recorded.

use pipeline_tests::*;
use provisioning::domain::Service;
use serde_json::Value;

/// Checks one document against the EMF specification: `_aws` with an integer
/// millisecond `Timestamp` and at least one directive; each directive names a
/// namespace, dimension sets (each at most 30 names, every name a string
/// member of the document) and metrics (each at most once, a known unit, its
/// value a number or an array of numbers in the document).
fn assert_emf(doc: &Value) {
    let aws = doc["_aws"]
        .as_object()
        .unwrap_or_else(|| panic!("no _aws: {doc}"));
    assert!(
        aws["Timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{doc}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty(), "{doc}");
    for directive in directives {
        let namespace = directive["Namespace"].as_str().expect("Namespace");
        assert!(!namespace.is_empty() && namespace.len() <= 255);
        for set in directive["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30, "{doc}");
            for name in set {
                let name = name.as_str().expect("a dimension name is a string");
                assert!(
                    doc[name].is_string(),
                    "dimension {name} has no string value: {doc}"
                );
            }
        }
        let metrics = directive["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        let mut names = std::collections::BTreeSet::new();
        for metric in metrics {
            let name = metric["Name"].as_str().expect("Name");
            assert!(names.insert(name), "{name} declared twice: {doc}");
            if let Some(unit) = metric.get("Unit") {
                assert!(
                    ["Milliseconds", "Count", "Seconds", "Bytes", "None"]
                        .contains(&unit.as_str().unwrap()),
                    "{doc}"
                );
            }
            let value = &doc[name];
            assert!(
                value.is_number()
                    || value
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_number)),
                "metric {name} has no numeric value: {doc}"
            );
        }
    }
}

fn named<'a>(metrics: &'a [Value], name: &str) -> Vec<&'a Value> {
    metrics.iter().filter(|m| m.get(name).is_some()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emf_line_of_a_run_meets_the_spec_and_provisioning_duration_is_the_recorded_one() {
    let env = TestEnv::new().await;
    let id = env.create(&project("measured")).await.project_id;
    let report = env.settle(id).await;
    assert_ready(&report);
    assert_eq!(env.operate(id, "suspend").await.status, 202);
    env.settle_run(id).await;
    // A project that fails permanently.
    let server = registration_endpoint(Service::Realtime, 400, None).await;
    let failing = env_with_service(Service::Realtime, &server).await;
    let doomed = failing
        .create(&project("measured-failure"))
        .await
        .project_id;
    assert_eq!(failing.settle(doomed).await.status, "failed");

    let all = captured_metrics();
    assert!(!all.is_empty());
    for doc in &all {
        assert_emf(doc);
    }
    let metrics = metrics_of(id);
    // One ProvisioningDuration, the project's recorded time, per Region and
    // Cluster and without dimensions.
    let durations = named(&metrics, "ProvisioningDuration");
    assert_eq!(durations.len(), 1, "{metrics:#?}");
    let recorded = report.provisioning_ms.expect("recorded") as f64;
    assert_eq!(
        durations[0]["ProvisioningDuration"].as_f64(),
        Some(recorded)
    );
    assert_eq!(durations[0]["Region"], "us-east-1");
    assert_eq!(durations[0]["Cluster"].as_str(), report.cluster.as_deref());
    assert_eq!(
        durations[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Region", "Cluster"], []])
    );
    assert_eq!(named(&metrics, "ProjectsReady").len(), 1);
    // Each stage once, attempt 1, its duration within the run's.
    let stages: Vec<(&str, f64)> = named(&metrics, "StageDuration")
        .iter()
        .filter(|m| m["kind"] == "provision")
        .map(|m| {
            (
                m["Stage"].as_str().unwrap(),
                m["StageAttempts"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("validate", 1.0),
            ("create-database", 1.0),
            ("create-schema", 1.0),
            ("register-services", 1.0),
            ("generate-api-keys", 1.0),
            ("finalize", 1.0)
        ]
    );
    for m in named(&metrics, "StageDuration") {
        assert!(
            m["StageDuration"].as_f64().unwrap() <= recorded + 1000.0,
            "{m}"
        );
    }
    // The suspend: one operation, succeeded, with its duration.
    let operations = named(&metrics, "OperationDuration");
    assert_eq!(operations.len(), 1, "{metrics:#?}");
    assert_eq!(operations[0]["Operation"], "suspend");
    assert_eq!(operations[0]["OperationsSucceeded"].as_f64(), Some(1.0));
    // The failure: one ProjectsFailed at its stage, no ProvisioningDuration.
    let failed = metrics_of(doomed);
    let projects_failed = named(&failed, "ProjectsFailed");
    assert_eq!(projects_failed.len(), 1, "{failed:#?}");
    assert_eq!(projects_failed[0]["Stage"], "register-services");
    assert!(named(&failed, "ProvisioningDuration").is_empty());
    // Nothing secret in any of them.
    let text = serde_json::to_string(&all).unwrap();
    for key in plaintext_keys(&env, id).await {
        assert!(!text.contains(&key), "an EMF line carries a key");
    }
    let password = tenant_credentials(&env, id).await;
    use secrecy::ExposeSecret;
    assert!(!text.contains(password.password.expose_secret()));
}
