//! The vocabulary of the pipeline: stages, the message that chains them, and the
//! request that creates a project. Free of AWS and Postgres types.

use crate::status::ProjectStatus;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Every stage. Each owns one queue and one function; a run's stages are
/// those of its kind (`RunKind::stages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Validate,
    CreateDatabase,
    CreateSchema,
    RegisterServices,
    GenerateApiKeys,
    Finalize,
    /// Makes a project's access match its status: on when ready, off
    /// (role `NOLOGIN`, sessions ended, keys suspended, services disabled)
    /// when suspended or deleted. The one stage that alters tenant roles.
    Access,
    /// Removes everything a project created and marks it purged. The one
    /// stage that deletes secrets.
    Purge,
}

impl Stage {
    /// Every stage, in the order of their queues and functions.
    pub const ALL: [Stage; 8] = [
        Stage::Validate,
        Stage::CreateDatabase,
        Stage::CreateSchema,
        Stage::RegisterServices,
        Stage::GenerateApiKeys,
        Stage::Finalize,
        Stage::Access,
        Stage::Purge,
    ];

    /// The provisioning stages in pipeline order.
    pub const PROVISION: [Stage; 6] = [
        Stage::Validate,
        Stage::CreateDatabase,
        Stage::CreateSchema,
        Stage::RegisterServices,
        Stage::GenerateApiKeys,
        Stage::Finalize,
    ];

    /// The stable name used in messages, queue names, database rows and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::CreateDatabase => "create-database",
            Stage::CreateSchema => "create-schema",
            Stage::RegisterServices => "register-services",
            Stage::GenerateApiKeys => "generate-api-keys",
            Stage::Finalize => "finalize",
            Stage::Access => "access",
            Stage::Purge => "purge",
        }
    }

    /// The provisioning stage after this one (None after finalize and for the
    /// lifecycle stages, whose successor depends on their run).
    pub fn next(self) -> Option<Stage> {
        let i = Stage::PROVISION.iter().position(|s| *s == self)?;
        Stage::PROVISION.get(i + 1).copied()
    }

    /// Name of the stage's queue, appended to the deployment's queue prefix.
    pub fn queue_name(self) -> &'static str {
        self.as_str()
    }

    /// Name of the stage queue's dead-letter queue, appended to the queue prefix.
    pub fn dead_letter_queue_name(self) -> String {
        format!("{}-dlq", self.as_str())
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown stage '{0}'")]
pub struct UnknownStage(pub String);

/// What a run does to its project: each operation of the lifecycle is a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Provision,
    Suspend,
    Resume,
    Delete,
    Restore,
    Purge,
}

impl RunKind {
    pub const ALL: [RunKind; 6] = [
        RunKind::Provision,
        RunKind::Suspend,
        RunKind::Resume,
        RunKind::Delete,
        RunKind::Restore,
        RunKind::Purge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Provision => "provision",
            RunKind::Suspend => "suspend",
            RunKind::Resume => "resume",
            RunKind::Delete => "delete",
            RunKind::Restore => "restore",
            RunKind::Purge => "purge",
        }
    }

    /// The stages of a run of this kind, in order. A delete whose recovery
    /// window is 0 purges in the same run (`purge_at_once`).
    pub fn stages(self, purge_at_once: bool) -> &'static [Stage] {
        match self {
            RunKind::Provision => &Stage::PROVISION,
            RunKind::Suspend | RunKind::Resume | RunKind::Restore => &[Stage::Access],
            RunKind::Delete if purge_at_once => &[Stage::Access, Stage::Purge],
            RunKind::Delete => &[Stage::Access],
            RunKind::Purge => &[Stage::Purge],
        }
    }

    /// The project statuses in which a run of this kind may change the
    /// project: the status its start set (or, for provisioning, moves through).
    /// A message of a run whose project is in any other status changes nothing.
    pub fn acts_on(self, status: ProjectStatus) -> bool {
        use ProjectStatus::*;
        match self {
            RunKind::Provision => matches!(status, Requested | Provisioning),
            RunKind::Suspend => status == Suspended,
            RunKind::Resume => status == Ready,
            RunKind::Delete => status == Deleted,
            RunKind::Restore => matches!(status, Ready | Suspended),
            // A purged project may be purged again: the reconciler's way to
            // remove what a purge left behind.
            RunKind::Purge => matches!(status, Deleted | Purged),
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = UnknownRunKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownRunKind(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown run kind '{0}': must be one of provision, suspend, resume, delete, restore, purge"
)]
pub struct UnknownRunKind(pub String);

/// The body of every stage queue message: identifiers only, never config or secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageMessage {
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub stage: Stage,
    pub correlation_id: Uuid,
}

