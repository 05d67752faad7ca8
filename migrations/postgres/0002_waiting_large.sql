-- Files of several parts still to upload, oldest first. A claim for files of one part (the room a
-- small file leaves in a place) takes none queued after the first of these that waits, so a small
-- file never overtakes a larger one; this index keeps that check off the rows of small files.
CREATE INDEX files_waiting_large ON files (id) WHERE watch IS NOT NULL
    AND state IN ('queued', 'hashing', 'uploading', 'finishing') AND size > part_size;
