-- The cluster registry: the Postgres clusters tenant databases are placed on.
-- A project is placed once, on the active cluster of its region with the most
-- free capacity (ties broken by id); `placed` counts the slots taken and is
-- raised in the statement that stores the choice on the project, so two
-- workers can never both take a cluster's last slot.

-- Every AWS commercial region is a known region; one is available to new
-- projects only while it has an active cluster (validate checks).
INSERT INTO control_plane.regions (code) VALUES
    ('us-east-2'), ('us-west-1'), ('ca-central-1'), ('ca-west-1'), ('mx-central-1'),
    ('sa-east-1'), ('eu-west-2'), ('eu-west-3'), ('eu-central-1'), ('eu-central-2'),
    ('eu-north-1'), ('eu-south-1'), ('eu-south-2'), ('il-central-1'), ('me-south-1'),
    ('me-central-1'), ('af-south-1'), ('ap-east-1'), ('ap-east-2'), ('ap-south-1'),
    ('ap-south-2'), ('ap-northeast-1'), ('ap-northeast-2'), ('ap-northeast-3'),
    ('ap-southeast-2'), ('ap-southeast-3'), ('ap-southeast-4'), ('ap-southeast-5'),
    ('ap-southeast-7')
ON CONFLICT (code) DO NOTHING;

CREATE TABLE control_plane.clusters (
    id                  text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    region              text NOT NULL REFERENCES control_plane.regions (code),
    host                text NOT NULL CHECK (host <> ''),
    port                integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    -- Secrets Manager secret with the cluster's admin credentials (RDS JSON).
    admin_secret_arn    text NOT NULL CHECK (admin_secret_arn <> ''),
    tls_mode            text NOT NULL CHECK (tls_mode IN ('disable', 'prefer', 'require', 'verify-full')),
    -- The most tenant databases it may hold. Lowering it below `placed` stops
    -- new placements and moves nothing.
    capacity            integer NOT NULL CHECK (capacity >= 0),
    placed              integer NOT NULL DEFAULT 0 CHECK (placed >= 0),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'offline')),
    -- When the credentials were last proven (connected, CREATEDB and CREATEROLE):
    -- a row exists only once they were.
    verified_at         timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX clusters_region_idx ON control_plane.clusters (region, status);

-- Where the project's database lives; set once, before any tenant object exists.
ALTER TABLE control_plane.projects
    ADD COLUMN cluster_id text REFERENCES control_plane.clusters (id);

CREATE INDEX projects_cluster_idx ON control_plane.projects (cluster_id);

-- SQS MessageGroupId of a stage message: the project's organization, or the
-- project when it has none (fair queues).
ALTER TABLE control_plane.outbox ADD COLUMN message_group text;
