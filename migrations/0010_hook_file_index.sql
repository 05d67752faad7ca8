-- A file's hook deliveries found by its key: forgetting a file removes its delivered hooks, and
-- the foreign key's check of a deleted file reads this index instead of every delivery.
-- Append-only: a shipped migration is never edited.
CREATE INDEX hook_deliveries_file ON hook_deliveries (file_key);
