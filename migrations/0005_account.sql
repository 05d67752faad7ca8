-- Accounts: one host may upload for several apps. Append-only: a shipped migration is never edited.
--
-- * `files.account`: the name of the account (credentials) a file goes to, set when it is
--   queued; NULL on older rows, which the engine gives the account of their watch (or the
--   top-level one) and records when it uploads them.
-- * `uploads` (signatures) and `confirmed_parts` are kept per account and content: the same
--   content uploaded for two apps is two uploads, each signed with its own account and holding
--   its own parts at its own service. Their rows are rebuilt empty: a signature is made again,
--   and the confirmed parts come back from the service's own list at the next init (the service
--   is the truth), so nothing is lost. `part_hashes` describe the content alone and stay shared.
ALTER TABLE files ADD COLUMN account TEXT;

DROP TABLE uploads;
CREATE TABLE uploads (
    account           TEXT    NOT NULL,
    file_sha          TEXT    NOT NULL,
    size              INTEGER NOT NULL,
    part_size         INTEGER NOT NULL,
    signature         TEXT,
    signature_expires INTEGER,
    PRIMARY KEY (account, file_sha)
);

DROP TABLE confirmed_parts;
-- Parts the SERVICE confirmed (answered code 0, or listed in a resume answer). Never written before.
CREATE TABLE confirmed_parts (
    account      TEXT    NOT NULL,
    file_sha     TEXT    NOT NULL,
    offset       INTEGER NOT NULL,
    len          INTEGER NOT NULL,
    confirmed_at INTEGER NOT NULL,
    PRIMARY KEY (account, file_sha, offset)
);
