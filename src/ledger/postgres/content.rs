//! A content's side of the PostgreSQL ledger: its part hashes, its signature per account, and
//! the parts the service confirmed.

use super::*;
use tokio_postgres::types::ToSql;

impl Postgres {
    /// See [`crate::ledger::Ledger::record_hash`]: one statement.
    pub async fn record_hash(
        &self,
        claim: Claim,
        upload: &Upload,
        md5s: &[String],
        ctime_ns: Option<i64>,
    ) -> Result<Option<Signature>> {
        let sql = "WITH f AS (UPDATE files SET file_sha = $3, part_size = $4, updated_at = $5, \
                 hashed_ctime_ns = $6 WHERE id = $1 AND epoch = $2 RETURNING id), \
             hashes AS (INSERT INTO part_hashes (file_sha, part_size, \"offset\", md5) \
                 SELECT $3, $4, p.o, p.m FROM unnest($7::bigint[], $8::text[]) AS p(o, m) \
                 WHERE EXISTS (SELECT 1 FROM f) \
                 ON CONFLICT (file_sha, part_size, \"offset\") DO UPDATE SET md5 = excluded.md5) \
             SELECT f.id, u.signature, u.signature_expires FROM f LEFT JOIN uploads u \
                 ON u.account = $9 AND u.file_sha = $3 AND u.signature IS NOT NULL";
        let size = int(upload.part_size);
        let offsets: Vec<i64> = (0..md5s.len())
            .map(|i| int(i as u64 * upload.part_size))
            .collect();
        let params: [&(dyn ToSql + Sync); 9] = [
            &claim.key.0,
            &claim.epoch,
            &upload.sha,
            &size,
            &unix_now_i64(),
            &ctime_ns,
            &offsets,
            &md5s,
            &upload.account,
        ];
        let rows = self.fenced(claim, sql, &params).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let encoded: Option<String> = row.try_get("signature")?;
        let expires: Option<i64> = row.try_get("signature_expires")?;
        Ok(encoded.map(|encoded| Signature {
            encoded,
            expires_at: unsigned(expires.unwrap_or(0)),
        }))
    }

