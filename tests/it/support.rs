//! Test helpers: a scripted streaming server on loopback, and running the CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    /// Answer 401 with the request's head in the body, as some gateways echo what they got.
    EchoHead,
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
    /// Connections accepted (TLS: before the handshake).
    pub connections: Arc<AtomicU64>,
    /// Every request head received, as text, in arrival order.
    pub heads: Arc<std::sync::Mutex<Vec<String>>>,
    /// Set: every request from now on (`/health` too) is read and never answered.
    hung: Arc<std::sync::atomic::AtomicBool>,
    tls: bool,
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
    /// Hang like a stopped process: connections are accepted, nothing is answered.
    pub fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

pub fn fake_server(script: impl Fn(u64) -> Behavior + Send + Sync + 'static) -> FakeServer {
    fake_server_on(script, None)
}

/// [`fake_server`] over TLS with this configuration (see `tls::Pki`).
pub fn fake_server_tls(
    script: impl Fn(u64) -> Behavior + Send + Sync + 'static,
    tls: Arc<rustls::ServerConfig>,
) -> FakeServer {
    fake_server_on(script, Some(tls))
}

type Script = Arc<dyn Fn(u64) -> Behavior + Send + Sync>;
type Heads = Arc<std::sync::Mutex<Vec<String>>>;

