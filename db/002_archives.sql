-- 002: background ZIP archives of public URLs (docs/archives.md) and the
-- webhook outbox that daemons/notifier delivers.
-- Applied once by scripts/media-stack (tracked in schema_migrations).

-- One archive job. nginx inserts it (queued); an archiver claims it
-- (in-progress, owner + lease) and finishes it (completed | failed).
CREATE TABLE archives (
    id            bigserial   PRIMARY KEY,
    hash          text        NOT NULL UNIQUE
                              CHECK (hash ~ '^[A-Za-z0-9_-]{43}$'),
    token_id      bigint      REFERENCES tokens (id),     -- the creator
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    status        text        NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'in-progress', 'completed',
                                    'failed')),
    on_error      text        NOT NULL DEFAULT 'skip'
                              CHECK (on_error IN ('skip', 'fail')),
    webhook_url   text        CHECK (length(webhook_url) BETWEEN 1 AND 2048),
    retention     integer     NOT NULL CHECK (retention > 0), -- seconds
    files_total   integer     NOT NULL CHECK (files_total BETWEEN 1 AND 1000),
    files_done    integer     NOT NULL DEFAULT 0,   -- finished: in the ZIP or failed
    files_failed  integer     NOT NULL DEFAULT 0,
    bytes_done    bigint      NOT NULL DEFAULT 0,   -- downloaded (files not failed)
    bytes_total   bigint      NOT NULL DEFAULT 0,   -- known sizes (files not failed)
    zip_pos       bigint      NOT NULL DEFAULT 0,   -- end of the last entry written
    zip_size      bigint,                           -- of the finished archive
    owner         text,                             -- archiver instance at work
    lease_until   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,                      -- completed or failed
    expires_at    timestamptz,                      -- completed_at + retention
    purged_at     timestamptz,                      -- file removed after expiry
    error         text
);

CREATE INDEX archives_work_idx ON archives (id)
    WHERE status IN ('queued', 'in-progress');
CREATE INDEX archives_expiry_idx ON archives (expires_at)
    WHERE status = 'completed' AND purged_at IS NULL;

-- One input URL of an archive. The zip_* columns are the entry's record
-- (lib/zip.h mm_zip_entry_t) once it is in the archive, so the central
-- directory can be rebuilt after a restart without re-reading the file;
-- zip_crc and zip_size hold the downloaded file's CRC-32 and size while it
-- waits ('downloaded') for its turn in the archive.
CREATE TABLE archive_files (
    archive_id      bigint      NOT NULL REFERENCES archives (id)
                                ON DELETE CASCADE,
    idx             integer     NOT NULL CHECK (idx BETWEEN 0 AND 999),
    url             text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    name            text,       -- entry name (final once 'done')
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'downloading', 'downloaded',
                                      'done', 'failed')),
    bytes_done      bigint      NOT NULL DEFAULT 0,
    bytes_total     bigint,     -- NULL while unknown
    etag            text,
    last_modified   text,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    error           text,
    zip_offset      bigint,     -- of the local header
    zip_crc         bigint,
    zip_size        bigint,
    zip_flags       integer,
    zip_mtime       bigint,     -- seconds since the epoch
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (archive_id, idx)
);

-- Webhook deliveries, queued in the transaction that decides the event
-- and delivered by daemons/notifier until a 2xx or for 24 h. A NULL
-- target_url is the operator's webhook (MEDIA_WEBHOOK_URL, notifier
-- config). subject names what the event is about ('archive:<hash>'), for
-- status pages. Generic: any producer inserts through webhook_enqueue().
CREATE TABLE webhook_outbox (
    id              bigserial   PRIMARY KEY,
    delivery_id     text        NOT NULL UNIQUE
                                DEFAULT gen_random_uuid()::text,
    event           text        NOT NULL CHECK (length(event) BETWEEN 1 AND 100),
    subject         text        NOT NULL,
    target_url      text        CHECK (length(target_url) BETWEEN 1 AND 2048),
    payload         text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    owner           text,       -- notifier instance delivering it
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    gave_up_at      timestamptz,
    last_status     integer,
    last_error      text
);

CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX webhook_outbox_subject_idx ON webhook_outbox (subject);


CREATE FUNCTION webhook_enqueue(p_event text, p_subject text, p_payload text,
                                p_target text)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO webhook_outbox (event, subject, payload, target_url)
    VALUES (p_event, p_subject, p_payload, p_target)
    RETURNING id
$$;


