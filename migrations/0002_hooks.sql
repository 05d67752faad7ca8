-- Completion hook deliveries, delivered at least once: written in the same transaction that marks
-- the file's after-upload action done, removed from the due list only once delivered.
CREATE TABLE hook_deliveries (
    id           INTEGER PRIMARY KEY,
    file_key     INTEGER NOT NULL REFERENCES files (id),
    event        TEXT    NOT NULL CHECK (event IN ('done', 'failed')),
    kind         TEXT    NOT NULL CHECK (kind IN ('command', 'webhook')),
    target       TEXT    NOT NULL,   -- JSON argv for a command, the URL for a webhook
    payload      TEXT    NOT NULL,   -- the JSON document sent
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,   -- Unix seconds of the next try
    last_error   TEXT,
    delivered_at INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX hook_deliveries_due ON hook_deliveries (delivered_at, next_at);
