-- Tenant schema, applied by create-schema as the tenant's own role inside its
-- database. The runner has created "app" and app.schema_migrations already.

CREATE TABLE app.settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.audit_logs (
    id          bigserial PRIMARY KEY,
    actor       text,
    action      text NOT NULL,
    target      text,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_logs_created_at_idx ON app.audit_logs (created_at);
CREATE INDEX audit_logs_action_idx ON app.audit_logs (action, created_at);

-- Objects the tenant creates are its own; nobody else may create in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
