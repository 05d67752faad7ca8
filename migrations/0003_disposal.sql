-- What the after-upload action did to the source: 'kept', 'deleted', 'moved', 'copied' (moved
-- across filesystems, source left in place) or 'skipped' (the source was gone or had changed).
-- A failed file is retried when it reappears at its path only if it had been 'moved' away.
ALTER TABLE files ADD COLUMN disposal TEXT;
