use super::classify_sdk_error;
use crate::error::StageError;
use crate::events::{Event, SOURCE};
use crate::ports::EventBus;
use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

/// EventBridge takes at most ten entries per `PutEvents`.
const PUT_EVENTS_MAX: usize = 10;

/// Puts events on one EventBridge bus.
#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: aws_sdk_eventbridge::Client, bus_name: impl Into<String>) -> EventBridgeBus {
        EventBridgeBus {
            client,
            bus_name: bus_name.into(),
        }
    }

    async fn put(&self, events: &[Event]) -> Vec<Result<(), StageError>> {
        let entries = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(SOURCE)
                    .detail_type(&e.detail_type)
                    .detail(e.detail.to_string())
                    .build()
            })
            .collect();
        let out = match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let error = classify_sdk_error("putting events", e);
                return events
                    .iter()
                    .map(|_| Err(StageError::retryable(error.to_string())))
                    .collect();
            }
        };
        // One result entry per request entry, in order; a refused one has an
        // error code (throttling and internal failures can pass on a re-send).
        let results = out.entries();
        (0..events.len())
            .map(|i| match results.get(i).and_then(|r| r.error_code()) {
                None if i < results.len() => Ok(()),
                None => Err(StageError::retryable("putting events: no result entry")),
                Some(code) => Err(StageError::retryable(format!(
                    "putting events: {code}: {}",
                    results[i].error_message().unwrap_or("")
                ))),
            })
            .collect()
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[Event]) -> Vec<Result<(), StageError>> {
        let mut results = Vec::with_capacity(events.len());
        for chunk in events.chunks(PUT_EVENTS_MAX) {
            results.extend(self.put(chunk).await);
        }
        results
    }
}
