-- Who did what: an Idempotency-Key belongs to its caller (the IAM principal of
-- the request), so two callers using the same key never collide. Keys stored
-- before callers were recorded belong to the caller ''.
ALTER TABLE control_plane.idempotency_keys
    ADD COLUMN caller text NOT NULL DEFAULT '',
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD PRIMARY KEY (caller, key);

-- Paging through a project's audit entries, newest first.
CREATE INDEX audit_log_project_id_idx ON control_plane.audit_log (project_id, id);
