//! A content's side of the PostgreSQL ledger: its part hashes, its signature per account, and
//! the parts the service confirmed.

use super::*;

impl Postgres {
    /// Store the hashing pass: the file's SHA-1 and part size, and the MD5 of every part.
    pub async fn record_hash(
        &self,
        claim: Claim,
        sha: &str,
        part_size: u64,
        md5s: &[String],
        ctime_ns: Option<i64>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        let update = tx
            .prepare_cached(
                "UPDATE files SET file_sha = $2, part_size = $3, updated_at = $4, \
                 hashed_ctime_ns = $5 WHERE id = $1",
            )
            .await?;
        let size = int(part_size);
        let now = unix_now_i64();
        tx.execute(&update, &[&claim.key.0, &sha, &size, &now, &ctime_ns])
            .await?;
        let offsets: Vec<i64> = (0..md5s.len()).map(|i| int(i as u64 * part_size)).collect();
        let insert = tx
            .prepare_cached(
                "INSERT INTO part_hashes (file_sha, part_size, \"offset\", md5) \
                 SELECT $1, $2, p.o, p.m FROM unnest($3::bigint[], $4::text[]) AS p(o, m) \
                 ON CONFLICT (file_sha, part_size, \"offset\") DO UPDATE SET md5 = excluded.md5",
            )
            .await?;
        tx.execute(&insert, &[&sha, &size, &offsets, &md5s]).await?;
        tx.commit().await?;
        Ok(())
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
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        upsert_signature(&tx, upload, signature).await?;
        tx.commit().await?;
        Ok(())
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

    /// Record parts the account's service answered code 0 for. Call it only then.
    pub async fn confirm_parts(
        &self,
        claim: Claim,
        upload: &Upload,
        parts: &[(u64, u64)],
        then: Option<FileState>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        insert_confirmed(&tx, upload, parts).await?;
        if let Some(state) = then {
            let update = tx
                .prepare_cached("UPDATE files SET state = $2, updated_at = $3 WHERE id = $1")
                .await?;
            tx.execute(&update, &[&claim.key.0, &state.as_str(), &unix_now_i64()])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Make the confirmed parts of a content exactly the ones the service listed: the service is
    /// the truth. Parts it lacks are forgotten (and will be re-sent); parts it holds are recorded.
    /// The file is `uploading` from here; the confirmed offsets.
    pub async fn reconcile(
        &self,
        claim: Claim,
        upload: &Upload,
        held: &[(u64, u64)],
        signature: Option<&Signature>,
    ) -> Result<BTreeSet<u64>> {
        let mut client = self.client().await?;
        let tx = claimed(&mut client, claim).await?;
        if let Some(signature) = signature {
            upsert_signature(&tx, upload, signature).await?;
        }
        let delete = tx
            .prepare_cached("DELETE FROM confirmed_parts WHERE account = $1 AND file_sha = $2")
            .await?;
        tx.execute(&delete, &[&upload.account, &upload.sha]).await?;
        insert_confirmed(&tx, upload, held).await?;
        let uploading = tx
            .prepare_cached("UPDATE files SET state = 'uploading', updated_at = $2 WHERE id = $1")
            .await?;
        tx.execute(&uploading, &[&claim.key.0, &unix_now_i64()])
            .await?;
        tx.commit().await?;
        Ok(held.iter().map(|&(offset, _)| offset).collect())
    }
}

/// Store the signature of the account's upload of a content (creating the upload's row).
async fn upsert_signature(
    tx: &Transaction<'_>,
    upload: &Upload,
    signature: &Signature,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO uploads (account, file_sha, size, part_size, signature, \
             signature_expires) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account, file_sha) DO UPDATE SET signature = excluded.signature, \
             signature_expires = excluded.signature_expires",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &upload.account,
        &upload.sha,
        &int(upload.size),
        &int(upload.part_size),
        &signature.encoded,
        &int(signature.expires_at),
    ];
    tx.execute(&stmt, &params).await?;
    Ok(())
}

/// The parts, in one statement; a part already recorded stays as it was.
async fn insert_confirmed(
    tx: &Transaction<'_>,
    upload: &Upload,
    parts: &[(u64, u64)],
) -> Result<()> {
    let (offsets, lens): (Vec<i64>, Vec<i64>) =
        parts.iter().map(|&(o, l)| (int(o), int(l))).unzip();
    let insert = tx
        .prepare_cached(
            "INSERT INTO confirmed_parts (account, file_sha, \"offset\", len, confirmed_at) \
             SELECT $1, $2, p.o, p.l, $5 FROM unnest($3::bigint[], $4::bigint[]) AS p(o, l) \
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let t = unix_now_i64();
    tx.execute(
        &insert,
        &[&upload.account, &upload.sha, &offsets, &lens, &t],
    )
    .await?;
    Ok(())
}
