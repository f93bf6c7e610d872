-- Lifecycle events: every project status change, run start and end, stage
-- outcome and key issued or revoked becomes an outbox row (destination
-- 'event') in the transaction that makes the change. The triggers below write
-- them, so no code path can change a status and forget its event; the writer
-- relays them to EventBridge after the commit and the sweeper re-sends what
-- stays unsent (docs/events.md lists the detail types and their schemas).
--
-- The actor is the transaction's `provisioning.actor` setting (the API sets
-- it to the caller's IAM principal, the sweeper and reconciler to their
-- names, `store::audit` does it); a change made by a stage function names the
-- stage.

ALTER TABLE control_plane.outbox
    DROP CONSTRAINT outbox_destination_check,
    ADD CONSTRAINT outbox_destination_check CHECK (destination IN ('stage', 'event'));

-- A writer relays its project's unsent events right after its commit.
CREATE INDEX outbox_unsent_events_idx ON control_plane.outbox (project_id, id)
    WHERE sent_at IS NULL AND destination = 'event';

-- Writes one event row. `stage` and `attempt` are those of the stage the event
-- is about (NULL for a project or key event); `extra` adds type-specific fields.
CREATE FUNCTION control_plane.emit_event(
    detail_type text, project uuid, run uuid, stage text, attempt integer,
    error text, extra jsonb DEFAULT '{}'
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p control_plane.projects%ROWTYPE;
    kind text;
BEGIN
    SELECT * INTO p FROM control_plane.projects WHERE id = project;
    SELECT r.kind INTO kind FROM control_plane.provisioning_runs r WHERE r.id = run;
    INSERT INTO control_plane.outbox (project_id, run_id, destination, payload)
    VALUES (project, run, 'event', jsonb_build_object(
        'detail_type', detail_type,
        'detail', jsonb_build_object(
            'event_id', gen_random_uuid(),
            'project_id', project,
            'organization_id', p.organization_id,
            'region', p.region,
            'cluster_id', p.cluster_id,
            'run_id', run,
            'kind', kind,
            'stage', stage,
            'status', p.status,
            'error', error,
            'actor', coalesce(nullif(current_setting('provisioning.actor', true), ''),
                              stage, p.current_stage),
            'attempt', attempt,
            'time', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        ) || extra));
END $$;

-- A run's failure: the stage that failed it first (a run can also be closed
-- with no stage failed: stuck, then retried), then `detail_type`.
CREATE FUNCTION control_plane.emit_run_failure(detail_type text, project uuid, run uuid, extra jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    failed record;
BEGIN
    SELECT s.stage, s.attempts, s.last_error INTO failed
      FROM control_plane.provisioning_stages s
     WHERE s.run_id = run AND s.status = 'failed'
     ORDER BY s.position LIMIT 1;
    IF failed.stage IS NOT NULL THEN
        PERFORM control_plane.emit_event('Stage Failed', project, run,
                                         failed.stage, failed.attempts, failed.last_error);
    END IF;
    PERFORM control_plane.emit_event(detail_type, project, run, failed.stage, failed.attempts,
                                     coalesce(failed.last_error, 'the run stopped without finishing'),
                                     extra);
END $$;

-- Projects: created, a new run started, or a status reached within a run.
CREATE FUNCTION control_plane.project_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- Its run is stored next, in the same transaction: the kind is known.
        PERFORM control_plane.emit_event('Project Requested', NEW.id, NEW.current_run_id, NULL, NULL, NULL,
                                         jsonb_build_object('kind', 'provision'));
    ELSIF NEW.current_run_id IS DISTINCT FROM OLD.current_run_id THEN
        PERFORM control_plane.emit_event('Operation Started', NEW.id, NEW.current_run_id, NULL, NULL, NULL,
                                         jsonb_build_object('previous_status', OLD.status));
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status = 'failed' THEN
            PERFORM control_plane.emit_run_failure('Project Failed', NEW.id, NEW.current_run_id,
                                                   jsonb_build_object('previous_status', OLD.status));
        ELSIF NEW.status IN ('provisioning', 'ready', 'purged') THEN
            PERFORM control_plane.emit_event('Project ' || initcap(NEW.status), NEW.id, NEW.current_run_id,
                                             NULL, NULL, NULL,
                                             jsonb_strip_nulls(jsonb_build_object(
                                                 'previous_status', OLD.status,
                                                 'provisioning_ms', CASE WHEN NEW.status = 'ready'
                                                                         THEN NEW.provisioning_ms END)));
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER project_events
    AFTER INSERT OR UPDATE OF status, current_run_id ON control_plane.projects
    FOR EACH ROW EXECUTE FUNCTION control_plane.project_events();

-- Runs of the lifecycle operations: the end of each (a provisioning run's end
-- is the project's `ready` or `failed`, and a purge's is `purged`).
CREATE FUNCTION control_plane.run_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    project_status text;
BEGIN
    IF NEW.kind IN ('provision', 'purge') OR OLD.status <> 'running' THEN
        RETURN NULL;
    END IF;
    SELECT status INTO project_status FROM control_plane.projects WHERE id = NEW.project_id;
    IF NEW.status = 'succeeded' AND project_status <> 'purged' THEN
        PERFORM control_plane.emit_event(
            CASE NEW.kind WHEN 'suspend' THEN 'Project Suspended' WHEN 'resume' THEN 'Project Resumed'
                          WHEN 'delete' THEN 'Project Deleted' ELSE 'Project Restored' END,
            NEW.project_id, NEW.id, NULL, NULL, NULL);
    ELSIF NEW.status = 'failed' THEN
        PERFORM control_plane.emit_run_failure('Operation Failed', NEW.project_id, NEW.id, '{}');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER run_events
    AFTER UPDATE OF status ON control_plane.provisioning_runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION control_plane.run_events();

-- Stage outcomes short of failure (a failure is told with its run's end, above).
CREATE FUNCTION control_plane.stage_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    project uuid;
BEGIN
    SELECT project_id INTO project FROM control_plane.provisioning_runs WHERE id = NEW.run_id;
    PERFORM control_plane.emit_event(
        CASE NEW.status WHEN 'succeeded' THEN 'Stage Succeeded' ELSE 'Stage Retrying' END,
        project, NEW.run_id, NEW.stage, NEW.attempts,
        CASE WHEN NEW.status = 'retrying' THEN NEW.last_error END,
        CASE WHEN NEW.status = 'succeeded' THEN jsonb_build_object('duration_ms', NEW.duration_ms)
             ELSE '{}' END);
    RETURN NULL;
END $$;

CREATE TRIGGER stage_events
    AFTER UPDATE OF status ON control_plane.provisioning_stages
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('succeeded', 'retrying'))
    EXECUTE FUNCTION control_plane.stage_events();

-- Keys: issued (a row stored) and revoked. The event names the key by its id
-- and prefix, never its secret part or hash.
CREATE FUNCTION control_plane.key_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    run uuid;
BEGIN
    SELECT current_run_id INTO run FROM control_plane.projects WHERE id = NEW.project_id;
    PERFORM control_plane.emit_event(
        CASE WHEN TG_OP = 'INSERT' THEN 'Api Key Issued' ELSE 'Api Key Revoked' END,
        NEW.project_id, run, NULL, NULL, NULL,
        jsonb_build_object('key_id', NEW.id, 'key_prefix', NEW.key_prefix, 'scopes', to_jsonb(NEW.scopes)));
    RETURN NULL;
END $$;

CREATE TRIGGER key_issued_events
    AFTER INSERT ON control_plane.api_keys
    FOR EACH ROW EXECUTE FUNCTION control_plane.key_events();

CREATE TRIGGER key_revoked_events
    AFTER UPDATE OF revoked_at ON control_plane.api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION control_plane.key_events();
