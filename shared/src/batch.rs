//! SQS batch glue: runs a per-message handler over a batch and reports exactly
//! the messages to retry as `batchItemFailures` (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use std::future::Future;

/// What to do with one message after handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: done, ignored, or failed permanently (already recorded).
    Acknowledge,
    /// Leave it for the visibility timeout and the redrive policy.
    Retry,
}

/// A retry was asked for a message that has no id. Lambda would treat an empty
/// item identifier as a failure of the whole batch, so say that honestly.
#[derive(Debug, thiserror::Error)]
#[error("a message without a message id needs a retry: failing the whole batch")]
pub struct UnidentifiedFailure;

/// Handles up to `concurrency` messages at a time and builds the batch response.
pub async fn process_batch<'a, F, Fut>(
    records: &'a [SqsMessage],
    concurrency: usize,
    handle: F,
) -> Result<SqsBatchResponse, UnidentifiedFailure>
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: Future<Output = Disposition> + Send + 'a,
{
    // The futures are built up front (not by a closure inside the stream), so
    // the batch future stays Send for any caller, e.g. a spawned task.
    let pending: Vec<BoxFuture<'a, (Option<&'a str>, Disposition)>> = records
        .iter()
        .map(|record| -> BoxFuture<'a, (Option<&'a str>, Disposition)> {
            let fut = handle(record);
            Box::pin(async move { (record.message_id.as_deref(), fut.await) })
        })
        .collect();
    let results: Vec<_> = stream::iter(pending)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (id, disposition) in results {
        if disposition == Disposition::Retry {
            match id {
                Some(id) if !id.is_empty() => {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id.to_owned();
                    response.batch_item_failures.push(failure);
                }
                _ => return Err(UnidentifiedFailure),
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: Option<&str>, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = id.map(str::to_owned);
        m.body = Some(body.to_owned());
        m
    }

    #[tokio::test]
    async fn only_messages_to_retry_are_reported_in_order() {
        let batch = vec![
            message(Some("a"), "ok"),
            message(Some("b"), "retry"),
            message(Some("c"), "ok"),
            message(Some("d"), "retry"),
        ];
        let response = process_batch(&batch, 2, |m| async move {
            if m.body.as_deref() == Some("retry") {
                Disposition::Retry
            } else {
                Disposition::Acknowledge
            }
        })
        .await
        .unwrap();
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["b", "d"]);
    }

    #[tokio::test]
    async fn a_retry_without_message_id_fails_the_batch_instead_of_reporting_an_empty_id() {
        let batch = vec![message(None, "retry"), message(Some(""), "ok")];
        let result = process_batch(&batch, 1, |m| async move {
            if m.body.as_deref() == Some("retry") {
                Disposition::Retry
            } else {
                Disposition::Acknowledge
            }
        })
        .await;
        assert!(result.is_err());
        let fine = process_batch(&batch[1..], 1, |_| async { Disposition::Acknowledge })
            .await
            .unwrap();
        assert!(fine.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn every_message_is_handled_once() {
        let batch: Vec<_> = (0..10)
            .map(|i| message(Some(&i.to_string()), "ok"))
            .collect();
        let seen = std::sync::Mutex::new(Vec::new());
        process_batch(&batch, 3, |m| {
            seen.lock().unwrap().push(m.message_id.clone().unwrap());
            async { Disposition::Acknowledge }
        })
        .await
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(seen, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
