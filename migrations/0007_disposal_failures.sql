-- An after-upload action that failed (a move the file system refused, say): why, how many times
-- in a row, and when it is tried again (Unix seconds); the claim skips the row until then. Cleared
-- when the action succeeds or the file is queued again. Append-only: a shipped migration is never
-- edited.
ALTER TABLE files ADD COLUMN disposal_error TEXT;
ALTER TABLE files ADD COLUMN disposal_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN disposal_retry_at INTEGER;
-- The watch folders a node refused at its last start or reload, one line each ("PATH: why");
-- NULL when it refused none.
ALTER TABLE nodes ADD COLUMN refused TEXT;
