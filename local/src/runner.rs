//! The local event-source runner: plays Lambda's SQS trigger. For each stage
//! queue (and each dead-letter queue) it receives a batch, calls the function's
//! handler in-process with an `SqsEvent`, and deletes exactly the messages not
//! reported in `batchItemFailures`; the rest wait out the visibility timeout and
//! the redrive policy, as they would on AWS.

use crate::queues::name_prefix;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use provisioning::sweeper::Sweeper;
use provisioning::{Pipeline, Role, Stage, StageFunction};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One queue and the function its messages go to.
#[derive(Clone)]
pub struct Consumer {
    pub queue_name: String,
    pub queue_url: String,
    pub function: StageFunction,
}

/// How a poll treats the messages after the handler returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Like Lambda: delete what the handler did not report as failed.
    Normal,
    /// Simulates a crash after the handler's side effects and before the
    /// acknowledgement: nothing is deleted.
    CrashBeforeDelete,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollReport {
    pub received: usize,
    pub failed: usize,
    pub deleted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("sqs: {0}")]
    Sqs(String),
    #[error("handler: {0}")]
    Handler(String),
}

#[derive(Clone)]
pub struct Runner {
    sqs: aws_sdk_sqs::Client,
    consumers: Vec<Consumer>,
    /// The scheduled sweeper, run every `sweep_every` while the runner runs
    /// (EventBridge Scheduler's part; moto's does not fire schedules).
    sweeper: Sweeper,
    pub sweep_every: Duration,
    /// Long-poll wait per receive (seconds).
    pub wait_seconds: i32,
    /// Messages per batch (Lambda's BatchSize).
    pub batch_size: i32,
    region: String,
}

impl Runner {
    /// A consumer for every stage queue and every stage's DLQ. Like separate
    /// Lambda functions, each consumer has its own connection pool (a pool sized
    /// for one function instance, shared by twelve, runs dry under load).
    pub fn new(sqs: aws_sdk_sqs::Client, pipeline: Pipeline) -> Runner {
        let url_prefix = pipeline.settings.queue_url_prefix.clone();
        let mut consumers = Vec::new();
        for stage in Stage::ALL {
            consumers.push(Consumer {
                queue_name: stage.queue_name().to_owned(),
                queue_url: format!("{url_prefix}{}", stage.queue_name()),
                function: StageFunction::new(Role::Stage(stage), pipeline.with_own_pool()),
            });
        }
        for stage in Stage::ALL {
            consumers.push(Consumer {
                queue_name: stage.dead_letter_queue_name(),
                queue_url: format!("{url_prefix}{}", stage.dead_letter_queue_name()),
                function: StageFunction::new(Role::DeadLetter, pipeline.with_own_pool()),
            });
        }
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        Runner {
            sqs,
            consumers,
            sweeper: Sweeper::new(pipeline.with_own_pool()),
            sweep_every: Duration::from_secs(1),
            wait_seconds: 1,
            batch_size: 10,
            region,
        }
    }

    pub fn sweeper(&self) -> &Sweeper {
        &self.sweeper
    }

    pub fn consumers(&self) -> &[Consumer] {
        &self.consumers
    }

    fn consumer(&self, queue_name: &str) -> &Consumer {
        self.consumers
            .iter()
            .find(|c| c.queue_name == queue_name)
            .unwrap_or_else(|| panic!("no consumer for queue {queue_name}"))
    }

    /// Receives one batch from a queue, hands it to the function and acknowledges.
    pub async fn poll_once(
        &self,
        queue_name: &str,
        delivery: Delivery,
    ) -> Result<PollReport, RunnerError> {
        self.poll(self.consumer(queue_name), delivery).await
    }

    async fn poll(
        &self,
        consumer: &Consumer,
        delivery: Delivery,
    ) -> Result<PollReport, RunnerError> {
        let messages = self.receive(consumer).await?;
        self.handle_messages(consumer, &messages, delivery).await
    }

    /// One receive (a long poll) from the consumer's queue.
    async fn receive(
        &self,
        consumer: &Consumer,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, RunnerError> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&consumer.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| {
                RunnerError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(received.messages.unwrap_or_default())
    }

    /// Hands messages already received from a queue to its function, as one
    /// batch, and acknowledges those that did not fail.
    pub async fn handle(
        &self,
        queue_name: &str,
        messages: &[aws_sdk_sqs::types::Message],
        delivery: Delivery,
    ) -> Result<PollReport, RunnerError> {
        self.handle_messages(self.consumer(queue_name), messages, delivery)
            .await
    }

    async fn handle_messages(
        &self,
        consumer: &Consumer,
        messages: &[aws_sdk_sqs::types::Message],
        delivery: Delivery,
    ) -> Result<PollReport, RunnerError> {
        if messages.is_empty() {
            return Ok(PollReport::default());
        }
        let event = self.to_event(consumer, messages);
        let response = consumer
            .function
            .handle_event(&event)
            .await
            .map_err(|e| RunnerError::Handler(e.to_string()))?;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let mut report = PollReport {
            received: messages.len(),
            failed: failed.len(),
            deleted: 0,
        };
        if delivery == Delivery::CrashBeforeDelete {
            return Ok(report);
        }
        let entries: Vec<_> = messages
            .iter()
            .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        if !entries.is_empty() {
            report.deleted = entries.len();
            self.sqs
                .delete_message_batch()
                .queue_url(&consumer.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    RunnerError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                })?;
        }
        Ok(report)
    }

