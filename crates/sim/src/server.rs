//! The simulator's HTTP/1.1 server: vLLM's OpenAI-compatible routes over the real-time
//! engines, keep-alive connections, vLLM-shaped errors, and faults on demand.

use super::direct::{Consumer, DirectSpec, DirectStream, End};
use super::engine::{EngineRequest, TokenOut};
use super::faults::{Fault, Faults};
use super::metrics;
use super::prefix_cache::{BlockHash, block_hashes, salted_block_hashes};
use super::profile::Profile;
use super::realtime::RealtimeEngine;
use super::router::{FrontEnd, Router};
use super::tls::Io;
use super::wire::{self, Api, Stream};
use anyhow::Result;
use loadtest_base::Tokenizer;
use loadtest_base::clock::Clock;
use loadtest_base::http;
use serde_json::Value;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// Everything a simulated deployment needs.
pub struct SimConfig {
    pub profile: Profile,
    pub dp: usize,
    pub seed: u64,
    pub model: String,
    /// API-server processes of the front-end CPU model; `None` = off.
    pub api_servers: Option<usize>,
    pub faults: Faults,
    pub tokenizer: Arc<Tokenizer>,
}

struct State {
    cfg: SimConfig,
    engines: Vec<RealtimeEngine>,
    router: Mutex<Router>,
    front: Option<Mutex<FrontEnd>>,
    next_id: AtomicU64,
    clock: Clock,
    /// `cfg.model`, shared with every directly streamed response.
    model: Arc<str>,
    prompt_cache: PromptCache,
}

/// What the engine needs of a prompt: its token count as the server counts it (special
/// tokens included) and the chained hashes of its full blocks (for prefix caching).
#[derive(Clone)]
struct PromptInfo {
    tokens: u32,
    block_hashes: Arc<[BlockHash]>,
}

/// Prompts seen before. Benchmarks repeat their prompts (a dataset cycled, a shared
/// prefix), and tokenizing each one again was a third of the simulator's CPU at 5,000 req/s.
/// Keyed by a 64-bit hash and the length: a collision would only misstate one simulated
/// prompt.
struct PromptCache(Mutex<PromptMap>);

/// How a prompt's blocks are hashed: their size (0: prefix caching off, no hashes) and the
/// request's `cache_salt`, if any.
#[derive(Clone, Copy)]
struct Blocks<'a> {
    size: u32,
    salt: Option<&'a str>,
}

#[derive(Default)]
struct PromptMap {
    /// Keyed by the text's hash, its length and the salt's hash (0: none).
    map: std::collections::HashMap<(u64, usize, u64), PromptInfo>,
    /// Block hashes held over every entry: long prompts are bounded by this, not by count.
    hashes: usize,
}

impl PromptCache {
    /// Entries kept before the cache starts over (a few MB at most)...
    const CAP: usize = 1 << 16;
    /// ...and block hashes (8 bytes each: 64 MB).
    const CAP_HASHES: usize = 1 << 23;

    fn info(&self, tok: &Tokenizer, text: &str, blocks: Blocks) -> PromptInfo {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let build = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        let salt = blocks.salt.map_or(0, |s| build.hash_one(s));
        let key = (build.hash_one(text), text.len(), salt);
        if let Some(info) = self.0.lock().expect("prompt cache").map.get(&key) {
            return info.clone();
        }
        let info = if blocks.size == 0 {
            PromptInfo {
                tokens: tok.count_prompt(text),
                block_hashes: Arc::from([]),
            }
        } else {
            // The special tokens the server adds (a BOS) are the same for every prompt: a
            // stand-in id keeps block boundaries and prefix equality as the real ids would.
            let special = tok.special_tokens_added() as usize;
            let mut ids = vec![u32::MAX; special];
            ids.extend(tok.encode(text));
            of_ids(&ids, blocks)
        };
        let mut m = self.0.lock().expect("prompt cache");
        if m.map.len() >= Self::CAP || m.hashes >= Self::CAP_HASHES {
            *m = PromptMap::default();
        }
        m.hashes += info.block_hashes.len();
        m.map.insert(key, info.clone());
        info
    }
}

