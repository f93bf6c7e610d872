//! The Lambda-facing side of a stage: builds the pipeline once per cold start and
//! turns an `SqsEvent` into an `SqsBatchResponse`.

use crate::adapters::{
    aws_config, http::HttpRegistrar, secrets_manager::SecretsManagerStore, sqs::SqsQueue,
};
use crate::batch::{process_batch, Disposition};
use crate::config::{DatabaseSource, Settings};
use crate::domain::{Stage, StageMessage};
use crate::ports::SecretStore;
use crate::stages::DatabaseCredentials;
use crate::stages::{Outcome, Pipeline};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use secrecy::ExposeSecret;
use std::sync::Arc;
use tracing::Instrument;

/// Which queue a function consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A stage queue.
    Stage(Stage),
    /// The dead-letter queues of all stages.
    DeadLetter,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Stage(stage) => stage.as_str(),
            Role::DeadLetter => "dead-letter",
        }
    }
}

pub type Error = lambda_runtime::Error;

/// One Lambda function: a role and the pipeline it drives.
#[derive(Clone)]
pub struct StageFunction {
    role: Role,
    pipeline: Pipeline,
}

impl Pipeline {
    /// Builds the real adapters: the Postgres pool, SQS, Secrets Manager and the
    /// HTTP registrar. Clients are cheap to build and connect lazily.
    pub async fn from_settings(mut settings: Settings) -> Result<Pipeline, Error> {
        let aws = aws_config().await;
        let secrets_client = aws_sdk_secretsmanager::Client::new(&aws);
        resolve_database(&mut settings, &secrets_client).await?;
        let tls = settings.tls()?;
        let db = crate::db::pool(
            settings.database_config(),
            tls.clone(),
            pool_size(&settings),
        );
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(&aws),
            settings.queue_url_prefix.clone(),
        );
        let secrets = SecretsManagerStore::new(secrets_client);
        let registrar = HttpRegistrar::new(
            settings.registration_urls.clone(),
            settings.registration_timeout,
        );
        Ok(Pipeline {
            settings: Arc::new(settings),
            tls,
            db,
            queue: Arc::new(queue),
            secrets: Arc::new(secrets),
            registrar: Arc::new(registrar),
        })
    }
}

/// One message holds at most two connections at once (the project lock and its
/// work), so a function instance needs 2 x batch concurrency + 1.
fn pool_size(settings: &Settings) -> usize {
    settings
        .db_pool_size
        .max(2 * settings.batch_concurrency + 1)
}

impl Pipeline {
    /// The same pipeline with a pool of its own, as another function instance
    /// would have (the local runner gives one to every queue consumer).
    pub fn with_own_pool(&self) -> Pipeline {
        let mut other = self.clone();
        other.db = crate::db::pool(
            self.settings.database_config(),
            self.tls.clone(),
            pool_size(&self.settings),
        );
        other
    }
}

/// Reads the control-plane credentials from Secrets Manager when the settings
/// name a secret (`DATABASE_SECRET_ARN`) instead of a URL: once per cold start.
pub async fn resolve_database(
    settings: &mut Settings,
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<(), Error> {
    let DatabaseSource::Secret(arn) = &settings.database else {
        return Ok(());
    };
    let store = SecretsManagerStore::new(secrets.clone());
    let secret = store
        .get(arn)
        .await?
        .ok_or_else(|| format!("configuration: DATABASE_SECRET_ARN: secret {arn} not found"))?;
    let credentials = DatabaseCredentials::parse(&secret)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&credentials.host)
        .port(credentials.port)
        .user(&credentials.username)
        .password(credentials.password.expose_secret())
        .dbname(&credentials.dbname);
    settings.database = DatabaseSource::Config(Box::new(config));
    Ok(())
}

impl StageFunction {
    /// Reads the settings from the environment (failing fast) and builds the clients.
    pub async fn from_env(role: Role) -> Result<StageFunction, Error> {
        let settings = Settings::from_env()?;
        Ok(StageFunction::new(
            role,
            Pipeline::from_settings(settings).await?,
        ))
    }

    pub fn new(role: Role, pipeline: Pipeline) -> StageFunction {
        StageFunction { role, pipeline }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The Lambda handler.
    pub async fn handle(&self, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
        self.handle_event(&event.payload).await
    }

    pub async fn handle_event(&self, event: &SqsEvent) -> Result<SqsBatchResponse, Error> {
        let concurrency = self.pipeline.settings.batch_concurrency;
        Ok(process_batch(&event.records, concurrency, |m| self.handle_message(m)).await?)
    }

    async fn handle_message(&self, record: &SqsMessage) -> Disposition {
        let message_id = record.message_id.as_deref().unwrap_or("");
        let msg = match StageMessage::parse(record.body.as_deref().unwrap_or("")) {
            Ok(msg) => msg,
            Err(bad) => return self.handle_malformed(message_id, bad).await,
        };
        let span = tracing::info_span!(
            "stage",
            function = self.role.name(),
            stage = %msg.stage,
            project_id = %msg.project_id,
            run_id = %msg.run_id,
            correlation_id = %msg.correlation_id,
            message_id,
        );
        async {
            let result = match self.role {
                Role::Stage(stage) if stage != msg.stage => {
                    let why = format!("stage: message for {} arrived on the {stage} queue", msg.stage);
                    self.pipeline.fail_current_run(msg.project_id, stage, &why).await
                }
                Role::Stage(_) => self.pipeline.run_stage(&msg).await,
                Role::DeadLetter => self.pipeline.dead_letter(&msg, receive_count(record)).await,
            };
            match result {
                Ok(outcome) => {
                    log_outcome(&outcome);
                    Disposition::Acknowledge
                }
                Err(error) => {
                    tracing::warn!(%error, receive_count = receive_count(record), "stage failed, will retry");
                    Disposition::Retry
                }
            }
        }
        .instrument(span)
        .await
    }

    /// A body that is not a stage message cannot succeed later: acknowledge it,
    /// failing the named project's current run when the body still names one.
    async fn handle_malformed(
        &self,
        message_id: &str,
        bad: crate::domain::MalformedMessage,
    ) -> Disposition {
        let span = tracing::info_span!(
            "stage",
            function = self.role.name(),
            message_id,
            project_id = tracing::field::Empty
        );
        async {
            let (Role::Stage(stage), Some(project_id)) = (self.role, bad.project_id) else {
                tracing::error!(error = %bad, "malformed message acknowledged without effect");
                return Disposition::Acknowledge;
            };
            tracing::Span::current().record("project_id", tracing::field::display(project_id));
            match self
                .pipeline
                .fail_current_run(project_id, stage, &bad.to_string())
                .await
            {
                Ok(outcome) => {
                    tracing::error!(error = %bad, ?outcome, "malformed message failed the project");
                    Disposition::Acknowledge
                }
                Err(error) => {
                    tracing::warn!(%error, "could not record the malformed message, will retry");
                    Disposition::Retry
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn receive_count(record: &SqsMessage) -> Option<u32> {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
}

fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Completed { attempt, next } => {
            tracing::info!(attempt, next = next.map(|s| s.as_str()), "stage completed")
        }
        Outcome::Resent { next } => tracing::info!(
            next = next.as_str(),
            "stage already done, next stage message re-sent"
        ),
        Outcome::Ignored(reason) => tracing::info!(reason, "message ignored"),
        Outcome::Failed(error) => tracing::error!(%error, "project failed"),
    }
}
