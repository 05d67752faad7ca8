-- The process that runs each node name (`host:pid:random`, drawn at its start), or NULL once it
-- stopped cleanly: a second process started under a name that is alive is refused instead of
-- releasing the first one's claims. Append-only: a shipped migration is never edited.
ALTER TABLE nodes ADD COLUMN instance TEXT;
-- The accounts its config has, one per line, as of its last start (`vodup nodes`).
ALTER TABLE nodes ADD COLUMN accounts TEXT;
