//! What a server says about itself before it is probed: its version (`/version`), its
//! model and context length (`/v1/models`), and from `/metrics` the KV cache's blocks and
//! block size, whether it caches prefixes, and how many engines stand behind the port.
//! vLLM does not expose `max_num_seqs` or the batched-token budget; the fit says so.

use crate::client::get;
use crate::client::server::Server;
use crate::prom;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerFacts {
    pub url: String,
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub max_model_len: Option<u32>,
    /// Of one engine (a data-parallel rank): the simulator's profile is one rank's.
    #[serde(default)]
    pub num_gpu_blocks: Option<u32>,
    #[serde(default)]
    pub block_size: Option<u32>,
    #[serde(default)]
    pub enable_prefix_caching: Option<bool>,
    /// Engines `/metrics` labels (`engine="…"`); 0 when it has no vLLM families.
    #[serde(default)]
    pub engines: usize,
    pub read_at: String,
}

/// The cache facts of a `/metrics` text: `vllm:cache_config_info` of the first engine,
/// and the number of distinct engines.
pub fn apply_metrics(facts: &mut ServerFacts, text: &str) {
    let Ok(expo) = prom::parse(text) else {
        return;
    };
    let mut engines: Vec<&str> = expo
        .samples
        .iter()
        .filter(|s| s.name.starts_with("vllm:"))
        .filter_map(|s| s.labels.get("engine").map(String::as_str))
        .collect();
    engines.sort_unstable();
    engines.dedup();
    facts.engines = engines.len();
    let Some(info) = expo.find("vllm:cache_config_info", &[]).min_by(|a, b| {
        let e = |s: &prom::Sample| s.labels.get("engine").cloned().unwrap_or_default();
        e(a).cmp(&e(b))
    }) else {
        return;
    };
    let num = |k: &str| info.labels.get(k).and_then(|v| v.parse::<u32>().ok());
    facts.num_gpu_blocks = num("num_gpu_blocks");
    facts.block_size = num("block_size");
    facts.enable_prefix_caching = info.labels.get("enable_prefix_caching").and_then(|v| {
        match v.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    });
}

/// `max_model_len` of `model` in a `/v1/models` answer (vLLM lists it per model).
pub fn max_model_len(models: &serde_json::Value, model: &str) -> Option<u32> {
    models["data"]
        .as_array()?
        .iter()
        .find(|m| m["id"].as_str() == Some(model))?["max_model_len"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
}

/// Read what the server exposes; a missing endpoint leaves its facts unknown (the fit
/// says which limits were assumed), it is not an error.
pub async fn read(server: &Server, model: &str) -> ServerFacts {
    let t = Duration::from_secs(10);
    let mut facts = ServerFacts {
        url: server.url.to_string(),
        model: model.to_string(),
        read_at: loadtest_base::time::rfc3339(loadtest_base::time::unix_now()),
        ..ServerFacts::default()
    };
    let get = |path: &'static str| async move {
        match get::request(server, "GET", &server.url.path(path), None, t).await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    };
    let (version, is_vllm) = get::server_version(server).await;
    facts.version = is_vllm.then_some(version);
    if let Some(v) = get("/v1/models")
        .await
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    {
        facts.max_model_len = max_model_len(&v, model);
    }
    if let Some(b) = get("/metrics").await {
        apply_metrics(&mut facts, &String::from_utf8_lossy(&b));
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = format!("{}/tests/fixtures/vllm/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn real_vllm_metrics_give_the_cache_and_the_engines() {
        for (file, engines, blocks) in [("metrics.txt", 1, 4096), ("metrics-dp2.txt", 2, 8192)] {
            let mut f = ServerFacts::default();
            apply_metrics(&mut f, &fixture(file));
            assert_eq!(f.engines, engines, "{file}");
            assert_eq!(f.block_size, Some(128), "{file}");
            assert_eq!(f.num_gpu_blocks, Some(blocks), "{file}");
            assert_eq!(f.enable_prefix_caching, Some(true), "{file}");
        }
    }

    #[test]
    fn a_server_without_vllm_metrics_leaves_the_facts_unknown() {
        let mut f = ServerFacts::default();
        apply_metrics(&mut f, "# TYPE up gauge\nup 1\n");
        assert_eq!((f.engines, f.num_gpu_blocks, f.block_size), (0, None, None));
        apply_metrics(&mut f, "not prometheus {{{");
        assert_eq!(f.enable_prefix_caching, None);
    }

    #[test]
    fn max_model_len_is_read_for_the_served_model() {
        let v = serde_json::json!({"data": [
            {"id": "a", "max_model_len": 4096},
            {"id": "tiny-llama", "max_model_len": 2048}
        ]});
        assert_eq!(max_model_len(&v, "tiny-llama"), Some(2048));
        assert_eq!(max_model_len(&v, "other"), None);
    }
}