    fn to_event(&self, consumer: &Consumer, messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
        let queue = consumer.queue_url.rsplit('/').next().unwrap_or_default();
        let account = consumer
            .queue_url
            .rsplit('/')
            .nth(1)
            .unwrap_or("000000000000");
        let arn = format!("arn:aws:sqs:{}:{account}:{queue}", self.region);
        let records = messages
            .iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id().map(str::to_owned);
                record.receipt_handle = m.receipt_handle().map(str::to_owned);
                record.body = m.body().map(str::to_owned);
                record.md5_of_body = m.md5_of_body().map(str::to_owned);
                record.attributes = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                record.event_source = Some("aws:sqs".into());
                record.event_source_arn = Some(arn.clone());
                record.aws_region = Some(self.region.clone());
                record
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        event
    }

    /// Polls every queue with `workers` concurrent pollers each until `stop`
    /// flips to true. A batch already received is handled to the end, as
    /// Lambda finishes an invocation, unless `kill` flips too: then it is
    /// abandoned where it stands, as a killed process would.
    pub async fn run(
        &self,
        workers: usize,
        mut stop: watch::Receiver<bool>,
        kill: watch::Receiver<bool>,
    ) {
        let mut tasks = Vec::new();
        for consumer in &self.consumers {
            for worker in 0..workers.max(1) {
                let runner = self.clone();
                let mut consumer = consumer.clone();
                if worker > 0 {
                    // Another concurrent invocation: another instance, another pool.
                    let pipeline = consumer.function.pipeline().with_own_pool();
                    consumer.function = StageFunction::new(consumer.function.role(), pipeline);
                }
                let queue = consumer.queue_name.clone();
                let mut stop = stop.clone();
                let mut kill = kill.clone();
                tasks.push(tokio::spawn(async move {
                    while !*stop.borrow() {
                        let received = tokio::select! {
                            received = runner.receive(&consumer) => received,
                            _ = stop.changed() => continue,
                        };
                        let result = match received {
                            Ok(messages) => tokio::select! {
                                handled = runner.handle_messages(&consumer, &messages, Delivery::Normal) => handled,
                                _ = kill.wait_for(|k| *k) => break,
                            },
                            Err(e) => Err(e),
                        };
                        if let Err(e) = result {
                            tracing::warn!(queue, error = %e, "poll failed");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }));
            }
        }
        let sweeper = self.sweeper.clone();
        let every = self.sweep_every;
        let mut sweep_stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !*sweep_stop.borrow() {
                if let Err(e) = sweeper.sweep().await {
                    tracing::warn!(error = %e, "sweep failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = sweep_stop.changed() => {}
                }
            }
        }));
        let _ = stop.wait_for(|s| *s).await;
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Starts `run` in the background; `stop` ends it once the batches in
    /// hand are handled, `kill` (or dropping it) at once.
    pub fn spawn(self: &Arc<Self>, workers: usize) -> RunningRunner {
        let (tx, rx) = watch::channel(false);
        let (kill, killed) = watch::channel(false);
        let runner = Arc::clone(self);
        let task = tokio::spawn(async move { runner.run(workers, rx, killed).await });
        RunningRunner {
            stop: tx,
            kill,
            task: Some(task),
        }
    }

    /// The queue-name prefix shared by this runner's queues.
    pub fn queue_name_prefix(&self) -> &str {
        name_prefix(&self.consumers[0].queue_url)
            .trim_end_matches(self.consumers[0].queue_name.as_str())
    }
}

/// A runner working in the background.
pub struct RunningRunner {
    stop: watch::Sender<bool>,
    kill: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningRunner {
    /// Stops receiving and waits for the batches in hand to be handled.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops at once: a batch in hand is abandoned mid-handler (its messages
    /// come back after their visibility timeout), as if the process died.
    pub async fn kill(self) {
        let _ = self.kill.send(true);
        self.stop().await;
    }
}

impl Drop for RunningRunner {
    fn drop(&mut self) {
        let _ = self.kill.send(true);
        let _ = self.stop.send(true);
    }
}
