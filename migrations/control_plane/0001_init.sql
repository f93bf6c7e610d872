-- Control plane: projects, provisioning runs with one row per stage, tenant
-- resources, API key hashes, API idempotency keys and the audit log.
-- Applied by the migration runner inside one transaction under an advisory lock.

CREATE TABLE control_plane.regions (
    code        text PRIMARY KEY,
    available   boolean NOT NULL DEFAULT true
);

INSERT INTO control_plane.regions (code) VALUES
    ('us-east-1'), ('us-west-2'), ('eu-west-1'), ('ap-southeast-1');

CREATE TABLE control_plane.projects (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    region              text NOT NULL,
    owner_id            uuid,
    organization_id     uuid,
    services            jsonb NOT NULL,
    api_key_count       integer NOT NULL CHECK (api_key_count >= 0),
    api_key_prefix      text NOT NULL,
    status              text NOT NULL CHECK (status IN
                            ('requested', 'provisioning', 'ready', 'failed', 'suspended', 'deleted')),
    current_run_id      uuid,
    current_stage       text,
    failed_stage        text,
    last_error          text,
    provisioning_ms     bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    ready_at            timestamptz
);

CREATE INDEX projects_status_idx ON control_plane.projects (status, created_at);

-- One run per attempt to provision a project (the first, then one per operator retry).
CREATE TABLE control_plane.provisioning_runs (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES control_plane.projects (id),
    run_number      integer NOT NULL,
    status          text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    start_stage     text NOT NULL,
    correlation_id  uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (project_id, run_number)
);

CREATE INDEX provisioning_runs_status_idx ON control_plane.provisioning_runs (status, created_at, id);

-- One row per (run, stage): the state every attempt is recorded in.
CREATE TABLE control_plane.provisioning_stages (
    run_id          uuid NOT NULL REFERENCES control_plane.provisioning_runs (id),
    stage           text NOT NULL,
    position        integer NOT NULL,
    status          text NOT NULL CHECK (status IN
                        ('pending', 'running', 'retrying', 'succeeded', 'failed', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    started_at      timestamptz,
    finished_at     timestamptz,
    duration_ms     bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, stage),
    UNIQUE (run_id, position)
);

CREATE TABLE control_plane.project_services (
    project_id      uuid NOT NULL REFERENCES control_plane.projects (id),
    service         text NOT NULL CHECK (service IN ('auth', 'realtime', 'storage')),
    status          text NOT NULL CHECK (status IN ('active', 'disabled', 'error')),
    external_id     text,
    endpoint        text,
    registered_remotely boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, service)
);

-- Hashes only: the plaintext of a key lives in Secrets Manager.
CREATE TABLE control_plane.api_keys (
    id              text PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES control_plane.projects (id),
    key_prefix      text NOT NULL,
    key_hash        text NOT NULL,
    scopes          text[] NOT NULL,
    secret_name     text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    last_used_at    timestamptz
);

CREATE INDEX api_keys_active_idx ON control_plane.api_keys (project_id) WHERE revoked_at IS NULL;

CREATE TABLE control_plane.project_resources (
    project_id      uuid NOT NULL REFERENCES control_plane.projects (id),
    resource_type   text NOT NULL CHECK (resource_type IN
                        ('database', 'database_role', 'schema', 'service', 'secret')),
    resource_id     text NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, resource_type, resource_id)
);

-- Idempotency-Key header of the control-plane API.
CREATE TABLE control_plane.idempotency_keys (
    key             text PRIMARY KEY,
    request_hash    text NOT NULL,
    status          text NOT NULL CHECK (status IN ('in_progress', 'completed')),
    response_status integer,
    response_body   jsonb,
    project_id      uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);

CREATE TABLE control_plane.audit_log (
    id              bigserial PRIMARY KEY,
    project_id      uuid,
    run_id          uuid,
    action          text NOT NULL,
    actor           text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_project_idx ON control_plane.audit_log (project_id, created_at);

-- Tenant roles must not even connect to the control-plane database.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
REVOKE ALL ON SCHEMA control_plane FROM PUBLIC;