    /// The stored part MD5s of a content at a part size, in offset order, if a pass stored them.
    pub async fn part_md5s(
        &self,
        sha: &str,
        part_size: u64,
        parts: usize,
    ) -> Result<Option<Vec<String>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT md5 FROM part_hashes WHERE file_sha = $1 AND part_size = $2 \
                 ORDER BY \"offset\"",
            )
            .await?;
        let rows = client.query(&stmt, &[&sha, &int(part_size)]).await?;
        let md5s = rows
            .iter()
            .map(|r| r.try_get("md5"))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        Ok((md5s.len() == parts).then_some(md5s))
    }

    /// The signature of a content's upload to an account, if one was stored.
    pub async fn signature(&self, account: &str, sha: &str) -> Result<Option<Signature>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT signature, signature_expires FROM uploads \
                 WHERE account = $1 AND file_sha = $2 AND signature IS NOT NULL",
            )
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&account, &sha]).await? else {
            return Ok(None);
        };
        Ok(Some(Signature {
            encoded: row.try_get("signature")?,
            expires_at: unsigned(
                row.try_get::<_, Option<i64>>("signature_expires")?
                    .unwrap_or(0),
            ),
        }))
    }

    pub async fn store_signature(
        &self,
        claim: Claim,
        upload: &Upload,
        signature: &Signature,
    ) -> Result<()> {
        let sql = format!("WITH {FENCE}, {SIGNED} SELECT id FROM f");
        let signed = Signed::new(claim, upload, Some(signature));
        self.fenced(claim, &sql, &signed.params()).await.map(drop)
    }

    /// Offsets the account's service confirmed for a content.
    pub async fn confirmed(&self, account: &str, sha: &str) -> Result<BTreeSet<u64>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT \"offset\" FROM confirmed_parts WHERE account = $1 AND file_sha = $2",
            )
            .await?;
        let rows = client.query(&stmt, &[&account, &sha]).await?;
        rows.iter()
            .map(|r| Ok(unsigned(r.try_get("offset")?)))
            .collect()
    }

    /// Bytes of a content confirmed at or after `since` (Unix seconds): the recent upload speed.
    pub async fn confirmed_since(&self, account: &str, sha: &str, since: i64) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT COALESCE(SUM(len), 0)::bigint AS bytes FROM confirmed_parts \
                 WHERE account = $1 AND file_sha = $2 AND confirmed_at >= $3",
            )
            .await?;
        let row = client.query_one(&stmt, &[&account, &sha, &since]).await?;
        Ok(unsigned(row.try_get("bytes")?))
    }

    /// Record parts the account's service answered code 0 for. Call it only then. One
    /// statement, with the state `then` if given.
    pub async fn confirm_parts(
        &self,
        claim: Claim,
        upload: &Upload,
        parts: &[(u64, u64)],
        then: Option<FileState>,
    ) -> Result<()> {
        let sql = format!(
            "WITH {FENCE}, \
             state AS (UPDATE files SET state = $7, updated_at = $5 \
                 WHERE id = (SELECT id FROM f) AND $7::text IS NOT NULL), \
             parts AS (INSERT INTO confirmed_parts (account, file_sha, \"offset\", len, \
                 confirmed_at) SELECT $3, $4, p.o, p.l, $5 \
                 FROM unnest($6::bigint[], $8::bigint[]) AS p(o, l) \
                 WHERE EXISTS (SELECT 1 FROM f) ON CONFLICT DO NOTHING) \
             SELECT id FROM f"
        );
        let (offsets, lens): (Vec<i64>, Vec<i64>) =
            parts.iter().map(|&(o, l)| (int(o), int(l))).unzip();
        let state = then.map(FileState::as_str);
        let params: [&(dyn ToSql + Sync); 8] = [
            &claim.key.0,
            &claim.epoch,
            &upload.account,
            &upload.sha,
            &unix_now_i64(),
            &offsets,
            &state,
            &lens,
        ];
        self.fenced(claim, &sql, &params).await.map(drop)
    }

    /// Make the confirmed parts of a content exactly the ones the service listed: the service is
    /// the truth. Parts it lacks are forgotten (and will be re-sent); parts it holds are recorded.
    /// The file is `uploading` from here; the confirmed offsets. One statement: the parts not
    /// listed are deleted and the listed ones written, which are different rows.
    pub async fn reconcile(
        &self,
        claim: Claim,
        upload: &Upload,
        held: &[(u64, u64)],
        signature: Option<&Signature>,
    ) -> Result<BTreeSet<u64>> {
        let mut listed: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
        listed.extend(held.iter().copied());
        let (offsets, lens): (Vec<i64>, Vec<i64>) =
            listed.iter().map(|(&o, &l)| (int(o), int(l))).unzip();
        let sql = format!(
            "WITH {FENCE}, {SIGNED}, \
             uploading AS (UPDATE files SET state = 'uploading', updated_at = $9 \
                 WHERE id = (SELECT id FROM f)), \
             gone AS (DELETE FROM confirmed_parts WHERE account = $3 AND file_sha = $4 \
                 AND \"offset\" <> ALL($10) AND EXISTS (SELECT 1 FROM f)), \
             listed AS (INSERT INTO confirmed_parts (account, file_sha, \"offset\", len, \
                 confirmed_at) SELECT $3, $4, p.o, p.l, $9 \
                 FROM unnest($10::bigint[], $11::bigint[]) AS p(o, l) \
                 WHERE EXISTS (SELECT 1 FROM f) ON CONFLICT (account, file_sha, \"offset\") \
                 DO UPDATE SET len = excluded.len, confirmed_at = excluded.confirmed_at) \
             SELECT id FROM f"
        );
        let (signed, t) = (Signed::new(claim, upload, signature), unix_now_i64());
        let mut params = signed.params().to_vec();
        params.extend([&t as &(dyn ToSql + Sync), &offsets, &lens]);
        self.fenced(claim, &sql, &params).await?;
        Ok(listed.into_keys().collect())
    }
}

/// The fence of a write that locks the file's row (`$1` its key, `$2` the claim's epoch) and
/// joins the rest to it: see [`Postgres::fenced`].
const FENCE: &str = "f AS (SELECT id FROM files WHERE id = $1 AND epoch = $2 FOR UPDATE)";

/// Store the signature of the account's upload of a content (`$3`..`$8`: account, SHA-1, size,
/// part size, signature, expiry; none stored if the signature is NULL), creating the upload's
/// row, under [`FENCE`].
const SIGNED: &str = "signed AS (INSERT INTO uploads (account, file_sha, size, part_size, \
     signature, signature_expires) SELECT $3, $4, $5, $6, $7, $8 \
     WHERE $7::text IS NOT NULL AND EXISTS (SELECT 1 FROM f) \
     ON CONFLICT (account, file_sha) DO UPDATE SET signature = excluded.signature, \
     signature_expires = excluded.signature_expires)";

/// The values of [`FENCE`] and [`SIGNED`]'s parameters.
struct Signed<'a> {
    key: i64,
    epoch: i64,
    upload: &'a Upload,
    sizes: (i64, i64),
    encoded: Option<&'a str>,
    expires: Option<i64>,
}

impl<'a> Signed<'a> {
    fn new(claim: Claim, upload: &'a Upload, signature: Option<&'a Signature>) -> Signed<'a> {
        Signed {
            key: claim.key.0,
            epoch: claim.epoch,
            upload,
            sizes: (int(upload.size), int(upload.part_size)),
            encoded: signature.map(|s| s.encoded.as_str()),
            expires: signature.map(|s| int(s.expires_at)),
        }
    }

    /// `$1`..`$8`, in order.
    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.key,
            &self.epoch,
            &self.upload.account,
            &self.upload.sha,
            &self.sizes.0,
            &self.sizes.1,
            &self.encoded,
            &self.expires,
        ]
    }
}