/// A prompt given as token ids (no special tokens are added to those).
fn of_ids(ids: &[u32], blocks: Blocks) -> PromptInfo {
    PromptInfo {
        tokens: ids.len() as u32,
        block_hashes: match blocks {
            Blocks { size: 0, .. } => Arc::from([]),
            Blocks { size, salt: None } => block_hashes(ids, size).into(),
            Blocks {
                size,
                salt: Some(s),
            } => salted_block_hashes(ids, size, s).into(),
        },
    }
}

/// Serve until `shutdown` turns true. Engines start with the server and stop with it.
pub async fn serve(
    listener: TcpListener,
    cfg: SimConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    serve_with(listener, cfg, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (`sim --tls-cert --tls-key`).
pub async fn serve_with(
    listener: TcpListener,
    cfg: SimConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    cfg.profile.validate()?;
    let clock = Clock::start();
    let dp = cfg.dp.max(1);
    let engines = (0..dp)
        .map(|r| {
            RealtimeEngine::start(
                cfg.profile.clone(),
                loadtest_base::rng::Rng::derive(cfg.seed, r as u64 + 1).next_u64(),
                r,
                clock,
            )
        })
        .collect();
    let state = Arc::new(State {
        front: cfg.api_servers.map(|k| Mutex::new(FrontEnd::new(k))),
        router: Mutex::new(Router::new(dp)),
        engines,
        next_id: AtomicU64::new(0),
        clock,
        model: cfg.model.as_str().into(),
        prompt_cache: PromptCache(Mutex::new(PromptMap::default())),
        cfg,
    });
    let mut conns = tokio::task::JoinSet::new();
    let for_conns = shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (state, shutdown) = (state.clone(), for_conns.clone());
                match &tls {
                    None => conns.spawn(connection(stream, state, shutdown)),
                    Some(config) => conns.spawn(handshake(stream, config.clone(), state, shutdown)),
                };
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Connections see the shutdown and close; give them a moment, then cut the rest.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    drop(state);
    Ok(())
}

/// The TLS handshake (bounded: a client that never finishes it holds nothing for long),
/// then the connection as usual. A failed handshake is the client's to report.
async fn handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
) {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), accept).await {
        connection(tls, state, shutdown).await;
    }
}

enum Next {
    KeepAlive,
    Close,
}

async fn connection(mut stream: impl Io, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let Some(req) = read_request(&mut stream, &mut buf, &mut shutdown).await else {
            return;
        };
        let h = &req.head;
        let next = match route(
            &mut stream,
            &state,
            &h.method,
            &h.path,
            &req.body,
            h.pinned,
            &mut shutdown,
        )
        .await
        {
            Ok(n) => n,
            Err(_) => Next::Close,
        };
        if h.close || matches!(next, Next::Close) {
            return;
        }
    }
}

/// The largest request body the simulator reads (a prompt of millions of tokens fits).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What a request's head says, and how long it and its body are.
struct Head {
    len: usize,
    method: String,
    path: String,
    /// `content-length`; `None` when it is there but not a number.
    body_len: Option<usize>,
    /// `x-data-parallel-rank`: the engine the client asked for.
    pinned: Option<usize>,
    /// `connection: close`.
    close: bool,
}

impl Head {
    fn of(req: &httparse::Request, len: usize) -> Self {
        let number = |name: &str| {
            http::header(req.headers, name)
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
        };
        Head {
            len,
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("").to_string(),
            body_len: match http::header(req.headers, "content-length") {
                None => Some(0),
                Some(_) => number("content-length"),
            },
            pinned: number("x-data-parallel-rank"),
            close: http::header(req.headers, "connection")
                .is_some_and(|v| http::has_token(v, "close")),
        }
    }
}

struct Request {
    head: Head,
    body: Vec<u8>,
}

