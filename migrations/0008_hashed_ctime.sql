-- The file's status change time (ctime, ns) when the hash was taken: a rewrite in place that puts
-- the mtime back moves only the ctime, so the stored hash is trusted again only while it holds.
-- NULL on rows hashed before it was recorded (their hash is taken again before it is relied on).
-- Append-only: a shipped migration is never edited.
ALTER TABLE files ADD COLUMN hashed_ctime_ns INTEGER;
