//! Creates every stage queue with its dead-letter queue, redrive policy and
//! visibility timeout: the same names and settings template.yaml declares.

use aws_sdk_sqs::types::QueueAttributeName;
use provisioning::Stage;
use std::collections::HashMap;

/// Redrive and visibility settings (DESIGN: 3 receives, 300 s; tests use seconds).
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub visibility_timeout_secs: u32,
    pub max_receive_count: u32,
}

/// The queue-name prefix of the local stack, `ResourcePrefix` + "-" as in template.yaml.
pub const LOCAL_QUEUE_NAME_PREFIX: &str = "provisioning-";

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_timeout_secs: 300,
            max_receive_count: 3,
        }
    }
}

impl QueueSettings {
    /// From `VISIBILITY_TIMEOUT` and `MAX_RECEIVE_COUNT`, defaulting to 300 s and 3.
    pub fn from_env() -> Result<QueueSettings, String> {
        let read = |var: &str, default: u32| match std::env::var(var) {
            Ok(v) if !v.is_empty() => v
                .parse()
                .map_err(|_| format!("{var}: '{v}' is not a whole number")),
            _ => Ok(default),
        };
        let defaults = QueueSettings::default();
        Ok(QueueSettings {
            visibility_timeout_secs: read("VISIBILITY_TIMEOUT", defaults.visibility_timeout_secs)?,
            max_receive_count: read("MAX_RECEIVE_COUNT", defaults.max_receive_count)?,
        })
    }
}

/// The queue-name prefix is the last path segment of the queue URL prefix.
pub fn name_prefix(queue_url_prefix: &str) -> &str {
    queue_url_prefix
        .rsplit('/')
        .next()
        .unwrap_or(queue_url_prefix)
}

/// A queue's ARN, from its URL.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, aws_sdk_sqs::Error> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    Ok(attributes
        .attributes()
        .and_then(|a: &HashMap<QueueAttributeName, String>| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_default())
}

/// Creates (or finds) every stage queue and DLQ. Idempotent.
pub async fn create_queues(
    sqs: &aws_sdk_sqs::Client,
    queue_url_prefix: &str,
    settings: QueueSettings,
) -> Result<(), aws_sdk_sqs::Error> {
    let prefix = name_prefix(queue_url_prefix);
    for stage in Stage::ALL {
        let dlq = sqs
            .create_queue()
            .queue_name(format!("{prefix}{}", stage.dead_letter_queue_name()))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            // As in template.yaml: an event source needs visibility >= the function timeout.
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                settings.visibility_timeout_secs.to_string(),
            )
            .send()
            .await?;
        let dlq_arn = queue_arn(sqs, dlq.queue_url().unwrap_or_default()).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": settings.max_receive_count.to_string(),
        });
        sqs.create_queue()
            .queue_name(format!("{prefix}{}", stage.queue_name()))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                settings.visibility_timeout_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await?;
    }
    Ok(())
}