/// The next request off the connection; bytes past it stay in `buf` for the one after.
/// `None`: the connection is done (closed, broken, a bad or oversized head, or shutdown).
async fn read_request(
    stream: &mut impl Io,
    buf: &mut Vec<u8>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Request> {
    let head = read_head(stream, buf, shutdown).await?;
    let Some(body_len) = head.body_len else {
        let _ = write_error(stream, 400, "BadRequestError", "invalid Content-Length").await;
        return None;
    };
    // a declared length is not a reason to buffer without bound (nor to overflow `end`)
    if body_len > MAX_BODY_BYTES {
        let _ = write_error(stream, 413, "BadRequestError", "request body too large").await;
        return None;
    }
    let end = head.len + body_len;
    while buf.len() < end {
        let mut tmp = [0u8; 16 * 1024];
        let n = tokio::select! {
            r = stream.read(&mut tmp) => match r { Ok(0) | Err(_) => return None, Ok(n) => n },
            _ = shutdown.changed() => return None,
        };
        buf.extend_from_slice(&tmp[..n]);
    }
    let body: Vec<u8> = buf[head.len..end].to_vec();
    buf.drain(..end);
    Some(Request { head, body })
}

/// Read until `buf` holds a whole request head; a head that does not parse is answered 400.
async fn read_head(
    stream: &mut impl Io,
    buf: &mut Vec<u8>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Head> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => return Some(Head::of(&req, n)),
            Ok(httparse::Status::Partial) => {}
            Err(_) => {
                let _ = write_error(stream, 400, "BadRequestError", "invalid HTTP request").await;
                return None;
            }
        }
        if buf.len() > http::MAX_HEAD_BYTES {
            return None;
        }
        let mut tmp = [0u8; 16 * 1024];
        let n = tokio::select! {
            r = stream.read(&mut tmp) => match r { Ok(0) | Err(_) => return None, Ok(n) => n },
            _ = shutdown.wait_for(|s| *s) => return None,
        };
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn write_response(
    stream: &mut impl Io,
    status: u16,
    ct: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = wire::response_head(status, ct, Some(body.len()));
    out.extend_from_slice(body);
    send(stream, &out).await
}

/// Write all of `bytes` and flush: a TLS stream may hold its last record back until asked.
async fn send(stream: &mut impl Io, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn route(
    stream: &mut impl Io,
    state: &State,
    method: &str,
    path: &str,
    body: &[u8],
    pinned: Option<usize>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Next> {
    let path = path.split('?').next().unwrap_or(path);
    let json = "application/json";
    match (method, path) {
        ("GET", "/health") => write_response(stream, 200, json, b"").await?,
        ("GET", "/v1/models") => {
            let m = &state.cfg.model;
            let v = serde_json::json!({"object": "list", "data": [{
                "id": m, "object": "model", "created": loadtest_base::time::unix_now(), "owned_by": "vllm",
                "root": m, "parent": null, "max_model_len": state.cfg.profile.max_model_len,
            }]});
            write_response(stream, 200, json, &serde_json::to_vec(&v).expect("json")).await?
        }
        ("GET", "/version") => {
            let v = format!(
                "{{\"version\":\"0.32.0+vllm-loadtest-sim.{}\"}}",
                env!("CARGO_PKG_VERSION")
            );
            write_response(stream, 200, json, v.as_bytes()).await?
        }
        ("GET", "/metrics") => {
            let snaps: Vec<_> = state.engines.iter().map(|e| e.snapshot()).collect();
            let p = &state.cfg.profile;
            let text = metrics::render(&state.cfg.model, &snaps, &metrics::CacheConfig::of(p));
            write_response(
                stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text.as_bytes(),
            )
            .await?
        }
        ("POST", "/reset_prefix_cache") => {
            // between cells, so that a cell does not find the previous cell's prompts
            for e in &state.engines {
                e.reset_prefix_cache();
            }
            write_response(stream, 200, json, b"").await?
        }
        ("POST", "/v1/completions") => {
            return generate(stream, state, Api::Completions, body, pinned, shutdown).await;
        }
        ("POST", "/v1/chat/completions") => {
            return generate(stream, state, Api::Chat, body, pinned, shutdown).await;
        }
        (
            _,
            "/health"
            | "/v1/models"
            | "/version"
            | "/metrics"
            | "/reset_prefix_cache"
            | "/v1/completions"
            | "/v1/chat/completions",
        ) => write_response(stream, 405, json, br#"{"detail":"Method Not Allowed"}"#).await?,
        _ => write_response(stream, 404, json, br#"{"detail":"Not Found"}"#).await?,
    }
    Ok(Next::KeepAlive)
}

/// A request checked and counted.
struct Parsed {
    prompt_tokens: u32,
    block_hashes: Arc<[BlockHash]>,
    max_tokens: u32,
    min_tokens: u32,
    ignore_eos: bool,
    stream: bool,
    include_usage: bool,
    continuous_usage: bool,
}

/// The vLLM-style error to answer a request with: status, error type, message.
type Rejection = (u16, &'static str, String);

fn bad_request(message: String) -> Rejection {
    (400, "BadRequestError", message)
}

fn parse(state: &State, api: Api, body: &[u8]) -> Result<Parsed, Rejection> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
    check_supported(state, &v)?;
    let blocks = Blocks {
        size: hash_block_size(state),
        salt: cache_salt(&v)?,
    };
    let prompt = match api {
        Api::Completions => completion_prompt(state, &v, blocks)?,
        Api::Chat => chat_prompt(state, &v, blocks)?,
    };
    let prompt_tokens = prompt.tokens;
    let max_tokens = max_tokens(state.cfg.profile.max_model_len, api, &v, prompt_tokens)?;
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    Ok(Parsed {
        prompt_tokens,
        block_hashes: prompt.block_hashes,
        max_tokens,
        min_tokens: v.get("min_tokens").and_then(Value::as_u64).unwrap_or(0) as u32,
        ignore_eos: flag("ignore_eos"),
        stream: flag("stream"),
        include_usage: v
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        continuous_usage: v
            .pointer("/stream_options/continuous_usage_stats")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The request's `cache_salt`, checked as vLLM 0.32 checks it (`validate_cache_salt` in
/// `entrypoints/generate/base/protocol.py`: non-empty, at most 128 characters, no `@`, `/`,
/// `\` or NUL), with its messages.
fn cache_salt(v: &Value) -> Result<Option<&str>, Rejection> {
    match v.get("cache_salt") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.chars().count() <= 128
                && !s.contains(['@', '/', '\\', '\0']) =>
        {
            Ok(Some(s))
        }
        Some(Value::String(s)) if !s.is_empty() => Err(bad_request(
            "Parameter 'cache_salt' must be at most 128 characters and must not contain '@', '/', '\\\\', or NUL.".into(),
        )),
        Some(_) => Err(bad_request(
            "Parameter 'cache_salt' must be a non-empty string if provided.".into(),
        )),
    }
}

/// The model served, and one choice per request: what the simulator can answer.
fn check_supported(state: &State, v: &Value) -> Result<(), Rejection> {
    if let Some(m) = v.get("model").and_then(Value::as_str)
        && m != state.cfg.model
    {
        return Err((
            404,
            "NotFoundError",
            format!("The model `{m}` does not exist."),
        ));
    }
    if v.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad_request(
            "n > 1 is not supported by the simulator".into(),
        ));
    }
    Ok(())
}

/// Blocks are hashed only when they can be reused.
fn hash_block_size(state: &State) -> u32 {
    let p = &state.cfg.profile;
    if p.enable_prefix_caching {
        p.block_size
    } else {
        0
    }
}

fn completion_prompt(state: &State, v: &Value, bs: Blocks) -> Result<PromptInfo, Rejection> {
    let tok = &state.cfg.tokenizer;
    match v.get("prompt") {
        Some(Value::String(s)) => Ok(state.prompt_cache.info(tok, s, bs)),
        Some(Value::Array(a)) if a.iter().all(Value::is_u64) && !a.is_empty() => {
            let ids: Vec<u32> = a
                .iter()
                .map(|x| x.as_u64().unwrap_or(0).min(u32::MAX as u64) as u32)
                .collect();
            Ok(of_ids(&ids, bs))
        }
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            Ok(state
                .prompt_cache
                .info(tok, a[0].as_str().unwrap_or(""), bs))
        }
        Some(_) => Err(bad_request(
            "`prompt` must be a string, one string in a list, or a list of token ids".into(),
        )),
        None => Err(bad_request(
            "[{'type': 'missing', 'loc': ('body', 'prompt'), 'msg': 'Field required'}]".into(),
        )),
    }
}

fn chat_prompt(state: &State, v: &Value, blocks: Blocks) -> Result<PromptInfo, Rejection> {
    let Some(msgs) = v.get("messages").and_then(Value::as_array) else {
        return Err(bad_request(
            "[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required'}]".into(),
        ));
    };
    Ok(state
        .prompt_cache
        .info(&state.cfg.tokenizer, &render_chat(msgs), blocks))
}

/// A minimal chat template: `<|role|>\ncontent\n` per message, then the assistant tag.
fn render_chat(msgs: &[Value]) -> String {
    render_messages(msgs.iter().map(|m| {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        };
        (role, content)
    }))
}

/// What this server's chat template makes of a conversation: `history` (the user's and
/// the assistant's messages in turn) and then the user's `text`. The virtual-time client
/// hashes it to find the prefixes this server would find in its cache.
pub fn render_conversation(history: &[String], text: &str) -> String {
    let roles = ["user", "assistant"].into_iter().cycle();
    render_messages(
        history
            .iter()
            .zip(roles)
            .map(|(m, role)| (role, m.clone()))
            .chain([("user", text.to_string())]),
    )
}

fn render_messages<'a>(msgs: impl Iterator<Item = (&'a str, String)>) -> String {
    let mut rendered = String::new();
    for (role, content) in msgs {
        rendered.push_str(&format!("<|{role}|>\n{content}\n"));
    }
    rendered.push_str("<|assistant|>\n");
    rendered
}

/// The output budget asked for (or vLLM's default), checked against the context length
/// together with the prompt.
fn max_tokens(
    max_model_len: u32,
    api: Api,
    v: &Value,
    prompt_tokens: u32,
) -> Result<u32, Rejection> {
    if let Some(why) = context_refusal(max_model_len, prompt_tokens, None) {
        return Err(bad_request(why));
    }
    let requested = v
        .get("max_completion_tokens")
        .or_else(|| v.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|x| x as u32);
    let max_tokens = match (api, requested) {
        (_, Some(0)) => return Err(bad_request("max_tokens must be at least 1, got 0.".into())),
        (_, Some(n)) => n,
        (Api::Completions, None) => 16,
        (Api::Chat, None) => max_model_len - prompt_tokens,
    };
    if let Some(why) = context_refusal(max_model_len, prompt_tokens, Some(max_tokens)) {
        return Err(bad_request(why));
    }
    Ok(max_tokens)
}

/// vLLM's 400 message for a request that does not fit the context of `max_model_len`
/// tokens: its prompt alone (`max_tokens` not yet known: `None`), or its prompt with its
/// output budget. `None`: it fits. The one home of the rule, for the server over HTTP and
/// for requests in virtual time.
pub fn context_refusal(
    max_model_len: u32,
    prompt_tokens: u32,
    max_tokens: Option<u32>,
) -> Option<String> {
    if prompt_tokens >= max_model_len {
        return Some(format!(
            "This model's maximum context length is {max_model_len} tokens. However, your request has {prompt_tokens} input tokens."
        ));
    }
    let max_tokens = max_tokens?;
    let total = u64::from(prompt_tokens) + u64::from(max_tokens);
    (total > u64::from(max_model_len)).then(|| {
        format!(
            "This model's maximum context length is {max_model_len} tokens. However, you requested {max_tokens} output tokens and your prompt contains {prompt_tokens} tokens, for a total of {total} tokens."
        )
    })
}

async fn write_error(
    stream: &mut impl Io,
    status: u16,
    kind: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = wire::error_body(status, kind, message, None);
    write_response(stream, status, "application/json", &body).await
}

async fn generate(
    stream: &mut impl Io,
    state: &State,
    api: Api,
    body: &[u8],
    pinned: Option<usize>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Next> {
    let arrival_ns = state.clock.now_ns();
    let p = match parse(state, api, body) {
        Ok(p) => p,
        Err((status, kind, msg)) => {
            write_error(stream, status, kind, &msg).await?;
            return Ok(Next::KeepAlive);
        }
    };
    let fault = state.cfg.faults.draw();
    if let Some(next) = fault_before_engine(stream, fault, shutdown).await? {
        return Ok(next);
    }
    pass_front_end(state, arrival_ns, &p).await;
    let admitted = admit(state, api, arrival_ns, pinned, &p);
    if p.stream {
        let head = wire::response_head(200, "text/event-stream; charset=utf-8", None);
        send(stream, &head).await?;
    }
    // the engine thread writes a plain stream's chunks itself; TLS goes through this task
    let direct =
        stream.is_plain() && !matches!(fault, Some(Fault::DropMidstream | Fault::Malformed));
    if p.stream && direct {
        return stream_direct(stream, state, api, admitted, &p, shutdown).await;
    }
    let Admitted {
        rank,
        req,
        sid,
        created,
    } = admitted;
    let (tx, rx) = mpsc::unbounded_channel::<TokenOut>();
    let request_id = req.id;
    let output = state.engines[rank].submit(req, p.min_tokens, p.ignore_eos, Consumer::channel(tx));
    let answer = ChannelAnswer {
        s: Stream {
            api,
            id: &sid,
            created,
            model: &state.cfg.model,
        },
        request_id,
        p: &p,
        output,
        rx,
    };
    if !p.stream {
        return answer.whole(stream, shutdown).await;
    }
    answer.stream_with_fault(stream, fault, shutdown).await
}

/// Answer the faults that strike before the engine sees the request; `None`: go on.
async fn fault_before_engine(
    stream: &mut impl Io,
    fault: Option<Fault>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Option<Next>> {
    match fault {
        Some(Fault::Refuse) => {
            reset(stream);
            Ok(Some(Next::Close))
        }
        Some(f @ (Fault::Http500 | Fault::Http429 | Fault::Http503)) => {
            let (status, kind, msg) = match f {
                Fault::Http500 => (
                    500,
                    "InternalServerError",
                    "simulated internal server error",
                ),
                Fault::Http429 => (
                    429,
                    "RateLimitError",
                    "simulated rate limit: too many requests",
                ),
                _ => (
                    503,
                    "ServiceUnavailableError",
                    "simulated overload: service unavailable",
                ),
            };
            write_error(stream, status, kind, msg).await?;
            Ok(Some(Next::KeepAlive))
        }
        Some(Fault::Stall) => {
            stall(stream, shutdown).await;
            Ok(Some(Next::Close))
        }
        _ => Ok(None),
    }
}

/// Say nothing until the client gives up (EOF) or the server stops.
async fn stall(stream: &mut impl Io, shutdown: &mut watch::Receiver<bool>) {
    let mut tmp = [0u8; 1024];
    loop {
        tokio::select! {
            r = stream.read(&mut tmp) => if matches!(r, Ok(0) | Err(_)) { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The front end's fixed latency, then (optionally) the API-server CPU queue.
async fn pass_front_end(state: &State, arrival_ns: u64, p: &Parsed) {
    let fe_ns = (state.cfg.profile.front_end_latency_s * 1e9) as u64;
    let mut ready_ns = arrival_ns + fe_ns;
    if let Some(front) = &state.front {
        ready_ns = front
            .lock()
            .expect("front end")
            .admit(ready_ns, p.prompt_tokens, p.max_tokens);
    }
    let wait = ready_ns.saturating_sub(state.clock.now_ns());
    if wait > 0 {
        tokio::time::sleep(Duration::from_nanos(wait)).await;
    }
}

/// A request routed to an engine, with the id and timestamp its response carries.
struct Admitted {
    rank: usize,
    req: EngineRequest,
    sid: String,
    created: u64,
}

fn admit(state: &State, api: Api, arrival_ns: u64, pinned: Option<usize>, p: &Parsed) -> Admitted {
    let rank = {
        let mut router = state.router.lock().expect("router");
        router.route(state.clock.now_ns(), pinned, |e| state.engines[e].load())
    };
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let req = EngineRequest {
        id,
        prompt_tokens: p.prompt_tokens,
        output_tokens: p.max_tokens,
        max_tokens: p.max_tokens,
        arrival_ns,
        block_hashes: p.block_hashes.clone(),
    };
    let sid = format!(
        "{}-{:016x}",
        if api == Api::Chat { "chatcmpl" } else { "cmpl" },
        loadtest_base::rng::Rng::derive(state.cfg.seed, id).next_u64()
    );
    Admitted {
        rank,
        req,
        sid,
        created: loadtest_base::time::unix_now(),
    }
}

/// The common case of a stream: the engine thread writes the chunks (see `direct`); this
/// task waits for the end and writes what the socket did not take yet.
async fn stream_direct(
    stream: &mut impl Io,
    state: &State,
    api: Api,
    admitted: Admitted,
    p: &Parsed,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Next> {
    let sock = std::net::TcpStream::from(stream.tcp().as_fd().try_clone_to_owned()?);
    let (done_tx, done_rx) = oneshot::channel();
    let spec = DirectSpec {
        api,
        sse_id: admitted.sid,
        created: admitted.created,
        model: state.model.clone(),
        request_id: admitted.req.id,
        prompt_tokens: p.prompt_tokens,
        include_usage: p.include_usage,
        continuous_usage: p.continuous_usage,
    };
    let to = Consumer::direct(DirectStream::new(sock, spec, done_tx));
    state.engines[admitted.rank].submit(admitted.req, p.min_tokens, p.ignore_eos, to);
    match tokio::select! {
        end = done_rx => end.ok(),
        _ = shutdown.wait_for(|s| *s) => None,
    } {
        Some(End::Finished(rest)) => {
            send(stream, &rest).await?;
            Ok(Next::KeepAlive)
        }
        Some(End::Gone) | None => Ok(Next::Close),
    }
}

/// A request whose tokens come back over a channel for this task to write: a response
/// without streaming, or a stream with a mid-stream fault.
struct ChannelAnswer<'a> {
    s: Stream<'a>,
    request_id: u64,
    p: &'a Parsed,
    /// Output length the engine drew.
    output: u32,
    rx: mpsc::UnboundedReceiver<TokenOut>,
}

impl ChannelAnswer<'_> {
    /// The whole completion in one JSON body.
    async fn whole(
        mut self,
        stream: &mut impl Io,
        shutdown: &mut watch::Receiver<bool>,
    ) -> std::io::Result<Next> {
        let mut text = String::new();
        let mut finish = "length";
        while let Some(t) = recv(&mut self.rx, shutdown).await {
            text.push_str(wire::token_text(self.request_id, t.index));
            if let Some(f) = t.finish {
                finish = f;
                break;
            }
        }
        let body = self
            .s
            .full_body(&text, finish, self.p.prompt_tokens, self.output);
        write_response(stream, 200, "application/json", &body).await?;
        Ok(Next::KeepAlive)
    }

    /// Stream the chunks, with `fault` striking halfway through the output.
    async fn stream_with_fault(
        mut self,
        stream: &mut impl Io,
        fault: Option<Fault>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> std::io::Result<Next> {
        let (s, p, id, output) = (&self.s, self.p, self.request_id, self.output);
        let cut = (output / 2).max(1);
        let running = p.continuous_usage.then_some(p.prompt_tokens);
        let mut out = Vec::with_capacity(4096);
        let mut finished = false;
        while let Some(first) = recv(&mut self.rx, shutdown).await {
            out.clear();
            let mut next = Some(first);
            while let Some(t) = next {
                if s.api == Api::Chat && t.index == 0 {
                    s.role_chunk_counted(&mut out, running);
                }
                if t.index == cut && fault == Some(Fault::DropMidstream) {
                    send(stream, &out).await?;
                    reset(stream);
                    return Ok(Next::Close);
                }
                if t.index == cut && fault == Some(Fault::Malformed) {
                    s.malformed_chunk(&mut out);
                }
                s.token_chunk_counted(
                    &mut out,
                    wire::token_text(id, t.index),
                    t.finish,
                    running.map(|prompt| (prompt, t.index + 1)),
                );
                if t.finish.is_some() {
                    finished = true;
                    break;
                }
                next = self.rx.try_recv().ok();
            }
            if finished {
                if p.include_usage {
                    s.usage_chunk(&mut out, p.prompt_tokens, output);
                }
                Stream::done(&mut out);
            }
            send(stream, &out).await?;
            if finished {
                return Ok(Next::KeepAlive);
            }
        }
        // shutdown while streaming
        Ok(Next::Close)
    }
}

async fn recv(
    rx: &mut mpsc::UnboundedReceiver<TokenOut>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<TokenOut> {
    tokio::select! {
        t = rx.recv() => t,
        _ = shutdown.wait_for(|s| *s) => None,
    }
}

/// Make the coming close an RST (SO_LINGER 0), as a crashed or refusing server looks. The
/// deprecation warns that lingering blocks on drop; with a zero timeout nothing waits.
#[allow(deprecated)]
fn reset(stream: &impl Io) {
    let _ = stream.tcp().set_linger(Some(Duration::ZERO));
}
