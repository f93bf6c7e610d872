//! Tenants are isolated, keys verify only when exact, and no key or password
//! reaches Postgres or the logs.

use pipeline_tests::*;
use provisioning::domain::TenantNames;
use provisioning::keys;
use secrecy::ExposeSecret;
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_reach_another_tenant_or_create_databases_or_roles() {
    let env = TestEnv::new().await;
    let a = env.create(&project("tenant-a")).await;
    let b = env.create(&project("tenant-b")).await;
    let running = env.runner.spawn(2);
    assert_ready(
        &env.wait_for_status(
            a.project_id,
            &["ready", "failed"],
            std::time::Duration::from_secs(60),
        )
        .await,
    );
    assert_ready(
        &env.wait_for_status(
            b.project_id,
            &["ready", "failed"],
            std::time::Duration::from_secs(60),
        )
        .await,
    );
    running.stop().await;
    let creds_a = tenant_credentials(&env, a.project_id).await;
    let b_names = TenantNames::for_project(b.project_id);

    // A's credentials open A's database...
    let own = connect(&login_url(&creds_a, &creds_a.dbname)).await;
    own.batch_execute("INSERT INTO app.settings (key, value) VALUES ('theme', '\"dark\"')")
        .await
        .unwrap();
    // ...but not B's, nor the control plane (on local-1), wherever they are: on
    // A's own cluster CONNECT is refused; on another cluster A's role does not
    // exist, so its login is refused.
    let (a_cluster, _) = env.placement(a.project_id).await.unwrap();
    let b_place = env.placement(b.project_id).await.unwrap();
    let control_plane = stack_clusters().remove(0);
    for (other, (cluster, port)) in [
        (b_names.database.as_str(), b_place),
        (env.database_name.as_str(), control_plane),
    ] {
        let url = format!(
            "postgres://{}:{}@127.0.0.1:{port}/{other}",
            creds_a.username,
            creds_a.password.expose_secret()
        );
        let err = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("tenant A connected to {other} on {cluster}"));
        let expected = if cluster == a_cluster {
            SqlState::INSUFFICIENT_PRIVILEGE
        } else {
            SqlState::INVALID_PASSWORD
        };
        assert_eq!(err.code(), Some(&expected), "{other} on {cluster}: {err}");
    }
    // A wrong password is refused.
    let wrong = format!(
        "postgres://{}:wrong@{}:{}/{}",
        creds_a.username, creds_a.host, creds_a.port, creds_a.dbname
    );
    assert!(tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .is_err());
    // No cluster-level powers.
    for sql in [
        "CREATE DATABASE sneaky",
        "CREATE ROLE sneaky",
        &format!("ALTER ROLE {} CREATEDB", creds_a.username),
    ] {
        let err = own.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    let admin = env.project_admin(a.project_id).await;
    let role = admin
        .query_one("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit FROM pg_roles WHERE rolname = $1", &[&creds_a.username])
        .await
        .unwrap();
    assert_eq!(
        (
            role.get::<_, bool>(0),
            role.get::<_, bool>(1),
            role.get::<_, bool>(2),
            role.get::<_, bool>(3),
            role.get::<_, bool>(4),
            role.get::<_, i32>(5)
        ),
        (false, false, false, false, false, 20)
    );
    let public = admin
        .query_one(
            "SELECT has_database_privilege('public', $1, 'CONNECT'), has_database_privilege('public', $1, 'TEMPORARY')",
            &[&creds_a.dbname],
        )
        .await
        .unwrap();
    let public: (bool, bool) = (public.get(0), public.get(1));
    assert_eq!(public, (false, false), "PUBLIC keeps CONNECT or TEMP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_keys_verify_a_typo_is_caught_and_no_secret_leaks_to_postgres_or_logs() {
    let env = TestEnv::new().await;
    let created = env.create(&project("keys")).await;
    assert_ready(&env.settle(created.project_id).await);
    let plaintexts = plaintext_keys(&env, created.project_id).await;
    assert_eq!(plaintexts.len(), 2);
    let db = env.db().await;

    for plain in &plaintexts {
        let parsed = keys::parse(plain).unwrap();
        let hash: String = db
            .query_one(
                "SELECT key_hash FROM control_plane.api_keys WHERE id = $1",
                &[&parsed.id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(hash.starts_with("$scrypt$ln=14,r=8,p=1$"), "{hash}");
        assert!(keys::verify(plain, &hash));
        // One character changed in the secret part: rejected by the checksum, before any hash.
        let mut typo = plain.clone().into_bytes();
        let at = plain.len() - 20;
        typo[at] = if typo[at] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(
            keys::parse(&typo).err(),
            Some(keys::KeyFormatError::Checksum)
        );
        assert!(!keys::verify(&typo, &hash));
    }

    // Nothing secret anywhere in the control plane.
    let credentials = tenant_credentials(&env, created.project_id).await;
    let password = credentials.password.expose_secret().to_owned();
    let mut secrets: Vec<String> = plaintexts.clone();
    secrets.extend(
        plaintexts
            .iter()
            .map(|p| keys::parse(p).unwrap().secret.to_owned()),
    );
    secrets.push(password.clone());
    let tables = strings(
        &env.admin_on(&env.database_name).await,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'control_plane'",
    )
    .await;
    assert!(tables.len() >= 9, "{tables:?}");
    let mut dump = String::new();
    for table in &tables {
        for row in db
            .query(
                &format!("SELECT row_to_json(t)::text FROM control_plane.{table} t"),
                &[],
            )
            .await
            .unwrap()
        {
            dump.push_str(&row.get::<_, String>(0));
        }
    }
    assert!(
        dump.contains(&keys::parse(&plaintexts[0]).unwrap().id.to_owned()),
        "the dump covers the key rows"
    );
    let logs = captured_logs();
    assert!(
        logs.contains(&created.project_id.to_string()),
        "the logs of the run were captured"
    );
    for secret in &secrets {
        assert!(
            !dump.contains(secret.as_str()),
            "a secret is stored in the control plane"
        );
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
    // The role's password is stored by the server as a SCRAM verifier, never as text.
    let admin = env.project_admin(created.project_id).await;
    let stored: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&credentials.username],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$") && !stored.contains(&password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_log_line_names_project_run_stage_and_correlation() {
    let env = TestEnv::new().await;
    let created = env.create(&project("logged")).await;
    assert_ready(&env.settle(created.project_id).await);

    let logs = captured_logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["span"]["project_id"] == created.project_id.to_string())
        .collect();
    assert!(
        lines.len() >= 6,
        "one line per stage at least, got {}",
        lines.len()
    );
    for line in &lines {
        let span = &line["span"];
        assert_eq!(span["run_id"], created.run_id.to_string(), "{line}");
        assert_eq!(
            span["correlation_id"],
            created.correlation_id.to_string(),
            "{line}"
        );
        assert!(
            span["stage"].is_string() && line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    let completed: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "stage completed")
        .filter_map(|l| l["span"]["stage"].as_str())
        .collect();
    assert_eq!(
        completed,
        [
            "validate",
            "create-database",
            "create-schema",
            "register-services",
            "generate-api-keys",
            "finalize"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sslmode_require_every_pipeline_connection_is_encrypted() {
    let env = TestEnv::with(EnvOptions {
        extra: vec![("DATABASE_SSLMODE", "require".into())],
        ..Default::default()
    })
    .await;
    let admin = env.admin().await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(
        ssl, "on",
        "the test stack must run with PG_SSL=1 (scripts/test.sh sets it)"
    );
    let created = env.create(&project("encrypted")).await;
    assert_ready(&env.settle(created.project_id).await);

    // Every connection this pipeline holds open to its control plane is TLS.
    let rows = admin
        .query(
            "SELECT a.datname::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid
              WHERE a.application_name = 'provisioning' AND a.datname = $1",
            &[&env.database_name],
        )
        .await
        .unwrap();
    assert!(
        !rows.is_empty(),
        "the pipeline's pooled connections are visible"
    );
    for row in &rows {
        let (database, ssl): (String, bool) = (row.get(0), row.get(1));
        assert!(ssl, "a plain-text connection to {database}");
    }
    // verify-full without the server's CA refuses the self-signed certificate.
    let strict = TestEnv::with(EnvOptions {
        extra: vec![("DATABASE_SSLMODE", "verify-full".into())],
        ..Default::default()
    })
    .await;
    let err = match strict.pipeline.db.get().await {
        Ok(_) => panic!("verify-full accepted an untrusted certificate"),
        // As a stage reports it: retryable, and saying why.
        Err(e) => provisioning::StageError::from(e).to_string(),
    };
    // The refusal names the certificate (here rustls says "invalid peer certificate:
    // ...CaUsedAsEndEntity"), not some other failure such as a refused connection.
    assert!(
        err.to_lowercase().contains("certificate"),
        "verify-full failed for another reason than the certificate: {err}"
    );
}

/// The shared crate's sources, (path relative to shared/src, text).
fn shared_sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/src"));
    let mut out = Vec::new();
    walk(root, root, &mut out);
    assert!(out.len() > 20, "the shared crate's sources were found");
    out
}

/// IAM cannot tell one Postgres statement from another, so the rules "only
/// the access stage alters tenant roles" and "only the purge stage deletes
/// secrets" are held here, on the code: which files issue `ALTER ROLE` and
/// `DROP ROLE`, and which call a secret store's `delete`.
#[test]
fn only_the_access_stage_alters_tenant_roles_and_only_the_purge_stage_deletes_secrets() {
    let files_with = |needle: &str| -> Vec<String> {
        let mut found: Vec<String> = shared_sources()
            .into_iter()
            .filter(|(_, text)| {
                let code: String = text
                    .lines()
                    .map(|l| l.split("//").next().unwrap())
                    .collect::<String>()
                    .split_whitespace()
                    .collect();
                code.contains(needle)
            })
            .map(|(name, _)| name)
            .collect();
        found.sort();
        found
    };
    // create-database makes the role (and brings it to its password on a retry).
    assert_eq!(
        files_with("ALTERROLE"),
        ["stages/access.rs", "stages/create_database.rs"]
    );
    assert_eq!(files_with("DROPROLE"), ["stages/purge.rs"]);
    assert_eq!(files_with("DROPDATABASE"), ["stages/purge.rs"]);
    assert_eq!(files_with("secrets.delete("), ["stages/purge.rs"]);
}
