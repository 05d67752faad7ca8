-- File identity and lossless paths. Append-only: a shipped migration is never edited.
--
-- * `path` and `origin` become BLOBs: the bytes of the name as the file system has them, so a
--   name that is not UTF-8 is stored and found again exactly (older rows keep their UTF-8 text).
-- * `dev` and `ino`: the inode the file was settled as; the engine hashes and reads only that
--   inode, and the after-upload action touches the path only while it still names it.
-- * New states: `waiting` (an empty file, shown instead of silently ignored), `superseded` (the
--   file changed after it settled: its newer version is a row of its own), `gone` (the path no
--   longer names the file that settled: moved or deleted before it was uploaded, or swapped for
--   something that is not a regular file).
-- * `intent` and `intent_target`: the after-upload action, committed durably before it runs, so
--   recovery after a power cut can tell "moved by us" from "vanished".
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt (foreign keys are off
-- while migrations run).
CREATE TABLE files_v4 (
    id            INTEGER PRIMARY KEY,
    path          BLOB    NOT NULL,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    dev           INTEGER,
    ino           INTEGER,
    part_size     INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'hashing', 'uploading', 'finishing',
                                                    'done', 'failed', 'waiting', 'superseded', 'gone')),
    file_sha      TEXT,
    origin        BLOB,
    processing    TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error_code    INTEGER,
    error_message TEXT,
    error_desc    TEXT,
    file_id       TEXT,
    url           TEXT,
    instant       INTEGER NOT NULL DEFAULT 0,
    disposed      INTEGER NOT NULL DEFAULT 0,
    disposal      TEXT,
    intent        TEXT CHECK (intent IN ('keep', 'delete', 'move')),
    intent_target BLOB,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    UNIQUE (path, size, mtime_ns)
);
INSERT INTO files_v4 (id, path, size, mtime_ns, part_size, state, file_sha, origin, processing,
                      attempts, error_code, error_message, error_desc, file_id, url, instant,
                      disposed, disposal, created_at, updated_at, finished_at)
    SELECT id, CAST(path AS BLOB), size, mtime_ns, part_size, state, file_sha, CAST(origin AS BLOB),
           processing, attempts, error_code, error_message, error_desc, file_id, url, instant,
           disposed, disposal, created_at, updated_at, finished_at
    FROM files;
DROP TABLE files;
ALTER TABLE files_v4 RENAME TO files;
CREATE INDEX files_state ON files (state);
CREATE INDEX files_sha ON files (file_sha);
CREATE INDEX files_path ON files (path);
CREATE INDEX files_inode ON files (dev, ino);

-- A delivery written with the disposal intent is held until the action ran.
ALTER TABLE hook_deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
