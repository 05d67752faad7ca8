-- Claims: which node holds a file, until when, and at which epoch. Append-only: a shipped
-- migration is never edited.
--
-- * `node`: the node that holds (or last held) the file; `lease_until`: when its claim lapses
--   unless renewed (Unix seconds), NULL once released; `epoch`: raised by every claim, and every
--   write for a file under way checks it, so a node whose claim was taken over writes nothing.
-- * `nodes`: each node that took files, when it started and when it last renewed its claims.
-- SQLite serves one host, so its node is always this host; the columns keep one shape for both
-- ledgers.
ALTER TABLE files ADD COLUMN node TEXT;
ALTER TABLE files ADD COLUMN lease_until INTEGER;
ALTER TABLE files ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
CREATE INDEX files_node ON files (node, lease_until);

CREATE TABLE nodes (
    name       TEXT    PRIMARY KEY,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);

-- The rows a node may claim, oldest first, without walking the done ones (the same predicate as
-- the claim's query, so SQLite uses this index for it).
CREATE INDEX files_owed ON files (id) WHERE origin IS NOT NULL
    AND (state IN ('queued', 'hashing', 'uploading', 'finishing')
         OR (state IN ('done', 'failed') AND disposed = 0));
