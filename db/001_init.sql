-- 001: tokens, episodes, analytics events, daemon heartbeats.
-- Applied once by scripts/media-stack (tracked in schema_migrations).

CREATE TABLE tokens (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role        text        NOT NULL CHECK (role IN ('admin', 'user', 'service')),
    hash        text        NOT NULL UNIQUE,          -- hex sha256 of the token
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE episodes (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 500),
    author      text        NOT NULL CHECK (length(author) BETWEEN 1 AND 500),
    mp3_url     text        NOT NULL CHECK (length(mp3_url) BETWEEN 1 AND 2048),
    private     boolean     NOT NULL DEFAULT false,
    created_by  bigint      REFERENCES tokens (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- one row per stream request; request_id makes replays idempotent
CREATE TABLE events (
    request_id  text        PRIMARY KEY,
    episode_id  bigint      NOT NULL,
    ts          timestamptz NOT NULL,
    status      integer     NOT NULL,
    bytes       bigint      NOT NULL DEFAULT 0,
    range       text,
    auth        text,
    cache       text,
    client      text,
    user_agent  text,
    referrer    text,
    source      text        NOT NULL DEFAULT 'nginx',
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_episode_idx ON events (episode_id);

-- each daemon updates its row every second; /healthz reads them
CREATE TABLE daemon_heartbeats (
    name        text        PRIMARY KEY,
    pid         integer     NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    info        text
);
