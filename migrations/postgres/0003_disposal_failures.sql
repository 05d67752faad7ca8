-- The SQLite ledger's migration 0007: an after-upload action that failed (why, how many times in
-- a row, when it is tried again: the SERVER's clock, Unix seconds, as leases), and the watch
-- folders a node refused. Append-only: a shipped migration is never edited.
ALTER TABLE files ADD COLUMN disposal_error TEXT;
ALTER TABLE files ADD COLUMN disposal_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN disposal_retry_at BIGINT;
ALTER TABLE nodes ADD COLUMN refused TEXT;
