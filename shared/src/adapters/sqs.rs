use super::classify_sdk_error;
use crate::domain::StageMessage;
use crate::error::StageError;
use crate::ports::MessageQueue;
use async_trait::async_trait;

/// Sends stage messages to `{queue_url_prefix}{stage}`.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url_prefix: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url_prefix: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            queue_url_prefix: queue_url_prefix.into(),
        }
    }
}

#[async_trait]
impl MessageQueue for SqsQueue {
    async fn send(&self, message: &StageMessage, group: &str) -> Result<(), StageError> {
        let url = format!("{}{}", self.queue_url_prefix, message.stage.queue_name());
        self.client
            .send_message()
            .queue_url(url)
            .message_body(message.to_body())
            // Fair queues: a standard queue takes a group id to spread its
            // consumers' attention across groups (not FIFO ordering).
            .message_group_id(group)
            .send()
            .await
            .map_err(|e| classify_sdk_error(&format!("sending {} message", message.stage), e))?;
        Ok(())
    }
}
