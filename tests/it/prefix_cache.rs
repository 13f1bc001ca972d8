//! Known truth for prefix caching: `prefix_repetition` prompts sent over HTTP to the
//! simulator give exactly the hit rate its closed form predicts, read back from vLLM's
//! `prefix_cache_*` counters the way the monitor and the analysis read a real server's.

use crate::support::*;
use loadtest_base::Tokenizer;
use std::sync::Arc;
use std::time::Duration;
use vllm_loadtest::client::get;
use vllm_sim::background::start_with;
use vllm_sim::faults::Faults;
use vllm_sim::prefix_cache::closed_form_counters;
use vllm_sim::{Profile, SimConfig};

/// 3 groups × 30 prompts of 100 shared + 40 own tokens (built-in tokenizer: no BOS), blocks
/// of 16: every prompt queries 140 tokens, all but each group's first find 6 blocks (96).
const GROUPS: u64 = 3;
const PROMPTS: u64 = 30;
const PREFIX: u64 = 100;
const SUFFIX: u64 = 40;

fn scrape(
    addr: std::net::SocketAddr,
    t_ns: u64,
) -> Vec<loadtest_analysis::server_metrics::MetricRow> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = vllm_loadtest::client::BaseUrl::parse(&format!("http://{addr}")).unwrap();
    let server = vllm_loadtest::client::Access::plain()
        .at(&url, addr)
        .unwrap();
    let (status, body) = rt
        .block_on(get::request(
            &server,
            "GET",
            "/metrics",
            None,
            Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(status, 200);
    vllm_loadtest::prom::rows_from(&String::from_utf8_lossy(&body), t_ns, 0).unwrap()
}

#[test]
fn prefix_groups_over_http_read_back_the_closed_form_hit_rate() {
    let _serial = serial();
    let (queries, hits) = closed_form_counters(GROUPS, PROMPTS, PREFIX, SUFFIX, 16);
    assert_eq!((queries, hits), (4200, 27 * 96));
    for caching in [true, false] {
        let h = start_with(SimConfig {
            profile: Profile {
                enable_prefix_caching: caching,
                ..Profile::default_profile()
            },
            dp: 1,
            seed: 1,
            model: "sim-llama".into(),
            api_servers: None,
            faults: Faults::none(),
            tokenizer: Arc::new(Tokenizer::built_in().unwrap()),
        })
        .unwrap();
        let mut rows = scrape(h.addr(), 1);
        let out = temp_dir("prefix-bench");
        let r = run(&[
            "bench",
            "--base-url",
            &format!("http://{}", h.addr()),
            "--dataset-name",
            "prefix_repetition",
            "--prefix-repetition-prefix-len",
            &PREFIX.to_string(),
            "--prefix-repetition-suffix-len",
            &SUFFIX.to_string(),
            "--prefix-repetition-num-prefixes",
            &GROUPS.to_string(),
            "--prefix-repetition-output-len",
            "4",
            "--num-prompts",
            &PROMPTS.to_string(),
            "--request-rate",
            "40",
            "--output-dir",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_accounted(&out, PROMPTS);
        rows.extend(scrape(h.addr(), 2));
        let s = loadtest_analysis::server_metrics::server_stats(&rows, 0, 3);
        if caching {
            assert_eq!(
                (s.prefix_cache_queries, s.prefix_cache_hits),
                (Some(queries as f64), Some(hits as f64))
            );
            assert_eq!(
                s.prefix_cache_hit_rate(),
                Some(hits as f64 / queries as f64)
            );
        } else {
            // counters exported but flat: the hit rate is unknown, not 0
            assert_eq!(s.prefix_cache_queries, Some(0.0));
            assert_eq!(s.prefix_cache_hit_rate(), None);
        }
        let info = rows
            .iter()
            .find(|r| r.name == "vllm:cache_config_info")
            .unwrap();
        let flag = if caching { "True" } else { "False" };
        assert!(
            info.labels
                .contains(&format!("enable_prefix_caching={flag}")),
            "{}",
            info.labels
        );
    }
}

/// The same truth through `run`: the monitor's scrapes, `summary.json`, `runs.parquet` and
/// the report's table, with prefix caching on and off as a matrix dimension.
#[test]
fn a_run_reports_the_prefix_cache_hit_rate_per_cell() {
    let _serial = serial();
    let root = temp_dir("prefix-run");
    let file = root.join("prefix.yaml");
    std::fs::write(
        &file,
        format!(
            "name: prefix\n\
             server:\n  reset_prefix_cache: true\n\
             workload:\n  dataset: prefix_repetition\n  prefix_len: {PREFIX}\n  suffix_len: {SUFFIX}\n  num_prefixes: {GROUPS}\n  output_len: 4\n  num_prompts: {PROMPTS}\n\
             load:\n  request_rate: 40\n\
             monitor:\n  metrics_interval_s: 0.2\n\
             matrix:\n  enable_prefix_caching: [true, false]\n"
        ),
    )
    .unwrap();
    let out = root.join("results");
    let r = run(&[
        "run",
        file.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let dir = only_entry(out.join("prefix"));
    let (queries, hits) = closed_form_counters(GROUPS, PROMPTS, PREFIX, SUFFIX, 16);
    let rate = hits as f64 / queries as f64;
    let on = summary(&dir.join("cells/c000-enable_prefix_cachingtrue"));
    let pc = &on["vllm_loadtest"]["monitors"]["prefix_cache"];
    assert_eq!(pc["queries_tokens"].as_f64(), Some(queries as f64), "{pc}");
    assert_eq!(pc["hits_tokens"].as_f64(), Some(hits as f64), "{pc}");
    assert_eq!(pc["hit_rate"].as_f64(), Some(rate));
    let off = summary(&dir.join("cells/c001-enable_prefix_cachingfalse"));
    assert!(off["vllm_loadtest"]["monitors"]["prefix_cache"]["hit_rate"].is_null());
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("prefix cache hits"), "{md}");
    assert!(md.contains(&format!("| {:.1}% |", rate * 100.0)), "{md}");
    if let Some(p) = crate::parquet_readers::python_json(
        "import sys, json, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1] + '/runs.parquet')\n\
         print(json.dumps(t.select(['cell', 'server_prefix_cache_hit_rate']).to_pylist()))",
        &dir,
    ) {
        assert_eq!(
            p[0]["server_prefix_cache_hit_rate"].as_f64(),
            Some(rate),
            "{p}"
        );
        assert!(p[1]["server_prefix_cache_hit_rate"].is_null(), "{p}");
    }
}

/// A matrix sends the same prompts in every cell: on a server that caches prefixes (vLLM V1
/// does by default), a later cell would be served from the blocks an earlier one left and
/// measure a cache its workload never built. Each cell's requests carry a `cache_salt` of
/// their own (`server.cache_salt: auto` on a server answering `/version` as vLLM does), so
/// the second repeat of random prompts finds nothing; with `none` it finds nearly all.
#[test]
fn a_cell_does_not_find_the_prefixes_an_earlier_cell_left() {
    let _serial = serial();
    let root = temp_dir("prefix-salt");
    let file = root.join("salt.yaml");
    std::fs::write(
        &file,
        "name: salt\n\
         workload:\n  input_len: 64\n  output_len: 2\n  num_prompts: 40\n\
         load:\n  request_rate: 40\n\
         monitor:\n  metrics_interval_s: 0.2\n\
         repeats: 2\n",
    )
    .unwrap();
    let hit_rates = |salt: &str| -> (Vec<Option<f64>>, serde_json::Value) {
        let out = root.join(format!("results-{salt}"));
        let r = run(&[
            "run",
            file.to_str().unwrap(),
            "--set",
            &format!("server.cache_salt={salt}"),
            "--output",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let dir = only_entry(out.join("salt"));
        let rates = ["c000-rep0", "c001-rep1"]
            .iter()
            .map(|c| {
                summary(&dir.join("cells").join(c))["vllm_loadtest"]["monitors"]["prefix_cache"]
                    ["hit_rate"]
                    .as_f64()
            })
            .collect();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        (rates, manifest["cache_salted"].clone())
    };
    let (salted, servers) = hit_rates("auto");
    assert_eq!(salted, [Some(0.0), Some(0.0)], "each cell salted apart");
    assert_eq!(servers, serde_json::json!(["server"]));
    let (shared, servers) = hit_rates("none");
    assert_eq!(shared[0], Some(0.0));
    // each 64-token prompt (no BOS with the built-in tokenizer) found again but for the
    // block that holds its last token, which is always computed: 48 of 64
    assert_eq!(shared[1], Some(0.75), "{shared:?}");
    assert_eq!(servers, serde_json::json!([]));
}
