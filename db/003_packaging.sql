-- 003: uploads and packaging jobs (issue: uploads + cbcs DASH/HLS).

CREATE TABLE input_content (
    id          bigserial PRIMARY KEY,
    owner       bigint      REFERENCES tokens (id),
    path        text        NOT NULL,                 -- under $MEDIA_VAR/uploads
    size        bigint      NOT NULL CHECK (size >= 0),
    sha256      text        NOT NULL,
    status      text        NOT NULL DEFAULT 'uploaded'
                CHECK (status IN ('uploaded', 'probing', 'ready', 'invalid')),
    probe       jsonb,                                -- codecs, duration, ...
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE packaged_content (
    id           bigserial PRIMARY KEY,
    input_id     bigint      NOT NULL REFERENCES input_content (id),
    owner        bigint      REFERENCES tokens (id),
    key_hex      text        NOT NULL CHECK (key_hex ~ '^[0-9a-f]{32}$'),
    kid_hex      text        NOT NULL CHECK (kid_hex ~ '^[0-9a-f]{32}$'),
    ladder       jsonb,                               -- optional renditions
    status       text        NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'done', 'failed')),
    progress     real        NOT NULL DEFAULT 0,
    error        text,
    attempts     integer     NOT NULL DEFAULT 0,
    claimed_by   text,                                -- packager host:pid
    heartbeat_at timestamptz,                         -- a stale one is reclaimed
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

CREATE INDEX packaged_content_queue_idx ON packaged_content (status, id)
    WHERE status IN ('queued', 'running');