-- An archiver takes the oldest archive nobody works on: queued, or left
-- in progress by itself (a restart) or by an instance whose lease ran out.
CREATE FUNCTION archive_claim(p_owner text, p_active bigint[], p_lease integer)
RETURNS SETOF archives LANGUAGE sql AS $$
    UPDATE archives
       SET status = 'in-progress', owner = p_owner,
           lease_until = now() + make_interval(secs => p_lease),
           started_at = coalesce(started_at, now()), updated_at = now()
     WHERE id = (SELECT id FROM archives
                  WHERE status IN ('queued', 'in-progress')
                    AND (owner IS NULL OR owner = p_owner
                         OR lease_until < now())
                    AND id <> ALL (p_active)
                  ORDER BY id
                  LIMIT 1
                  FOR UPDATE SKIP LOCKED)
    RETURNING *
$$;


-- The archiver's state of some files (a JSON array of full rows), the
-- append position of the temporary ZIP (NULL: unchanged), the counters,
-- and a renewed lease. false when the archive is no longer this owner's.
CREATE FUNCTION archive_sync(p_archive bigint, p_owner text, p_files json,
                             p_zip_pos bigint, p_lease integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM archives
      WHERE id = p_archive AND owner = p_owner AND status = 'in-progress'
      FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    UPDATE archive_files f
       SET name = v.name, status = v.status, bytes_done = v.bytes_done,
           bytes_total = v.bytes_total, etag = v.etag,
           last_modified = v.last_modified, attempts = v.attempts,
           next_attempt_at = now() + v.retry_in_ms * interval '1 millisecond',
           error = v.error, zip_offset = v.zip_offset, zip_crc = v.zip_crc,
           zip_size = v.zip_size, zip_flags = v.zip_flags,
           zip_mtime = v.zip_mtime, updated_at = now()
      FROM json_to_recordset(p_files) AS v(idx integer, name text,
               status text, bytes_done bigint, bytes_total bigint, etag text,
               last_modified text, attempts integer, retry_in_ms bigint,
               error text, zip_offset bigint, zip_crc bigint, zip_size bigint,
               zip_flags integer, zip_mtime bigint)
     WHERE f.archive_id = p_archive AND f.idx = v.idx;

    UPDATE archives a
       SET zip_pos = coalesce(p_zip_pos, a.zip_pos),
           files_done = s.done, files_failed = s.failed,
           bytes_done = s.bytes_done, bytes_total = s.bytes_total,
           lease_until = now() + make_interval(secs => p_lease),
           updated_at = now()
      FROM (SELECT count(*) FILTER (WHERE status IN ('done', 'failed'))
                       AS done,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   coalesce(sum(bytes_done)
                            FILTER (WHERE status <> 'failed'), 0)
                       AS bytes_done,
                   coalesce(sum(coalesce(bytes_total, bytes_done))
                            FILTER (WHERE status <> 'failed'), 0)
                       AS bytes_total
              FROM archive_files WHERE archive_id = p_archive) s
     WHERE a.id = p_archive;

    RETURN true;
END
$$;


-- Completes or fails an archive and queues its webhooks in the same
-- transaction. p_url is the download URL. false when it was not this
-- owner's in-progress archive (already finished: nothing is queued twice).
CREATE FUNCTION archive_finish(p_archive bigint, p_owner text, p_status text,
                               p_error text, p_zip_size bigint, p_url text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    a        archives;
    payload  text;
BEGIN
    IF p_status NOT IN ('completed', 'failed') THEN
        RAISE EXCEPTION 'archive_finish: bad status %', p_status;
    END IF;

    UPDATE archives
       SET status = p_status, error = p_error, zip_size = p_zip_size,
           completed_at = now(),
           expires_at = CASE WHEN p_status = 'completed'
                             THEN now() + make_interval(secs => retention)
                        END,
           owner = NULL, lease_until = NULL, updated_at = now()
     WHERE id = p_archive AND owner = p_owner AND status = 'in-progress'
    RETURNING * INTO a;

    IF NOT FOUND THEN
        RETURN false;
    END IF;

    payload := json_build_object(
        'event', 'archive.' || p_status,
        'archive_hash', a.hash,
        'status', a.status,
        'url', CASE WHEN p_status = 'completed' THEN p_url END,
        'name', a.name,
        'size', a.zip_size,
        'files_total', a.files_total,
        'files_failed', a.files_failed,
        'error', a.error,
        'created_at', to_char(a.created_at AT TIME ZONE 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'completed_at', to_char(a.completed_at AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'expires_at', to_char(a.expires_at AT TIME ZONE 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS"Z"'))::text;

    PERFORM webhook_enqueue('archive.' || p_status, 'archive:' || a.hash,
                            payload, NULL);

    IF a.webhook_url IS NOT NULL THEN
        PERFORM webhook_enqueue('archive.' || p_status, 'archive:' || a.hash,
                                payload, a.webhook_url);
    END IF;

    RETURN true;
END
$$;