impl StageMessage {
    /// The message for the stage after this one in the same run.
    pub fn for_stage(&self, stage: Stage) -> StageMessage {
        StageMessage { stage, ..*self }
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a stage message always serialises")
    }

    /// Parses a queue message body; the error names the offending field.
    pub fn parse(body: &str) -> Result<StageMessage, MalformedMessage> {
        serde_json::from_str(body).map_err(|e| MalformedMessage {
            detail: e.to_string(),
            project_id: lenient_project_id(body),
        })
    }
}

/// The SQS message group of a project's stage messages: its organization, or
/// the project itself when it has none. On fair queues SQS keeps one group's
/// backlog from delaying the others' messages (`outbox::MESSAGE_GROUP_SQL` is
/// the same rule in SQL).
pub fn message_group(project_id: Uuid, organization_id: Option<Uuid>) -> String {
    organization_id.unwrap_or(project_id).to_string()
}

/// A body that is not a valid stage message. `project_id` is recovered when the
/// body still names one, for the log line: such a message is acknowledged and
/// changes nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed stage message: {detail}")]
pub struct MalformedMessage {
    pub detail: String,
    pub project_id: Option<Uuid>,
}

fn lenient_project_id(body: &str) -> Option<Uuid> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("project_id")?.as_str()?.parse().ok()
}

/// The platform services a project can be registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Auth,
    Realtime,
    Storage,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Auth, Service::Realtime, Service::Storage];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Realtime => "realtime",
            Service::Storage => "storage",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which services a project wants. Missing flags mean "enabled".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSelection {
    #[serde(default = "enabled")]
    pub auth: bool,
    #[serde(default = "enabled")]
    pub realtime: bool,
    #[serde(default = "enabled")]
    pub storage: bool,
}

fn enabled() -> bool {
    true
}

impl Default for ServiceSelection {
    fn default() -> Self {
        ServiceSelection {
            auth: true,
            realtime: true,
            storage: true,
        }
    }
}

impl ServiceSelection {
    pub const NONE: ServiceSelection = ServiceSelection {
        auth: false,
        realtime: false,
        storage: false,
    };

    pub fn enabled(&self) -> Vec<Service> {
        Service::ALL
            .into_iter()
            .filter(|s| self.is_enabled(*s))
            .collect()
    }

    pub fn is_enabled(&self, service: Service) -> bool {
        match service {
            Service::Auth => self.auth,
            Service::Realtime => self.realtime,
            Service::Storage => self.storage,
        }
    }
}

/// How many API keys to issue and with which prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    #[serde(default = "default_key_count")]
    pub count: i32,
    #[serde(default = "default_key_prefix")]
    pub prefix: String,
}

pub const DEFAULT_API_KEY_COUNT: i32 = 2;
pub const DEFAULT_API_KEY_PREFIX: &str = "pk";

fn default_key_count() -> i32 {
    DEFAULT_API_KEY_COUNT
}

fn default_key_prefix() -> String {
    DEFAULT_API_KEY_PREFIX.to_owned()
}

impl Default for ApiKeySpec {
    fn default() -> Self {
        ApiKeySpec {
            count: DEFAULT_API_KEY_COUNT,
            prefix: DEFAULT_API_KEY_PREFIX.to_owned(),
        }
    }
}

/// What an operator asks for when creating a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    pub region: String,
    #[serde(default)]
    pub owner_id: Option<Uuid>,
    #[serde(default)]
    pub organization_id: Option<Uuid>,
    #[serde(default)]
    pub services: ServiceSelection,
    #[serde(default)]
    pub api_keys: ApiKeySpec,
}

/// Per-project resource quotas (DESIGN: databases 1, api_keys 10, services 3).
pub mod quota {
    pub const DATABASES: i64 = 1;
    pub const API_KEYS: i64 = 10;
    pub const SERVICES: i64 = 3;
}

/// Names of a project's tenant objects, derived from its UUID only (never from
/// user input), well inside Postgres' 63-byte identifier limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNames {
    pub database: String,
    pub role: String,
}

