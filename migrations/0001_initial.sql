-- The ledger's first schema. Append-only: a shipped migration is never edited.

-- One row per file version seen on disk (path + size + mtime). A file that changes is a new version.
CREATE TABLE files (
    id            INTEGER PRIMARY KEY,
    path          TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    part_size     INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'hashing', 'uploading', 'finishing', 'done', 'failed')),
    file_sha      TEXT,
    origin        TEXT,              -- the watch root that found it, NULL for `vodup upload`
    processing    TEXT    NOT NULL,  -- JSON of the signed processing options
    attempts      INTEGER NOT NULL DEFAULT 0,
    error_code    INTEGER,
    error_message TEXT,
    error_desc    TEXT,
    file_id       TEXT,
    url           TEXT,
    instant       INTEGER NOT NULL DEFAULT 0,
    disposed      INTEGER NOT NULL DEFAULT 0,   -- the after-upload action ran
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    UNIQUE (path, size, mtime_ns)
);
CREATE INDEX files_state ON files (state);
CREATE INDEX files_sha ON files (file_sha);

-- One row per content (fileSha): the upload as the service knows it.
CREATE TABLE uploads (
    file_sha          TEXT    PRIMARY KEY,
    size              INTEGER NOT NULL,
    part_size         INTEGER NOT NULL,
    signature         TEXT,
    signature_expires INTEGER
);

-- The MD5 of every part, computed once by the hashing pass.
CREATE TABLE part_hashes (
    file_sha  TEXT    NOT NULL,
    part_size INTEGER NOT NULL,
    offset    INTEGER NOT NULL,
    md5       TEXT    NOT NULL,
    PRIMARY KEY (file_sha, part_size, offset)
);

-- Parts the SERVICE confirmed (answered code 0, or listed in a resume answer). Never written before.
CREATE TABLE confirmed_parts (
    file_sha     TEXT    NOT NULL,
    offset       INTEGER NOT NULL,
    len          INTEGER NOT NULL,
    confirmed_at INTEGER NOT NULL,
    PRIMARY KEY (file_sha, offset)
);
