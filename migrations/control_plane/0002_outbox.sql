-- The hand-off contract: a state change and the message it starts commit
-- together. A change writes an outbox row in its own transaction; after the
-- commit the writer sends it and marks it sent; the sweeper re-sends rows left
-- unsent and re-kicks runs that stopped moving.

CREATE TABLE control_plane.outbox (
    id              bigserial PRIMARY KEY,
    project_id      uuid NOT NULL,
    run_id          uuid,
    -- where the payload goes: 'stage' (the stage queue named in the payload)
    destination     text NOT NULL CHECK (destination IN ('stage')),
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    send_attempts   integer NOT NULL DEFAULT 0,
    last_error      text
);

CREATE INDEX outbox_unsent_idx ON control_plane.outbox (created_at) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_idx ON control_plane.outbox (sent_at) WHERE sent_at IS NOT NULL;

-- When the sweeper last re-sent the current stage's message of a run.
ALTER TABLE control_plane.provisioning_runs
    ADD COLUMN kicked_at timestamptz,
    ADD COLUMN kicks integer NOT NULL DEFAULT 0;

-- Runs still moving, for the sweeper's and the admin view's stall scan.
CREATE INDEX provisioning_runs_running_idx ON control_plane.provisioning_runs (created_at)
    WHERE status = 'running';

ALTER TABLE control_plane.projects
    DROP CONSTRAINT projects_status_check,
    ADD CONSTRAINT projects_status_check CHECK (status IN
        ('requested', 'provisioning', 'ready', 'failed', 'suspended', 'deleted', 'purged'));

-- A key is bound to its project in the transaction that stores the project;
-- a stored key always names one.
DELETE FROM control_plane.idempotency_keys WHERE status = 'in_progress';
