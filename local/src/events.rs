//! The local event tap: an EventBridge bus on moto with one rule that sends
//! every event of ours to an SQS queue, so the demo and the tests can read
//! back what the functions published (moto routes `PutEvents` through a rule
//! to an SQS target, with the EventBridge envelope as the message body).

use aws_sdk_eventbridge::error::ProvideErrorMetadata;
use aws_sdk_eventbridge::types::Target;
use provisioning::events::{Event, SOURCE};
use std::time::Duration;

/// The tap queue's name: `{queue name prefix}events-tap`.
pub fn tap_queue_name(queue_url_prefix: &str) -> String {
    format!("{}events-tap", crate::queues::name_prefix(queue_url_prefix))
}

/// Creates (or finds) the bus. Idempotent.
pub async fn create_bus(aws: &aws_config::SdkConfig, bus_name: &str) -> Result<(), String> {
    let events = aws_sdk_eventbridge::Client::new(aws);
    match events.create_event_bus().name(bus_name).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
        Err(e) => Err(format!("creating event bus {bus_name}: {e:?}")),
    }
}

/// The queue a rule on the bus copies every event of ours to.
#[derive(Clone, Debug)]
pub struct EventTap {
    sqs: aws_sdk_sqs::Client,
    pub url: String,
}

/// Creates (or finds) the bus, the tap queue and the rule between them.
/// Idempotent. (The benchmark's buses have no tap: what EventBridge does
/// after `PutEvents` is not the pipeline's work.)
pub async fn create_event_tap(
    aws: &aws_config::SdkConfig,
    bus_name: &str,
    queue_url_prefix: &str,
) -> Result<EventTap, String> {
    let events = aws_sdk_eventbridge::Client::new(aws);
    let sqs = aws_sdk_sqs::Client::new(aws);
    create_bus(aws, bus_name).await?;
    let queue = sqs
        .create_queue()
        .queue_name(tap_queue_name(queue_url_prefix))
        .send()
        .await
        .map_err(|e| format!("creating the event tap queue: {e:?}"))?;
    let url = queue.queue_url().unwrap_or_default().to_owned();
    let arn = crate::queues::queue_arn(&sqs, &url)
        .await
        .map_err(|e| format!("reading the tap queue's ARN: {e:?}"))?;
    events
        .put_rule()
        .name("tap")
        .event_bus_name(bus_name)
        .event_pattern(serde_json::json!({ "source": [SOURCE] }).to_string())
        .send()
        .await
        .map_err(|e| format!("putting the tap rule: {e:?}"))?;
    events
        .put_targets()
        .rule("tap")
        .event_bus_name(bus_name)
        .targets(
            Target::builder()
                .id("tap-queue")
                .arn(arn)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| format!("putting the tap target: {e:?}"))?;
    Ok(EventTap { sqs, url })
}

/// One event read back from the tap: the EventBridge envelope's id, source,
/// detail type and detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub envelope_id: String,
    pub source: String,
    pub event: Event,
}

impl EventTap {
    /// Receives everything on the tap queue until it has been empty for `quiet`,
    /// deleting what it read; the raw bodies are returned too (for the no-secret
    /// check).
    pub async fn drain(&self, quiet: Duration) -> Result<(Vec<Delivered>, Vec<String>), String> {
        let (sqs, url) = (&self.sqs, self.url.as_str());
        let mut delivered = Vec::new();
        let mut bodies = Vec::new();
        let mut last_seen = std::time::Instant::now();
        while last_seen.elapsed() < quiet {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(|e| format!("reading the event tap: {e:?}"))?;
            let messages = out.messages();
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            last_seen = std::time::Instant::now();
            for m in messages {
                let body = m.body().unwrap_or_default().to_owned();
                let envelope: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|e| format!("tap message is not JSON: {e}"))?;
                let text = |k: &str| envelope[k].as_str().unwrap_or_default().to_owned();
                delivered.push(Delivered {
                    envelope_id: text("id"),
                    source: text("source"),
                    event: Event {
                        detail_type: text("detail-type"),
                        detail: envelope["detail"].clone(),
                    },
                });
                bodies.push(body);
                if let Some(handle) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(|e| format!("deleting a tap message: {e:?}"))?;
                }
            }
        }
        Ok((delivered, bodies))
    }
}
