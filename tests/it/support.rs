//! Test helpers: a scripted streaming server on loopback, and running the CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Loopback tests measure time and start servers: they must not run beside each other.
/// nextest runs each in its own process (and `.config/nextest.toml` one at a time); under
/// `cargo test` they share a process, and this lock keeps them in single file.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the scripted server does with request number `i` (0-based).
#[derive(Debug, Clone, Copy)]
pub enum Behavior {
    /// Stream `tokens` completion chunks shaped like vLLM's: the first after `first_ms`,
    /// then one every `gap_ms` (absolute schedule), then usage and `[DONE]`.
    Stream {
        first_ms: u64,
        gap_ms: u64,
        tokens: u32,
    },
    /// Answer with this status and a vLLM-style JSON error body.
    Status(u16),
    /// Stream `after` tokens, then drop the connection.
    Cut { after: u32 },
    /// Stream one token, then a line that is not JSON.
    Garbage,
    /// Read the request and never answer.
    Silent,
    /// Replay the `data:` events of a captured real vLLM stream (a file under
    /// `tests/fixtures/vllm/`), one every `gap_ms`.
    Replay { fixture: &'static str, gap_ms: u64 },
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FakeServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub fn fake_server(script: impl Fn(u64) -> Behavior + Send + Sync + 'static) -> FakeServer {
    let script: Arc<dyn Fn(u64) -> Behavior + Send + Sync> = Arc::new(script);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = rx.wait_for(|s| *s) => break,
                    a = listener.accept() => {
                        let Ok((s, _)) = a else { continue };
                        s.set_nodelay(true).unwrap();
                        tasks.spawn(connection(s, script.clone(), counter.clone()));
                    }
                }
            }
            tasks.abort_all();
        });
    });
    FakeServer {
        addr,
        requests,
        stop,
        thread: Some(thread),
    }
}

fn chunk(out: &mut Vec<u8>, event: &str) {
    let payload = format!("data: {event}\n\n");
    out.extend_from_slice(format!("{:x}\r\n{payload}\r\n", payload.len()).as_bytes());
}

fn token(i: u32, last: bool) -> String {
    let fr = if last { "\"length\"" } else { "null" };
    format!(
        r#"{{"id":"cmpl-test","object":"text_completion","created":1,"model":"m","choices":[{{"index":0,"text":" t{i}","logprobs":null,"finish_reason":{fr},"stop_reason":null,"prompt_token_ids":null,"token_ids":null}}]}}"#
    )
}

async fn connection(
    mut s: TcpStream,
    script: Arc<dyn Fn(u64) -> Behavior + Send + Sync>,
    counter: Arc<AtomicU64>,
) {
    let mut buf = Vec::new();
    loop {
        // one request
        let (head, body_len) = loop {
            let mut tmp = [0u8; 8192];
            let n = match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&tmp[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(h)) = req.parse(&buf) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                break (h, len);
            }
        };
        while buf.len() < head + body_len {
            let mut tmp = [0u8; 8192];
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head + body_len);
        let t0 = tokio::time::Instant::now();
        let i = counter.fetch_add(1, Ordering::SeqCst);
        let sse_head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        match script(i) {
            Behavior::Stream {
                first_ms,
                gap_ms,
                tokens,
            } => {
                if s.write_all(sse_head).await.is_err() {
                    return;
                }
                for k in 0..tokens {
                    // tokio's timer fires up to 1 ms after its deadline: aim half a
                    // millisecond early so the scripted delay is exact on average
                    let due = t0 + Duration::from_millis(first_ms + gap_ms * k as u64);
                    tokio::time::sleep_until(due - Duration::from_micros(500)).await;
                    let mut out = Vec::new();
                    chunk(&mut out, &token(k, k + 1 == tokens));
                    if k + 1 == tokens {
                        chunk(
                            &mut out,
                            &format!(
                                r#"{{"id":"cmpl-test","object":"text_completion","created":1,"model":"m","choices":[],"usage":{{"prompt_tokens":10,"total_tokens":{},"completion_tokens":{tokens}}}}}"#,
                                tokens + 10
                            ),
                        );
                        chunk(&mut out, "[DONE]");
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
            Behavior::Status(code) => {
                let body = format!(
                    r#"{{"error":{{"message":"scripted failure {code}","type":"TestError","param":null,"code":{code}}}}}"#
                );
                let msg = format!(
                    "HTTP/1.1 {code} Oops\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(msg.as_bytes()).await.is_err() {
                    return;
                }
            }
            Behavior::Cut { after } => {
                let mut out = sse_head.to_vec();
                for k in 0..after {
                    chunk(&mut out, &token(k, false));
                }
                let _ = s.write_all(&out).await;
                return;
            }
            Behavior::Garbage => {
                let mut out = sse_head.to_vec();
                chunk(&mut out, &token(0, false));
                chunk(&mut out, "this is not json");
                chunk(&mut out, &token(1, true));
                chunk(&mut out, "[DONE]");
                out.extend_from_slice(b"0\r\n\r\n");
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
            Behavior::Replay { fixture, gap_ms } => {
                let text = std::fs::read_to_string(format!(
                    "{}/tests/fixtures/vllm/{fixture}",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap();
                if s.write_all(sse_head).await.is_err() {
                    return;
                }
                for (k, data) in text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .enumerate()
                {
                    tokio::time::sleep_until(t0 + Duration::from_millis(gap_ms * k as u64)).await;
                    let mut out = Vec::new();
                    chunk(&mut out, data);
                    if data == "[DONE]" {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
            Behavior::Silent => {
                let mut tmp = [0u8; 64];
                while let Ok(n) = s.read(&mut tmp).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vllm-loadtest")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vlt-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run the binary with `args`, bounded in time.
pub fn run(args: &[&str]) -> Run {
    let out = std::process::Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run vllm-loadtest");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).unwrap()
}

pub fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("requests.jsonl"))
        .expect("requests.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `sent = ok + failed + cancelled`, from the summary and from the raw lines.
pub fn assert_accounted(dir: &Path, expected_sent: u64) {
    let s = &summary(dir)["vllm_loadtest"]["summary"];
    let g = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(g("sent"), expected_sent);
    assert_eq!(g("sent"), g("ok") + g("failed") + g("cancelled"));
    assert_eq!(
        records(dir).len() as u64,
        expected_sent,
        "one raw record per request sent"
    );
}

/// `vllm-loadtest sim` as a process of its own on a free loopback port, with `extra` flags,
/// once it listens: its child handle (the caller kills it) and its URL.
pub fn spawn_sim(extra: &[&str]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(bin())
        .args(["sim", "--port", &port.to_string()])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            up.elapsed() < std::time::Duration::from_secs(20),
            "sim never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, format!("http://127.0.0.1:{port}"))
}