fn fake_server_on(
    script: impl Fn(u64) -> Behavior + Send + Sync + 'static,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> FakeServer {
    let script: Script = Arc::new(script);
    let heads: Heads = Arc::default();
    let heads_seen = heads.clone();
    let hung = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hung_seen = hung.clone();
    let is_tls = tls.is_some();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let connections = Arc::new(AtomicU64::new(0));
    let accepted = connections.clone();
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
                        accepted.fetch_add(1, Ordering::Relaxed);
                        s.set_nodelay(true).unwrap();
                        let conn = Conn {
                            script: script.clone(),
                            counter: counter.clone(),
                            heads: heads_seen.clone(),
                            hung: hung_seen.clone(),
                        };
                        match &tls {
                            None => tasks.spawn(connection(s, conn)),
                            Some(config) => {
                                let accept = tokio_rustls::TlsAcceptor::from(config.clone()).accept(s);
                                tasks.spawn(async move {
                                    if let Ok(s) = accept.await {
                                        connection(s, conn).await;
                                    }
                                })
                            }
                        };
                    }
                }
            }
            tasks.abort_all();
        });
    });
    FakeServer {
        addr,
        requests,
        connections,
        heads,
        hung,
        tls: is_tls,
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

/// Write and flush (a TLS stream holds its last record until flushed); false when gone.
async fn put(s: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> bool {
    s.write_all(bytes).await.is_ok() && s.flush().await.is_ok()
}

/// What a connection task shares with the server.
struct Conn {
    script: Script,
    counter: Arc<AtomicU64>,
    heads: Heads,
    hung: Arc<std::sync::atomic::AtomicBool>,
}

async fn connection(mut s: impl AsyncRead + AsyncWrite + Unpin, conn: Conn) {
    let Conn {
        script,
        counter,
        heads,
        hung,
    } = conn;
    let mut buf = Vec::new();
    loop {
        // one request
        let (head, body_len, health) = loop {
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
                heads
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..h]).into_owned());
                break (h, len, req.path == Some("/health"));
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
        if hung.load(Ordering::SeqCst) {
            // read on (so a closing client is seen), answer nothing
            let mut tmp = [0u8; 64];
            while let Ok(n) = s.read(&mut tmp).await {
                if n == 0 {
                    return;
                }
            }
            return;
        }
        // `/health` is the server's own, outside the script (the watchdog probes it)
        if health {
            if !put(&mut s, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await {
                return;
            }
            continue;
        }
        let t0 = tokio::time::Instant::now();
        let i = counter.fetch_add(1, Ordering::SeqCst);
        let sse_head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        match script(i) {
            Behavior::Stream {
                first_ms,
                gap_ms,
                tokens,
            } => {
                if !put(&mut s, sse_head).await {
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
                    if !put(&mut s, &out).await {
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
                if !put(&mut s, msg.as_bytes()).await {
                    return;
                }
            }
            Behavior::EchoHead => {
                let body = format!(
                    "unauthorized; you sent: {}",
                    heads.lock().unwrap().last().cloned().unwrap_or_default()
                );
                let msg = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if !put(&mut s, msg.as_bytes()).await {
                    return;
                }
            }
            Behavior::Cut { after } => {
                let mut out = sse_head.to_vec();
                for k in 0..after {
                    chunk(&mut out, &token(k, false));
                }
                let _ = put(&mut s, &out).await;
                return;
            }
            Behavior::Garbage => {
                let mut out = sse_head.to_vec();
                chunk(&mut out, &token(0, false));
                chunk(&mut out, "this is not json");
                chunk(&mut out, &token(1, true));
                chunk(&mut out, "[DONE]");
                out.extend_from_slice(b"0\r\n\r\n");
                if !put(&mut s, &out).await {
                    return;
                }
            }
            Behavior::Replay { fixture, gap_ms } => {
                let text = std::fs::read_to_string(format!(
                    "{}/tests/fixtures/vllm/{fixture}",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap();
                if !put(&mut s, sse_head).await {
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
                    if !put(&mut s, &out).await {
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
    run_env(args, &[])
}

/// [`run`] with these environment variables set (API keys, header values).
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = std::process::Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run vllm-loadtest");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The one entry of a folder (a run's `<output>/<experiment>/<date>`, a cell a test made
/// alone); a test failure if it is empty.
pub fn only_entry(dir: impl AsRef<Path>) -> PathBuf {
    let dir = dir.as_ref();
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("`{}`: {e}", dir.display()))
        .next()
        .unwrap_or_else(|| panic!("`{}` is empty", dir.display()))
        .unwrap()
        .path()
}

pub fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).unwrap()
}

/// A cell's records as `requests.jsonl` lines would have them (its Parquet files once the
/// cell ended, else its journal), in workload order.
pub fn records(dir: &Path) -> Vec<serde_json::Value> {
    let cell = vllm_loadtest::store::layout::CellDir::new(dir);
    vllm_loadtest::store::records::read_full(&cell)
        .expect("the cell's records")
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
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

/// A child process that is killed (and reaped) when dropped: a test that fails half way
/// leaves no server behind.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait for `child` to exit, polling; past `limit`, kill it, reap it and fail the test
/// with `what` (a test that gives up leaves no process behind).
pub fn wait_or_kill(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `vllm-loadtest sim` as a process of its own on a free loopback port, with `extra` flags,
/// once it listens: its child handle (killed when dropped, if not before) and its URL.
pub fn spawn_sim(extra: &[&str]) -> (Reaped, String) {
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
    let child = Reaped(child);
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

/// When a cell's server was found lost (s from its start), from its `failure_reason`
/// (`… (at 7.0 s)`).
pub fn lost_at_s(why: &str) -> f64 {
    why.rsplit("(at ")
        .next()
        .and_then(|t| t.strip_suffix(" s)"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time in {why}"))
}

/// A file's bytes as a scan for text should see them: a Parquet file's pages are zstd
/// compressed, so its column names and every text value are decoded through the crate
/// (`store::parquet::read`), one per line; any other file as it is.
pub fn scannable_bytes(path: &Path) -> Vec<u8> {
    use vllm_loadtest::store::parquet::{Column, read};
    if path.extension().is_none_or(|e| e != "parquet") {
        return std::fs::read(path).unwrap();
    }
    let t = read(path).unwrap_or_else(|e| panic!("{e:#}"));
    let mut out = Vec::new();
    for (name, c) in &t.columns {
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        if let Column::Str(v) = c {
            for s in v.iter().flatten() {
                out.extend_from_slice(s.as_bytes());
                out.push(b'\n');
            }
        }
    }
    out
}
