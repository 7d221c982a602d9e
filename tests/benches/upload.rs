//! Upload throughput and memory: a file of SLATE_BENCH_BYTES (default 1 GiB) sent to a
//! real `slate serve` (release build, embedded PostgreSQL) over loopback with tus, once
//! as a single PATCH and once in 8 MiB PATCHes, against the baseline of copying the same
//! file on the same disk in the same run. Prints throughput, the ratio to the copy, and
//! the server's resident-memory growth.
//!
//! Run: cargo build --release -p server && cargo bench -p slate-tests --bench upload

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slate_tests::eventually;
use tokio::io::AsyncReadExt as _;

const CHUNK: u64 = 8 * 1024 * 1024;

fn slate(data: &Path, port: u16) -> Command {
    let binary = slate_tests::root().join("target/release/slate");
    assert!(
        binary.exists(),
        "build it first: cargo build --release -p server"
    );
    let mut cmd = Command::new(binary);
    cmd.env("SLATE_DATA_DIR", data)
        .env("SLATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLATE_LOG", "warn")
        .env("SLATE_PROCESSING_WORKERS", "1")
        .env_remove("DATABASE_URL");
    cmd
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn mib_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1024.0 / 1024.0 / took.as_secs_f64()
}

async fn create(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    size: u64,
    name: &str,
) -> String {
    let res = client
        .post(format!("{base}/api/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", size.to_string())
        .header("upload-metadata", format!("filename {}", base64_of(name)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    format!("{base}{}", res.headers()["location"].to_str().unwrap())
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A streaming body of `len` bytes of `file` from `offset`, read 1 MiB at a time.
async fn body(file: &Path, offset: u64, len: u64) -> reqwest::Body {
    use tokio::io::AsyncSeekExt as _;
    let mut f = tokio::fs::File::open(file).await.unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).await.unwrap();
    let stream = futures::stream::unfold((f, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (1024 * 1024).min(left as usize)];
        let n = f.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.truncate(n);
        Some((Ok::<_, std::io::Error>(buf), (f, left - n as u64)))
    });
    reqwest::Body::wrap_stream(stream)
}

async fn patch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    file: &Path,
    offset: u64,
    len: u64,
) {
    let res = client
        .patch(url)
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .header("content-length", len.to_string())
        .body(body(file, offset, len).await)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        204,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

fn make_file(path: &Path, size: u64) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1024 * 1024];
    let mut left = size;
    while left > 0 {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
    out.get_ref().sync_all().unwrap();
}

fn main() {
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

async fn run() {
    let size: u64 = std::env::var("SLATE_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024 * 1024 * 1024);
    // Under /tmp so that, when run as root, the postgres user can reach the data.
    let dir = std::env::temp_dir().join(format!("slate-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let input: PathBuf = dir.join("input.bin");
    println!(
        "upload benchmark: {} MiB file in {}",
        size / 1024 / 1024,
        dir.display()
    );
    make_file(&input, size);

    // Baseline: copying the same file on the same disk, flushed like an upload is.
    let copy = dir.join("copy.bin");
    let started = Instant::now();
    std::fs::copy(&input, &copy).unwrap();
    std::fs::File::open(&copy).unwrap().sync_all().unwrap();
    let copy_time = started.elapsed();
    std::fs::remove_file(&copy).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = slate(&data, port)
        .args([
            "user",
            "create",
            "--email",
            "bench@studio.test",
            "--role",
            "admin",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = slate(&data, port)
        .args([
            "token",
            "create",
            "--name",
            "bench",
            "--scope",
            "api",
            "--user",
            "bench@studio.test",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut server: Child = slate(&data, port)
        .arg("serve")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(
        "slate serve to be ready",
        Duration::from_secs(30),
        || async {
            client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    let pid = server.id();
    let rss_before = status_kib(pid, "VmRSS:");

    let url = create(&client, &base, &token, size, "one-patch.bin").await;
    let started = Instant::now();
    patch(&client, &url, &token, &input, 0, size).await;
    let one = started.elapsed();

    // Let processing of the first file finish so the two runs do not share the disk.
    wait_idle(&client, &base, &token).await;

    let url = create(&client, &base, &token, size, "chunked.bin").await;
    let started = Instant::now();
    let mut offset = 0;
    while offset < size {
        let len = CHUNK.min(size - offset);
        patch(&client, &url, &token, &input, offset, len).await;
        offset += len;
    }
    let chunked = started.elapsed();
    let peak = status_kib(pid, "VmHWM:");

    let copy_rate = mib_s(size, copy_time);
    println!();
    println!(
        "{:<28} {:>10} {:>12} {:>14}",
        "", "seconds", "MiB/s", "vs. disk copy"
    );
    println!(
        "{:<28} {:>10.2} {:>12.1} {:>14}",
        "copy on the same disk",
        copy_time.as_secs_f64(),
        copy_rate,
        "1.00"
    );
    for (label, took) in [("tus, one PATCH", one), ("tus, 8 MiB PATCHes", chunked)] {
        let rate = mib_s(size, took);
        println!(
            "{:<28} {:>10.2} {:>12.1} {:>14.2}",
            label,
            took.as_secs_f64(),
            rate,
            rate / copy_rate
        );
    }
    println!();
    println!(
        "slate resident memory: {:.1} MiB at start, {:.1} MiB peak, growth {:.1} MiB",
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(rss_before) as f64 / 1024.0
    );

    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until no asset is still being processed.
async fn wait_idle(client: &reqwest::Client, base: &str, token: &str) {
    eventually("processing to finish", Duration::from_secs(300), || async {
        let res = client
            .post(format!("{base}/api/list_assets"))
            .bearer_auth(token)
            .form(&[("state", "processing")])
            .send()
            .await
            .unwrap();
        let page: serde_json::Value = res.json().await.unwrap_or_default();
        page["items"].as_array().is_some_and(|i| i.is_empty())
    })
    .await;
}
