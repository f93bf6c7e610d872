//! The pipeline: everything a stage, the API and the sweeper need, built once
//! per cold start from the settings, with the real adapters (Postgres pool,
//! SQS, EventBridge, Secrets Manager, HTTP registrar).

use crate::adapters::{
    aws_config, eventbridge::EventBridgeBus, http::HttpRegistrar,
    secrets_manager::SecretsManagerStore, sqs::SqsQueue,
};
use crate::cluster::AdminPools;
use crate::config::{DatabaseSource, Settings};
use crate::domain::Service;
use crate::error::StageError;
use crate::journal::Journal;
use crate::outbox::Destinations;
use crate::ports::{
    EventBus, MessageQueue, Registration, RegistrationRequest, SecretStore, ServiceRegistrar,
};
use crate::secrets::DatabaseCredentials;
use deadpool_postgres::Pool;
use secrecy::ExposeSecret;
use std::sync::Arc;
use uuid::Uuid;

pub type Error = lambda_runtime::Error;

/// Everything a stage needs, built once per cold start.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: Arc<Settings>,
    /// TLS of the control-plane connections.
    pub tls: crate::tls::MakeRustlsConnect,
    pub db: Pool,
    pub queue: Arc<dyn MessageQueue>,
    /// The lifecycle events' bus.
    pub events: Arc<dyn EventBus>,
    pub secrets: Arc<dyn SecretStore>,
    pub registrar: Arc<dyn ServiceRegistrar>,
    /// Attempts this instance could not write when they happened.
    pub journal: Arc<Journal>,
    /// Admin pools of the tenant clusters, one per cluster, made on first use.
    pub clusters: Arc<AdminPools>,
}

impl Pipeline {
    /// Builds the real adapters: the Postgres pool, SQS, EventBridge, Secrets
    /// Manager and the HTTP registrar. Clients are cheap to build and connect
    /// lazily.
    pub async fn from_settings(settings: Settings) -> Result<Pipeline, Error> {
        Pipeline::build(settings, |s| {
            Arc::new(HttpRegistrar::new(
                s.registration_urls.clone(),
                s.registration_timeout,
            ))
        })
        .await
    }

    /// The same, for a function that never calls the platform's services
    /// (the API, the sweeper, the reconciler): with no HTTP registrar, the
    /// HTTP client stays out of its binary.
    pub async fn without_service_calls(settings: Settings) -> Result<Pipeline, Error> {
        Pipeline::build(settings, |_| Arc::new(NoServiceCalls)).await
    }

    async fn build(
        mut settings: Settings,
        registrar: impl FnOnce(&Settings) -> Arc<dyn ServiceRegistrar>,
    ) -> Result<Pipeline, Error> {
        let bus_name = settings
            .event_bus_name
            .clone()
            .ok_or("configuration: EVENT_BUS_NAME: not set (the bus the lifecycle events go to)")?;
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
        let secrets: Arc<dyn SecretStore> = Arc::new(SecretsManagerStore::new(secrets_client));
        let registrar = registrar(&settings);
        let clusters = admin_pools(&settings, &secrets);
        Ok(Pipeline {
            settings: Arc::new(settings),
            tls,
            db,
            queue: Arc::new(queue),
            events: Arc::new(EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(&aws),
                bus_name,
            )),
            secrets,
            registrar,
            journal: Default::default(),
            clusters,
        })
    }
}

/// The registrar of a function that calls no platform service. Asked anyway
/// (a wiring mistake), it refuses for good rather than pretend.
struct NoServiceCalls;

#[async_trait::async_trait]
impl ServiceRegistrar for NoServiceCalls {
    fn is_configured(&self, _service: Service) -> bool {
        false
    }

    async fn register(&self, request: &RegistrationRequest) -> Result<Registration, StageError> {
        Err(refused(request.service))
    }

    async fn set_enabled(
        &self,
        service: Service,
        _project_id: Uuid,
        _enabled: bool,
        _correlation_id: Uuid,
    ) -> Result<(), StageError> {
        Err(refused(service))
    }

    async fn deregister(
        &self,
        service: Service,
        _project_id: Uuid,
        _correlation_id: Uuid,
    ) -> Result<(), StageError> {
        Err(refused(service))
    }
}

fn refused(service: Service) -> StageError {
    StageError::permanent(format!(
        "this function calls no platform service ({service} asked)"
    ))
}

/// One message holds one connection at a time (the project's lock is taken on
/// the connection that does the work), so a function instance needs one per
/// message handled at once.
pub fn pool_size(settings: &Settings) -> usize {
    settings.db_pool_size.max(settings.batch_concurrency)
}

/// The tenant clusters' admin pools, sized like the control-plane pool.
pub fn admin_pools(settings: &Settings, secrets: &Arc<dyn SecretStore>) -> Arc<AdminPools> {
    Arc::new(AdminPools::new(
        secrets.clone(),
        settings.tls_root_cert.clone(),
        pool_size(settings),
    ))
}

impl Pipeline {
    /// Where this pipeline's committed outbox rows go.
    pub fn destinations(&self) -> Destinations<'_> {
        Destinations {
            queue: &*self.queue,
            events: &*self.events,
        }
    }

    /// The same pipeline with a pool (and a journal) of its own, as another
    /// function instance would have (the local runner gives one to every queue
    /// consumer).
    pub fn with_own_pool(&self) -> Pipeline {
        let mut other = self.clone();
        other.journal = Default::default();
        other.clusters = admin_pools(&self.settings, &self.secrets);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_function_without_service_calls_refuses_them_for_good() {
        let registrar = NoServiceCalls;
        assert!(!registrar.is_configured(Service::Auth));
        let project_id = Uuid::new_v4();
        let err = registrar
            .deregister(Service::Storage, project_id, Uuid::new_v4())
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("storage"), "{err}");
        let err = registrar
            .set_enabled(Service::Realtime, project_id, true, Uuid::new_v4())
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }
}
