//! The Lambda-facing side of a stage: builds the pipeline once per cold start and
//! turns an `SqsEvent` into an `SqsBatchResponse`.

use crate::batch::{process_batch, Disposition};
use crate::config::Settings;
use crate::domain::{Stage, StageMessage};
use crate::pipeline::Pipeline;
use crate::stages::Outcome;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
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
            Err(bad) => {
                // It cannot succeed later, and it owns nothing: acknowledged, logged.
                tracing::error!(
                    function = self.role.name(),
                    message_id,
                    project_id = bad.project_id.map(tracing::field::display),
                    error = %bad,
                    "malformed message acknowledged; nothing changed"
                );
                return Disposition::Acknowledge;
            }
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
            let receives = receive_count(record);
            let result = match self.role {
                Role::Stage(stage) if stage != msg.stage => {
                    tracing::warn!(
                        queue = stage.as_str(),
                        "message for another stage's queue acknowledged; nothing changed"
                    );
                    Ok(Outcome::Ignored("message on the wrong queue"))
                }
                Role::Stage(_) => self.pipeline.run_received(&msg, receives).await,
                Role::DeadLetter => self.pipeline.dead_letter(&msg, receives).await,
            };
            match result {
                Ok(outcome) => {
                    log_outcome(&outcome);
                    Disposition::Acknowledge
                }
                Err(error) => {
                    if error.database_unreachable {
                        // Written as soon as this instance reaches the database again.
                        let stage_receives = match self.role {
                            Role::Stage(_) => receives,
                            Role::DeadLetter => None,
                        };
                        self.pipeline.journal.note(&msg, &error, stage_receives);
                    }
                    tracing::warn!(%error, receive_count = receives, "stage failed, will retry");
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