impl TenantNames {
    /// The comment on a tenant database and role that says whose they are:
    /// the project and the deployment (its secret prefix, unique per stack),
    /// so that stacks sharing a cluster never touch each other's objects. The
    /// purge and the reconciler touch no object without it.
    pub fn ownership_marker(project_id: Uuid, deployment: &str) -> String {
        format!("provisioning project {project_id} of {deployment}")
    }

    /// The project an ownership comment of `deployment` names, if it is one.
    pub fn owner_in_marker(comment: &str, deployment: &str) -> Option<Uuid> {
        let (id, of) = comment
            .strip_prefix("provisioning project ")?
            .split_once(" of ")?;
        (of == deployment).then(|| id.parse().ok())?
    }

    pub fn for_project(project_id: Uuid) -> TenantNames {
        let hex = project_id.simple().to_string();
        TenantNames {
            database: format!("tenant_{hex}"),
            role: format!("tenant_{hex}_owner"),
        }
    }
}

/// The schema every tenant database gets.
pub const TENANT_SCHEMA: &str = "app";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_chain_in_design_order_and_end_at_finalize() {
        let mut chain = vec![Stage::Validate];
        while let Some(next) = chain.last().unwrap().next() {
            chain.push(next);
        }
        assert_eq!(chain, Stage::PROVISION.to_vec());
        assert_eq!(RunKind::Provision.stages(false), chain);
        assert_eq!(Stage::Finalize.next(), None);
        assert_eq!(Stage::Access.next(), None);
    }

    #[test]
    fn every_lifecycle_run_ends_at_its_stage_and_acts_on_its_own_status_only() {
        use ProjectStatus::*;
        assert_eq!(RunKind::Delete.stages(false), [Stage::Access]);
        assert_eq!(RunKind::Delete.stages(true), [Stage::Access, Stage::Purge]);
        assert_eq!(RunKind::Purge.stages(false), [Stage::Purge]);
        for kind in RunKind::ALL {
            assert_eq!(kind.as_str().parse::<RunKind>(), Ok(kind));
            // every stage of every run has a queue
            assert!(kind.stages(true).iter().all(|s| Stage::ALL.contains(s)));
        }
        assert!(RunKind::Suspend.acts_on(Suspended) && !RunKind::Suspend.acts_on(Ready));
        assert!(!RunKind::Resume.acts_on(Deleted));
        assert!(!RunKind::Provision.acts_on(Deleted));
        assert!(!RunKind::Delete.acts_on(Purged));
        assert!("remove".parse::<RunKind>().is_err());
    }

    #[test]
    fn stage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>().unwrap(), stage);
        }
        assert!("create_database".parse::<Stage>().is_err());
    }

    #[test]
    fn message_body_round_trips_and_rejects_unknown_fields() {
        let m = StageMessage {
            project_id: Uuid::new_v4(),
            run_id: Uuid::new_v4(),
            stage: Stage::CreateSchema,
            correlation_id: Uuid::new_v4(),
        };
        assert_eq!(StageMessage::parse(&m.to_body()).unwrap(), m);
        let extra = m.to_body().replace('}', ",\"password\":\"x\"}");
        let err = StageMessage::parse(&extra).unwrap_err();
        assert!(err.detail.contains("password"), "{}", err.detail);
        assert_eq!(err.project_id, Some(m.project_id));
    }

    #[test]
    fn malformed_body_without_project_names_no_project() {
        let err = StageMessage::parse("not json").unwrap_err();
        assert_eq!(err.project_id, None);
        let err = StageMessage::parse(r#"{"project_id":"nope"}"#).unwrap_err();
        assert_eq!(err.project_id, None);
    }

    #[test]
    fn an_ownership_marker_names_its_project_for_its_own_deployment_only() {
        let id = Uuid::new_v4();
        let marker = TenantNames::ownership_marker(id, "stack-a/projects");
        assert_eq!(
            TenantNames::owner_in_marker(&marker, "stack-a/projects"),
            Some(id)
        );
        assert_eq!(
            TenantNames::owner_in_marker(&marker, "stack-b/projects"),
            None
        );
        assert_eq!(
            TenantNames::owner_in_marker("a comment", "stack-a/projects"),
            None
        );
    }

    #[test]
    fn tenant_names_fit_postgres_identifiers_and_depend_only_on_the_id() {
        let id = Uuid::new_v4();
        let names = TenantNames::for_project(id);
        assert!(names.database.len() <= 63 && names.role.len() <= 63);
        assert_eq!(names, TenantNames::for_project(id));
        assert!(names
            .database
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
