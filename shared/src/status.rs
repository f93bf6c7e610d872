//! Statuses of projects, runs and stages, and the one table of transitions
//! allowed between them (the lifecycle of the design contract; docs/handoff.md). Every status change in the
//! code names its target here and writes it with `WHERE status = ANY(sources)`,
//! so a change the table does not allow changes no row, whoever asks.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Text that is not a status of the kind asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status '{text}'")]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub text: String,
}

/// Declares a status enum with its stable names, `as_str`, `Display`,
/// a `FromStr` that refuses unknown text, and its transition table.
macro_rules! status_enum {
    (
        $(#[$meta:meta])* $name:ident, $kind:literal,
        { $($variant:ident => $text:literal),+ $(,)? },
        transitions: [$(($from:ident, $to:ident)),* $(,)?]
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every change of status this kind may make: (from, to).
            pub const TRANSITIONS: &'static [($name, $name)] = &[$(($name::$from, $name::$to)),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Whether the table allows `self -> to`.
            pub fn can_become(self, to: $name) -> bool {
                Self::TRANSITIONS.contains(&(self, to))
            }

            /// The statuses from which `self` may be reached, as text for SQL
            /// (`WHERE status = ANY($n)`).
            pub fn sources(self) -> Vec<&'static str> {
                Self::TRANSITIONS
                    .iter()
                    .filter(|(_, to)| *to == self)
                    .map(|(from, _)| from.as_str())
                    .collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus { kind: $kind, text: s.to_owned() }),
                }
            }
        }
    };
}

status_enum! {
    /// Where a project is in its life.
    ProjectStatus, "project",
    {
        Requested => "requested",
        Provisioning => "provisioning",
        Ready => "ready",
        Failed => "failed",
        Suspended => "suspended",
        Deleted => "deleted",
        Purged => "purged",
    },
    transitions: [
        (Requested, Provisioning),
        // validate refuses the project, or its first run is dead-lettered
        (Requested, Failed),
        (Provisioning, Ready),
        (Provisioning, Failed),
        // operator retry
        (Failed, Provisioning),
        (Ready, Suspended),
        (Suspended, Ready),
        (Ready, Deleted),
        (Suspended, Deleted),
        (Failed, Deleted),
        // deleted while being provisioned: the provisioning run is cancelled
        (Requested, Deleted),
        (Provisioning, Deleted),
        // restore within the recovery window
        (Deleted, Ready),
        (Deleted, Suspended),
        (Deleted, Purged),
    ]
}

status_enum! {
    /// A run: one attempt at an operation on a project.
    RunStatus, "run",
    {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        // superseded by a later operation (a delete during provisioning): its
        // messages change nothing any more
        Cancelled => "cancelled",
    },
    transitions: [(Running, Succeeded), (Running, Failed), (Running, Cancelled)]
}

status_enum! {
    /// One stage of a run.
    StageStatus, "stage",
    {
        Pending => "pending",
        Running => "running",
        Retrying => "retrying",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
    },
    transitions: [
        (Pending, Running),
        (Retrying, Running),
        // a redelivery of a running stage whose worker died
        (Running, Running),
        (Running, Retrying),
        // attempts that could not be recorded when they happened (database out of reach)
        (Pending, Retrying),
        (Running, Succeeded),
        (Retrying, Succeeded),
        (Running, Failed),
        (Retrying, Failed),
        // dead-lettered before any attempt could be recorded
        (Pending, Failed),
    ]
}

status_enum! {
    /// Whether a registered cluster takes new projects: `active` does,
    /// `draining` keeps serving the ones it has and takes none, `offline` is
    /// out of reach on purpose (its projects' stages retry until it is back).
    ClusterStatus, "cluster",
    {
        Active => "active",
        Draining => "draining",
        Offline => "offline",
    },
    transitions: [
        (Active, Draining),
        (Active, Offline),
        (Draining, Active),
        (Draining, Offline),
        (Offline, Active),
        (Offline, Draining),
    ]
}

impl ProjectStatus {
    /// Statuses in which provisioning runs may change the project.
    pub fn is_provisioning(self) -> bool {
        matches!(self, ProjectStatus::Requested | ProjectStatus::Provisioning)
    }
}

impl StageStatus {
    /// Done one way or the other: no message may change it any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StageStatus::Succeeded | StageStatus::Failed | StageStatus::Skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_unknown_text_is_refused() {
        for s in ProjectStatus::ALL {
            assert_eq!(s.as_str().parse::<ProjectStatus>(), Ok(*s));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        for s in StageStatus::ALL {
            assert_eq!(s.as_str().parse::<StageStatus>(), Ok(*s));
        }
        let err = "Skipped".parse::<StageStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown stage status 'Skipped'");
        assert!("".parse::<ProjectStatus>().is_err());
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn the_project_table_is_the_lifecycle_of_the_design() {
        use ProjectStatus::*;
        assert!(Requested.can_become(Provisioning));
        assert!(Provisioning.can_become(Ready));
        assert!(Failed.can_become(Provisioning));
        assert!(Deleted.can_become(Purged));
        // finished work is never failed by a provisioning message
        assert!(!Ready.can_become(Failed));
        assert!(!Purged.can_become(Ready));
        assert!(!Ready.can_become(Provisioning));
        assert!(Provisioning.can_become(Deleted));
        assert!(!Purged.can_become(Deleted));
        assert_eq!(Purged.sources(), ["deleted"]);
        assert_eq!(Failed.sources(), ["requested", "provisioning"]);
        assert_eq!(Ready.sources(), ["provisioning", "suspended", "deleted"]);
    }

    #[test]
    fn finished_stages_are_never_left() {
        for (from, _) in StageStatus::TRANSITIONS {
            assert!(!from.is_finished(), "{from} is finished but may change");
        }
        assert!(!StageStatus::Succeeded.can_become(StageStatus::Failed));
        assert!(!RunStatus::Succeeded.can_become(RunStatus::Failed));
    }
}
