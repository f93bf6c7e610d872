//! template.yaml and the local stack describe the same queues: names, redrive
//! and visibility settings, event sources and function binaries. (The local
//! stack builds its queues from `Stage` and `QueueSettings::default()`; this
//! test holds the template to the same values.)

use local_dev::{QueueSettings, LOCAL_QUEUE_NAME_PREFIX};
use provisioning::Stage;
use serde_yaml::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).expect("template.yaml parses")
}

/// The tag and value of `!Sub 'x'`, `!Ref x`, `!GetAtt a.b`.
fn tagged(v: &Value) -> (String, Value) {
    match v {
        Value::Tagged(t) => (t.tag.to_string(), t.value.clone()),
        other => (String::new(), other.clone()),
    }
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, r)| (k.as_str().unwrap(), r))
        .collect()
}

fn parameter_default(t: &Value, name: &str) -> Value {
    t["Parameters"][name]["Default"].clone()
}

#[test]
fn the_template_declares_the_local_stacks_queues_with_the_same_redrive_and_visibility() {
    let t = template();
    let defaults = QueueSettings::default();
    assert_eq!(
        parameter_default(&t, "VisibilityTimeout").as_u64(),
        Some(u64::from(defaults.visibility_timeout_secs))
    );
    assert_eq!(
        parameter_default(&t, "MaxReceiveCount").as_u64(),
        Some(u64::from(defaults.max_receive_count))
    );
    assert_eq!(
        format!(
            "{}-",
            parameter_default(&t, "ResourcePrefix").as_str().unwrap()
        ),
        LOCAL_QUEUE_NAME_PREFIX
    );

    let queues = resources_of_type(&t, "AWS::SQS::Queue");
    assert_eq!(queues.len(), 2 * Stage::ALL.len());
    let by_name = |name: String| {
        queues
            .iter()
            .find(|(_, q)| {
                tagged(&q["Properties"]["QueueName"])
                    == ("!Sub".into(), Value::String(name.clone()))
            })
            .unwrap_or_else(|| panic!("no queue named {name}"))
    };
    for stage in Stage::ALL {
        let (_, queue) = by_name(format!("${{ResourcePrefix}}-{}", stage.queue_name()));
        let (dlq_id, dlq) = by_name(format!(
            "${{ResourcePrefix}}-{}",
            stage.dead_letter_queue_name()
        ));
        let props = &queue["Properties"];
        assert_eq!(
            tagged(&props["VisibilityTimeout"]),
            ("!Ref".into(), "VisibilityTimeout".into()),
            "{stage}"
        );
        assert_eq!(
            tagged(&dlq["Properties"]["VisibilityTimeout"]),
            ("!Ref".into(), "VisibilityTimeout".into()),
            "{stage} dlq"
        );
        let redrive = &props["RedrivePolicy"];
        assert_eq!(
            tagged(&redrive["maxReceiveCount"]),
            ("!Ref".into(), "MaxReceiveCount".into()),
            "{stage}"
        );
        assert_eq!(
            tagged(&redrive["deadLetterTargetArn"]),
            ("!GetAtt".into(), Value::String(format!("{dlq_id}.Arn"))),
            "{stage}"
        );
    }
}

#[test]
fn function_timeouts_stay_within_a_sixth_of_the_visibility_timeout() {
    let t = template();
    let timeout = &t["Parameters"]["FunctionTimeout"];
    let visibility = &t["Parameters"]["VisibilityTimeout"];
    assert!(6 * timeout["MaxValue"].as_u64().unwrap() <= visibility["MinValue"].as_u64().unwrap());
    assert!(6 * timeout["Default"].as_u64().unwrap() <= visibility["Default"].as_u64().unwrap());
    assert_eq!(
        tagged(&t["Globals"]["Function"]["Timeout"]),
        ("!Ref".into(), "FunctionTimeout".into())
    );
}

#[test]
fn every_queue_has_an_event_source_reporting_batch_item_failures_with_bounded_concurrency() {
    let t = template();
    let mappings = resources_of_type(&t, "AWS::Lambda::EventSourceMapping");
    assert_eq!(
        mappings.len(),
        2 * Stage::ALL.len(),
        "a stage function per queue, the dead-letter function on every DLQ"
    );
    for (id, m) in mappings {
        let p = &m["Properties"];
        assert_eq!(
            p["FunctionResponseTypes"],
            Value::Sequence(vec!["ReportBatchItemFailures".into()]),
            "{id}"
        );
        assert!(!p["ScalingConfig"]["MaximumConcurrency"].is_null(), "{id}");
        assert!(!p["BatchSize"].is_null(), "{id}");
    }
}

#[test]
fn every_function_binary_of_the_workspace_is_deployed_on_provided_al2023() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    let functions = resources_of_type(&t, "AWS::Serverless::Function");
    let mut binaries: Vec<String> = functions
        .iter()
        .map(|(id, f)| {
            assert_eq!(
                f["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda"),
                "{id}"
            );
            let runtime = f["Properties"]["Runtime"]
                .as_str()
                .or(globals["Runtime"].as_str());
            let handler = f["Properties"]["Handler"]
                .as_str()
                .or(globals["Handler"].as_str());
            assert_eq!(
                (runtime, handler),
                (Some("provided.al2023"), Some("bootstrap")),
                "{id}"
            );
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    binaries.sort();
    let mut expected: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    expected.sort();
    assert_eq!(binaries, expected);
}

#[test]
fn no_policy_statement_grants_every_resource() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    for (n, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap();
        assert!(
            !(code.contains("Resource:") && (code.contains("'*'") || code.contains("\"*\""))),
            "line {}: Resource '*'",
            n + 1
        );
    }
}
