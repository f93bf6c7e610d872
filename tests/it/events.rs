//! The sample events in events/ are what the functions really receive.

use aws_lambda_events::event::sqs::SqsEvent;
use provisioning::domain::{NewProject, StageMessage};

fn read(file: &str) -> String {
    std::fs::read_to_string(format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn every_stage_and_the_dead_letter_function_has_an_sqs_event_carrying_a_stage_message() {
    for stage in provisioning::Stage::ALL {
        let event: SqsEvent = serde_json::from_str(&read(&format!("sqs-{stage}.json"))).unwrap();
        let record = &event.records[0];
        let message = StageMessage::parse(record.body.as_deref().unwrap()).unwrap();
        assert_eq!(message.stage, stage);
        assert!(record
            .event_source_arn
            .as_deref()
            .unwrap()
            .ends_with(&format!("-{stage}")));
        assert!(!record.message_id.as_deref().unwrap().is_empty());
    }
    let dead: SqsEvent = serde_json::from_str(&read("sqs-dead-letter.json")).unwrap();
    assert!(dead.records[0]
        .event_source_arn
        .as_deref()
        .unwrap()
        .ends_with("-dlq"));
    StageMessage::parse(dead.records[0].body.as_deref().unwrap()).unwrap();
    let malformed: SqsEvent = serde_json::from_str(&read("sqs-malformed.json")).unwrap();
    assert!(StageMessage::parse(malformed.records[0].body.as_deref().unwrap()).is_err());
}

#[test]
fn every_api_event_is_an_api_gateway_v2_request_and_the_sample_project_is_valid() {
    for file in [
        "api-create-project.json",
        "api-get-project.json",
        "api-list-jobs.json",
        "api-retry-project.json",
        "api-admin-provisioning.json",
        "api-create-api-key.json",
        "api-revoke-api-key.json",
        "api-list-clusters.json",
        "api-register-cluster.json",
        "api-update-cluster.json",
    ] {
        lambda_http::request::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let project: NewProject = serde_json::from_str(&read("create-project.json")).unwrap();
    provisioning::project::validate_new_project(&project).unwrap();
    let cfn: serde_json::Value = serde_json::from_str(&read("cfn-migrate-create.json")).unwrap();
    assert_eq!(cfn["RequestType"], "Create");
}
