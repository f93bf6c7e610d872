//! Benchmark building blocks: the raw floor (same executor and SQL, no queues,
//! no Secrets Manager), timing decorators for the ports, and series helpers.

use async_trait::async_trait;
use provisioning::adapters::http::HttpRegistrar;
use provisioning::adapters::memory::{MemorySecrets, NoEvents, NoQueue};
use provisioning::domain::{NewProject, Stage, StageMessage};
use provisioning::ports::{
    MessageQueue, Registration, RegistrationRequest, SecretStore, ServiceRegistrar,
};
use provisioning::project::create_project;
use provisioning::{Outcome, Pipeline, StageError};
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Total time spent in a port's calls (nanoseconds) and their number.
#[derive(Default)]
pub struct PortTime {
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl PortTime {
    fn add(&self, started: Instant) {
        self.nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.nanos.store(0, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
    }
}

/// Times every call through a queue port.
pub struct TimedQueue(pub Arc<dyn MessageQueue>, pub Arc<PortTime>);

#[async_trait]
impl MessageQueue for TimedQueue {
    async fn send(&self, message: &StageMessage, group: &str) -> Result<(), StageError> {
        let started = Instant::now();
        let result = self.0.send(message, group).await;
        self.1.add(started);
        result
    }
}

/// Times every call through a secret store port.
pub struct TimedSecrets(pub Arc<dyn SecretStore>, pub Arc<PortTime>);

#[async_trait]
impl SecretStore for TimedSecrets {
    async fn get(&self, name: &str) -> Result<Option<SecretString>, StageError> {
        let started = Instant::now();
        let result = self.0.get(name).await;
        self.1.add(started);
        result
    }

    async fn create(
        &self,
        name: &str,
        token: Uuid,
        value: &SecretString,
    ) -> Result<bool, StageError> {
        let started = Instant::now();
        let result = self.0.create(name, token, value).await;
        self.1.add(started);
        result
    }

    async fn put(&self, name: &str, token: Uuid, value: &SecretString) -> Result<(), StageError> {
        let started = Instant::now();
        let result = self.0.put(name, token, value).await;
        self.1.add(started);
        result
    }

    async fn delete(&self, name: &str, recovery_days: u32) -> Result<(), StageError> {
        let started = Instant::now();
        let result = self.0.delete(name, recovery_days).await;
        self.1.add(started);
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        let started = Instant::now();
        let result = self.0.list(prefix).await;
        self.1.add(started);
        result
    }
}

/// Times every call through a registrar port.
pub struct TimedRegistrar(pub Arc<dyn ServiceRegistrar>, pub Arc<PortTime>);

#[async_trait]
impl ServiceRegistrar for TimedRegistrar {
    fn is_configured(&self, service: provisioning::domain::Service) -> bool {
        self.0.is_configured(service)
    }

    async fn register(&self, request: &RegistrationRequest) -> Result<Registration, StageError> {
        let started = Instant::now();
        let result = self.0.register(request).await;
        self.1.add(started);
        result
    }

    async fn set_enabled(
        &self,
        service: provisioning::domain::Service,
        project_id: Uuid,
        enabled: bool,
        correlation_id: Uuid,
    ) -> Result<(), StageError> {
        let started = Instant::now();
        let result = self
            .0
            .set_enabled(service, project_id, enabled, correlation_id)
            .await;
        self.1.add(started);
        result
    }

    async fn deregister(
        &self,
        service: provisioning::domain::Service,
        project_id: Uuid,
        correlation_id: Uuid,
    ) -> Result<(), StageError> {
        let started = Instant::now();
        let result = self.0.deregister(service, project_id, correlation_id).await;
        self.1.add(started);
        result
    }
}

/// The floor: the pipeline's own executor and stage logic, every stage run
/// inline one after the other, with no queue, secrets kept in memory and no
/// service registration calls.
pub fn floor_pipeline(real: &Pipeline) -> Pipeline {
    let mut floor = real.clone();
    floor.queue = Arc::new(NoQueue);
    floor.events = Arc::new(NoEvents);
    floor.secrets = Arc::new(MemorySecrets::default());
    floor.registrar = Arc::new(HttpRegistrar::new(HashMap::new(), Duration::from_secs(1)));
    floor
}

/// A registration endpoint on localhost that accepts every project at once
/// (200 with an id and an endpoint), so the pipeline's registration stage
/// makes its real HTTP calls. Returns the base URL.
pub async fn registration_stub() -> std::io::Result<String> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let n = served.fetch_add(1, Ordering::Relaxed);
                        async move {
                            let _ = request.into_body().collect().await;
                            let body = format!(
                                r#"{{"id":"reg-{n}","endpoint":"http://stub.invalid/{n}"}}"#
                            );
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("static response parts"),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(format!("http://{address}"))
}

/// Provisions one project on the floor; returns its wall time.
pub async fn floor_project(floor: &Pipeline, request: &NewProject) -> Result<Duration, String> {
    let started = Instant::now();
    let created = create_project(&floor.db, floor.destinations(), request, None)
        .await
        .map_err(|e| e.to_string())?;
    let first = StageMessage {
        project_id: created.project_id,
        run_id: created.run_id,
        stage: Stage::Validate,
        correlation_id: created.correlation_id,
    };
    for stage in Stage::PROVISION {
        match floor.run_stage(&first.for_stage(stage)).await {
            Ok(Outcome::Completed { .. }) => {}
            other => return Err(format!("floor {stage}: {other:?}")),
        }
    }
    Ok(started.elapsed())
}

/// Percentile (0..=100) of durations, nearest rank.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 95.0), Duration::from_millis(95));
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 95.0),
            Duration::from_millis(7)
        );
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
