-- The whole lifecycle: every operation on a project (provision, suspend,
-- resume, delete, restore, purge) is a run with stage rows. A deleted project
-- stays recoverable until `purge_after`; a purge removes every tenant object
-- and keeps the project row, its runs and the audit log.

ALTER TABLE control_plane.provisioning_runs
    ADD COLUMN kind text NOT NULL DEFAULT 'provision'
        CHECK (kind IN ('provision', 'suspend', 'resume', 'delete', 'restore', 'purge')),
    DROP CONSTRAINT provisioning_runs_status_check,
    ADD CONSTRAINT provisioning_runs_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled'));

CREATE INDEX provisioning_runs_kind_idx ON control_plane.provisioning_runs (kind, created_at, id);

ALTER TABLE control_plane.projects
    -- The status a deleted project had, which a restore brings back.
    ADD COLUMN deleted_from text,
    ADD COLUMN deleted_at timestamptz,
    -- When the sweeper purges a deleted project (the end of its recovery window).
    ADD COLUMN purge_after timestamptz,
    ADD COLUMN purged_at timestamptz;

CREATE INDEX projects_purge_due_idx ON control_plane.projects (purge_after) WHERE status = 'deleted';

-- A suspended project's keys stop verifying without being revoked; resume clears it.
ALTER TABLE control_plane.api_keys ADD COLUMN suspended_at timestamptz;

-- The reconciler: what it found last (one report per pass), and the orphans
-- it has seen, with when it first saw each, for the grace period before an
-- orphan whose project is purged or never existed is purged automatically.
CREATE TABLE control_plane.reconciliation_reports (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    report      jsonb NOT NULL
);

CREATE TABLE control_plane.orphans (
    kind        text NOT NULL CHECK (kind IN ('database', 'role', 'secret')),
    -- The cluster a database or role is on; '' for a secret.
    cluster_id  text NOT NULL,
    name        text NOT NULL,
    project_id  uuid NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('purged', 'never existed', 'wrong cluster')),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, cluster_id, name)
);
