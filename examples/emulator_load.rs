//! Load generator for `bench/emulator_throughput.sh`: uploads generated files to an emulator with
//! many parts in flight and prints the measured figures as one table row.
//!
//! Hashing and data generation happen before the clock starts; the timed part is every
//! UploadPartEx (bodies sent from memory without copies), then every FinishUploadEx.

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use vodup::hash::{md5_hex, sha1_hex};
use vodup::protocol::{Claims, Processing, SecretKey};

/// Upload generated files to a running emulator and report the throughput.
#[derive(Parser)]
struct Args {
    /// The emulator's endpoint, `http://ADDR/v2/index.php`.
    #[arg(long)]
    endpoint: String,
    /// Secret id the emulator knows.
    #[arg(long)]
    secret_id: String,
    /// Its secret key.
    #[arg(long, env = "VOD_EMULATOR_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Number of files.
    #[arg(long, default_value_t = 4)]
    files: usize,
    /// Size of each file in MiB.
    #[arg(long, default_value_t = 64)]
    file_mib: usize,
    /// Part size in bytes (524288 or 1048576).
    #[arg(long, default_value_t = 1_048_576)]
    part_size: usize,
    /// Part requests in flight at once, over all files.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

struct File {
    data: Bytes,
    sha: String,
    md5s: Vec<String>,
    signature: String,
}

fn generate(args: &Args, index: usize, key: &SecretKey) -> File {
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut state =
        (nonce.as_nanos() as u64 ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    let len = args.file_mib * 1_048_576;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    let sha = sha1_hex(&data);
    let md5s = data.chunks(args.part_size).map(md5_hex).collect();
    let now = nonce.as_secs();
    let claims = Claims {
        secret_id: args.secret_id.clone(),
        issued_at: now,
        expires_at: now + 3600,
        random: index as u32,
        file_name: format!("bench{index}.mp4"),
        file_sha: sha.clone(),
        file_type: "mp4".into(),
        uid: "bench".into(),
        processing: Processing::default(),
    };
    let signature = claims.sign(key).encoded;
    File {
        data: Bytes::from(data),
        sha,
        md5s,
        signature,
    }
}

async fn call(
    http: &reqwest::Client,
    endpoint: &str,
    query: &[(&str, String)],
    body: Option<Bytes>,
) -> anyhow::Result<()> {
    let request = match body {
        Some(body) => http.post(endpoint).body(body),
        None => http.get(endpoint),
    };
    let answer: serde_json::Value = request
        .query(query)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(answer["code"].as_i64().is_some_and(|c| c >= 0), "{answer}");
    Ok(())
}

fn part_query(file: &File, index: usize, part: usize) -> Vec<(&'static str, String)> {
    let len = part.min(file.data.len() - index * part);
    vec![
        ("Action", "UploadPartEx".into()),
        ("fileSha", file.sha.clone()),
        ("offset", (index * part).to_string()),
        ("dataSize", len.to_string()),
        ("dataMd5", file.md5s[index].clone()),
        ("signature", file.signature.clone()),
    ]
}

async fn init_all(
    http: &reqwest::Client,
    endpoint: &str,
    files: &[File],
    part: usize,
) -> anyhow::Result<()> {
    for file in files {
        let query = [
            ("Action", "InitUploadEx".into()),
            ("fileSha", file.sha.clone()),
            ("fileSize", file.data.len().to_string()),
            ("dataSize", part.to_string()),
            ("signature", file.signature.clone()),
        ];
        call(http, endpoint, &query, None).await?;
    }
    Ok(())
}

async fn finish_all(http: &reqwest::Client, endpoint: &str, files: &[File]) -> anyhow::Result<()> {
    for file in files {
        let query = [
            ("Action", "FinishUploadEx".into()),
            ("fileSha", file.sha.clone()),
            ("signature", file.signature.clone()),
        ];
        call(http, endpoint, &query, None).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = SecretKey::new(args.secret_key.clone());
    let files: Vec<File> = (0..args.files).map(|i| generate(&args, i, &key)).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let (endpoint, part) = (args.endpoint.as_str(), args.part_size);
    init_all(&http, endpoint, &files, part).await?;
    let jobs: Vec<(usize, usize)> = (0..files.len())
        .flat_map(|f| (0..files[f].md5s.len()).map(move |i| (f, i)))
        .collect();
    let started = Instant::now();
    let http = &http;
    let mut sends = futures::stream::iter(jobs.iter().map(|&(f, i)| {
        let file = &files[f];
        let body = file
            .data
            .slice(i * part..file.data.len().min((i + 1) * part));
        let query = part_query(file, i, part);
        async move { call(http, endpoint, &query, Some(body)).await }
    }))
    .buffer_unordered(args.concurrency);
    while let Some(result) = sends.next().await {
        result?;
    }
    let upload_secs = started.elapsed().as_secs_f64();
    let finish_started = Instant::now();
    finish_all(http, endpoint, &files).await?;
    let finish_secs = finish_started.elapsed().as_secs_f64();
    let bytes = files.iter().map(|f| f.data.len()).sum::<usize>() as f64;
    println!(
        "| {:>5} | {:>8} | {:>10} | {:>9} | {:>8.2} | {:>11.1} | {:>12.1} | {:>8.2} | {:>11.1} |",
        args.files,
        args.file_mib,
        part,
        args.concurrency,
        upload_secs,
        bytes / upload_secs / 1e6,
        bytes / upload_secs / 1_048_576.0,
        finish_secs,
        bytes / finish_secs / 1e6,
    );
    Ok(())
}
