//! The three protocol calls made by hand with reqwest, answering the raw JSON, so tests can check
//! field names and codes exactly as sent; `client.rs` checks the same answers through the crate's client.

use super::TestEmulator;
use serde_json::Value;
use vodup::hash::md5_hex;

/// Assert an answer's `code` and `canRetry`, showing the whole answer when they differ.
#[track_caller]
pub fn assert_code(answer: &Value, code: i64, can_retry: i64) {
    assert_eq!(
        (answer["code"].as_i64(), answer["canRetry"].as_i64()),
        (Some(code), Some(can_retry)),
        "answer: {answer}"
    );
}

impl TestEmulator {
    /// Call the endpoint with these query pairs; the HTTP response as it is.
    pub async fn call(
        &self,
        method: reqwest::Method,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self.http.request(method, &self.endpoint).query(query);
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send().await
    }

    /// Call and parse the 200 JSON answer.
    pub async fn call_json(
        &self,
        method: reqwest::Method,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Value {
        let response = self
            .call(method, query, body)
            .await
            .expect("request succeeds");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json answer")
    }

    pub async fn init(&self, sha: &str, file_size: u64, data_size: u64, signature: &str) -> Value {
        let query = [
            ("Action", "InitUploadEx".to_owned()),
            ("fileSha", sha.to_owned()),
            ("fileSize", file_size.to_string()),
            ("dataSize", data_size.to_string()),
            ("signature", signature.to_owned()),
        ];
        self.call_json(reqwest::Method::GET, &query, None).await
    }

    /// The query of an UploadPartEx call.
    pub fn part_query(
        &self,
        sha: &str,
        offset: u64,
        data_size: u64,
        md5: &str,
        signature: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("Action", "UploadPartEx".to_owned()),
            ("fileSha", sha.to_owned()),
            ("offset", offset.to_string()),
            ("dataSize", data_size.to_string()),
            ("dataMd5", md5.to_owned()),
            ("signature", signature.to_owned()),
        ]
    }

    /// Send `bytes` as the part at `offset`, with their true size and MD5.
    pub async fn part(&self, sha: &str, offset: u64, bytes: &[u8], signature: &str) -> Value {
        let query = self.part_query(sha, offset, bytes.len() as u64, &md5_hex(bytes), signature);
        self.call_json(reqwest::Method::POST, &query, Some(bytes.to_vec()))
            .await
    }

    /// Send every part of `data` with part size `part` (all of them in parallel).
    pub async fn upload_parts(&self, sha: &str, data: &[u8], part: usize, signature: &str) {
        let sends = data
            .chunks(part)
            .enumerate()
            .map(|(i, bytes)| self.part(sha, (i * part) as u64, bytes, signature));
        for answer in futures::future::join_all(sends).await {
            assert_code(&answer, 0, 0);
        }
    }

    pub async fn finish(&self, sha: &str, signature: &str) -> Value {
        let query = [
            ("Action", "FinishUploadEx".to_owned()),
            ("fileSha", sha.to_owned()),
            ("signature", signature.to_owned()),
        ];
        self.call_json(reqwest::Method::GET, &query, None).await
    }

    /// GET a finished file's url.
    pub async fn download(&self, url: &str) -> Vec<u8> {
        let response = self.http.get(url).send().await.expect("download request");
        assert_eq!(response.status(), 200, "GET {url}");
        response.bytes().await.expect("download body").to_vec()
    }
}
