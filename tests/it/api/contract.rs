//! Every route through its sample event, answers checked against openapi.yaml.

use pipeline_tests::*;
use provisioning::api_keys::verify_key;
use serde_json::json;
use uuid::Uuid;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(super) async fn active_keys_in_secret(env: &TestEnv, project_id: Uuid) -> Vec<String> {
    plaintext_keys(env, project_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_its_sample_event_as_openapi_yaml_says() {
    let env = TestEnv::new().await;
    let none = "-";

    let (status, headers, body) = env
        .send_documented_event("api-create-project.json", (none, none), "/projects", "post")
        .await;
    assert_eq!(status, 202, "{body:?}");
    let body = body.unwrap();
    let id = body["project_id"].as_str().unwrap().to_owned();
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/projects/{id}").as_str())
    );
    let project_id: Uuid = id.parse().unwrap();
    assert_ready(&env.settle(project_id).await);

    let (status, _, body) = env
        .send_documented_event("api-get-project.json", (&id, none), "/projects/{id}", "get")
        .await;
    assert_eq!(status, 200);
    let report = body.unwrap();
    assert_eq!(report["status"], "ready");
    assert_eq!(report["timeline"].as_array().unwrap().len(), 6);
    let plaintexts = active_keys_in_secret(&env, project_id).await;
    for plain in &plaintexts {
        assert!(
            !report.to_string().contains(plain.as_str()),
            "GET /projects/{{id}} shows a key"
        );
    }

    let (status, _, _) = env
        .send_documented_event(
            "api-list-jobs.json",
            (none, none),
            "/provisioning/jobs",
            "get",
        )
        .await;
    assert_eq!(status, 200);

    let (status, _, body) = env
        .send_documented_event(
            "api-admin-provisioning.json",
            (none, none),
            "/admin/provisioning",
            "get",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap()["projects_by_status"]["ready"], 1);

    let (status, _, body) = env
        .send_documented_event(
            "api-create-api-key.json",
            (&id, none),
            "/projects/{id}/api-keys",
            "post",
        )
        .await;
    assert_eq!(status, 201, "{body:?}");
    let issued = body.unwrap();
    let key = issued["key"].as_str().unwrap().to_owned();
    let key_id = issued["id"].as_str().unwrap().to_owned();
    assert_eq!(issued["scopes"], json!(["read"]));
    let db = env.db().await;
    let verified = verify_key(&db, &key)
        .await
        .unwrap()
        .expect("the issued key verifies");
    assert_eq!(
        (verified.project_id, verified.scopes.clone()),
        (project_id, vec!["read".to_owned()])
    );
    assert_eq!(active_keys_in_secret(&env, project_id).await.len(), 3);
    // The plaintext is shown once: never again in the project's status.
    let (_, _, report) = env.send_event("api-get-project.json", &id, none).await;
    assert!(!report.unwrap().to_string().contains(&key));

    let (status, _, _) = env
        .send_documented_event(
            "api-revoke-api-key.json",
            (&id, &key_id),
            "/projects/{id}/api-keys/{key_id}",
            "delete",
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        verify_key(&db, &key).await.unwrap(),
        None,
        "a revoked key no longer verifies"
    );
    let remaining = active_keys_in_secret(&env, project_id).await;
    assert_eq!(remaining.len(), 2);
    assert!(!remaining.contains(&key), "the revoked key left the secret");
    for plain in &remaining {
        assert!(
            verify_key(&db, plain).await.unwrap().is_some(),
            "other keys still verify"
        );
    }
    let (status, _, _) = env
        .send_event("api-revoke-api-key.json", &id, &key_id)
        .await;
    assert_eq!(status, 204, "revoking twice is harmless");

    let (status, _, _) = env
        .send_documented_event(
            "api-retry-project.json",
            (&id, none),
            "/projects/{id}/provisioning/retry",
            "post",
        )
        .await;
    assert_eq!(status, 409, "a ready project cannot be retried");
}

/// The cluster routes' sample events, each answer as openapi.yaml documents it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_sample_events_get_documented_answers() {
    let env = TestEnv::new().await;
    let none = "";
    let (status, _, body) = env
        .send_documented_event(
            "api-list-clusters.json",
            (none, none),
            "/admin/clusters",
            "get",
        )
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body.as_ref().unwrap()["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["local-1", "local-2"],
        "the stack's clusters, registered"
    );

    // The sample names a secret of a real account: here it does not exist,
    // so the registration is refused for it and nothing is stored.
    let (status, _, body) = env
        .send_documented_event(
            "api-register-cluster.json",
            (none, none),
            "/admin/clusters",
            "post",
        )
        .await;
    assert_eq!(
        (status, body.unwrap()["field"].as_str()),
        (422, Some("admin_secret_arn"))
    );
    let (status, _, _) = env
        .send_documented_event(
            "api-update-cluster.json",
            (none, none),
            "/admin/clusters/{id}",
            "patch",
        )
        .await;
    assert_eq!(status, 404, "eu-west-1-2 was not registered");
}

/// The lifecycle routes' sample events (suspend, resume, delete, restore), each
/// answer as openapi.yaml documents it, then the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_sample_events_get_documented_answers() {
    let env = TestEnv::new().await;
    let created = env.create(&project("lifecycle-events")).await;
    let id = created.project_id.to_string();
    assert_ready(&env.settle(created.project_id).await);
    let none = "-";
    let steps = [
        (
            "api-suspend-project.json",
            "/projects/{id}/suspend",
            "post",
            "suspended",
        ),
        (
            "api-resume-project.json",
            "/projects/{id}/resume",
            "post",
            "ready",
        ),
        (
            "api-delete-project.json",
            "/projects/{id}",
            "delete",
            "deleted",
        ),
        (
            "api-restore-project.json",
            "/projects/{id}/restore",
            "post",
            "ready",
        ),
    ];
    for (file, route, method, status) in steps {
        let (code, headers, body) = env
            .send_documented_event(file, (&id, none), route, method)
            .await;
        assert_eq!(code, 202, "{file}: {body:?}");
        assert_eq!(
            header(&headers, "location"),
            Some(format!("/projects/{id}").as_str())
        );
        let body = body.unwrap();
        assert_eq!(body["status"], status, "{file}");
        assert_eq!(
            body["purge_after"].is_null(),
            method != "delete",
            "{file}: purge_after only for a delete"
        );
        let report = env.settle_run(created.project_id).await;
        assert_eq!(report.status, status, "{file}");
        assert_eq!(report.run.as_ref().unwrap().status, "succeeded", "{file}");
        // Sent again, each is refused: the project is no longer where it may start.
        let (code, _, _) = env
            .send_documented_event(file, (&id, none), route, method)
            .await;
        assert_eq!(code, 409, "{file} again");
    }
}
