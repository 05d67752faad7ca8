//! Reading request bodies: a part's body kept as received, and the draining of bodies that are
//! refused before they were read.
//!
//! Draining matters because hyper closes a connection whose request body was left unread; the
//! client, still sending, may then see a reset instead of the JSON answer. A refused body is read
//! and thrown away, up to [`DRAIN_LIMIT`] bytes; past that the connection is closed after all.

use super::answer::Answer;
use super::stats::Reject;
use axum::body::{Body, Bytes};
use futures::StreamExt as _;

/// Most bytes read from a refused body before giving up on keeping the connection.
pub const DRAIN_LIMIT: u64 = 4 * 1_048_576;

/// The body as received, exactly `expected` bytes, its chunks neither joined nor copied.
pub async fn read_part(body: Body, expected: u64) -> Result<Vec<Bytes>, (Reject, Answer)> {
    let mut stream = body.into_data_stream();
    let mut chunks = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                Reject::Aborted,
                Answer::body(format!("body cut short: {e}")),
            )
        })?;
        total += chunk.len() as u64;
        if total > expected {
            drain(Body::from_stream(stream)).await;
            let desc = format!("body is longer than dataSize {expected}");
            return Err((Reject::Length, Answer::body(desc)));
        }
        chunks.push(chunk);
    }
    if total < expected {
        let desc = format!("body has {total} bytes, dataSize is {expected}");
        return Err((Reject::Length, Answer::body(desc)));
    }
    Ok(chunks)
}

/// Read and discard what is left of a body, up to [`DRAIN_LIMIT`] bytes.
pub async fn drain(body: Body) {
    read_at_least(body, DRAIN_LIMIT).await;
}

/// Read `limit` bytes (or the whole body, if shorter) and discard them; the count read.
pub async fn read_at_least(body: Body, limit: u64) -> u64 {
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    while read < limit {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_part_body_keeps_its_chunks() {
        let chunks = read_part(chunked(&[b"ab", b"cde"]), 5).await.unwrap();
        assert_eq!(
            chunks,
            [Bytes::from_static(b"ab"), Bytes::from_static(b"cde")]
        );
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_refused_for_their_length() {
        let (reason, answer) = read_part(chunked(&[b"ab"]), 5).await.unwrap_err();
        assert_eq!(
            (reason, answer.code, answer.can_retry),
            (Reject::Length, -10006, 1)
        );
        let (reason, _) = read_part(chunked(&[b"abc", b"def", b"g"]), 5)
            .await
            .unwrap_err();
        assert_eq!(reason, Reject::Length);
    }

    #[tokio::test]
    async fn read_at_least_stops_after_the_limit() {
        assert_eq!(read_at_least(chunked(&[b"ab", b"cd", b"ef"]), 3).await, 4);
        assert_eq!(read_at_least(chunked(&[b"ab"]), 100).await, 2);
    }
}
