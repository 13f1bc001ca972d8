//! Prompts from local files: ShareGPT's JSON layout and our JSON-lines layout. Errors name
//! the file, the line and the fix.

use super::{Prompt, Workload};
use anyhow::{Context, Result, bail};
use loadtest_base::Tokenizer;
use loadtest_base::rng::Rng;
use serde::Deserialize;
use std::path::Path;

/// The largest dataset file read, unless `VLLM_LOADTEST_MAX_DATASET_BYTES` says otherwise
/// (ShareGPT's usual file is 0.65 GB).
pub const MAX_DATASET_BYTES: u64 = 4 << 30;

pub(super) fn read(path: &Path) -> Result<String> {
    let cannot = || {
        format!(
            "cannot read dataset `{}`\nhint: check `--dataset-path`; datasets are never downloaded, give a local file",
            path.display()
        )
    };
    let meta = std::fs::metadata(path).with_context(cannot)?;
    // `/dev/zero` or a pipe would be read until memory runs out
    if !meta.is_file() {
        bail!(
            "dataset `{}` is not a regular file\nhint: give the path of a ShareGPT JSON or JSON-lines file",
            path.display()
        );
    }
    let limit = std::env::var("VLLM_LOADTEST_MAX_DATASET_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_DATASET_BYTES);
    if meta.len() > limit {
        bail!(
            "dataset `{}` is {:.1} GB, over the {:.1} GB read at most\nhint: raise it with VLLM_LOADTEST_MAX_DATASET_BYTES, or give a smaller file",
            path.display(),
            meta.len() as f64 / 1e9,
            limit as f64 / 1e9
        );
    }
    std::fs::read_to_string(path).with_context(cannot)
}

#[derive(Deserialize)]
struct ShareGptEntry {
    #[serde(default)]
    conversations: Vec<ShareGptTurn>,
}

#[derive(Deserialize)]
struct ShareGptTurn {
    #[serde(default)]
    value: String,
}

/// ShareGPT (`[{"conversations": [{"from": "human", "value": …}, {"from": "gpt", …}]}]`):
/// the first turn is the prompt, the second's token count the output length (unless
/// `output_len` fixes it). Like vLLM: conversations with fewer than two turns are skipped,
/// and so are prompts or completions under 4 tokens and pairs over 1024 / 2048 tokens.
/// Sampled without replacement in a seeded order, cycling if more prompts are asked for.
pub fn sharegpt(
    path: &Path,
    num_prompts: usize,
    output_len: Option<u32>,
    seed: u64,
    tok: &Tokenizer,
) -> Result<Workload> {
    let text = read(path)?;
    let entries: Vec<ShareGptEntry> = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "dataset `{}` line {} column {}: {e}\nhint: a ShareGPT file is a JSON array of objects with a `conversations` list",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let mut order: Vec<usize> = (0..entries.len()).collect();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        let j = rng.range_inclusive(0, i as u64) as usize;
        order.swap(i, j);
    }
    let mut prompts = Vec::new();
    let mut skipped = 0;
    for &i in &order {
        if prompts.len() == num_prompts {
            break;
        }
        let c = &entries[i].conversations;
        if c.len() < 2 {
            skipped += 1;
            continue;
        }
        let input = tok.count_prompt(&c[0].value);
        let completion = tok.encode(&c[1].value).len() as u32;
        let output = output_len.unwrap_or(completion);
        if input < 4
            || (output_len.is_none() && completion < 4)
            || input > 1024
            || input + output > 2048
        {
            skipped += 1;
            continue;
        }
        prompts.push(Prompt {
            text: c[0].value.clone(),
            history: Vec::new(),
            input_tokens: input,
            output_tokens: output.max(1),
        });
    }
    if prompts.is_empty() {
        bail!(
            "dataset `{}` has no usable conversation ({} entries, {skipped} skipped)\nhint: each entry needs at least two turns of 4+ tokens",
            path.display(),
            entries.len()
        );
    }
    let mut notes = vec![format!(
        "sharegpt: {} prompts from {} entries ({skipped} skipped by vLLM's length filters)",
        prompts.len(),
        entries.len()
    )];
    cycle_to(&mut prompts, num_prompts, &mut notes);
    Ok(Workload { prompts, notes })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlLine {
    prompt: String,
    #[serde(default)]
    output_len: Option<u32>,
}

/// JSON lines: `{"prompt": "…", "output_len": 128}` per line (`output_len` optional, else
/// `default_output_len`). Blank lines are skipped; any other bad line is an error naming it.
pub fn jsonl(
    path: &Path,
    num_prompts: usize,
    default_output_len: u32,
    tok: &Tokenizer,
) -> Result<Workload> {
    let text = read(path)?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: JsonlLine = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "dataset `{}` line {}: {e}\nhint: each line must be a JSON object like {{\"prompt\": \"…\", \"output_len\": 128}}",
                path.display(),
                i + 1
            )
        })?;
        if l.output_len == Some(0) {
            bail!(
                "dataset `{}` line {}: `output_len` is 0\nhint: ask for at least one token, or leave it out to use `--random-output-len`",
                path.display(),
                i + 1
            );
        }
        prompts.push(Prompt {
            input_tokens: tok.count_prompt(&l.prompt),
            text: l.prompt,
            history: Vec::new(),
            output_tokens: l.output_len.unwrap_or(default_output_len),
        });
        if prompts.len() == num_prompts {
            break;
        }
    }
    if prompts.is_empty() {
        bail!(
            "dataset `{}` has no prompts\nhint: one JSON object per line",
            path.display()
        );
    }
    let mut notes = Vec::new();
    cycle_to(&mut prompts, num_prompts, &mut notes);
    Ok(Workload { prompts, notes })
}

fn cycle_to(prompts: &mut Vec<Prompt>, n: usize, notes: &mut Vec<String>) {
    let have = prompts.len();
    if have < n {
        notes.push(format!(
            "only {have} distinct prompts for {n} requests: reused in order"
        ));
        for i in have..n {
            let p = prompts[i % have].clone();
            prompts.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, content: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vlt-files-{}-{name}", std::process::id()));
        std::fs::write(&dir, content).unwrap();
        dir
    }

    #[test]
    fn jsonl_reads_prompts_and_names_the_bad_line() {
        let tok = Tokenizer::built_in().unwrap();
        let p = tmp(
            "ok.jsonl",
            "{\"prompt\": \"hello world\", \"output_len\": 7}\n\n{\"prompt\": \"x y z\"}\n",
        );
        let w = jsonl(&p, 10, 33, &tok).unwrap();
        assert_eq!(w.prompts.len(), 10);
        assert_eq!(w.prompts[0].output_tokens, 7);
        assert_eq!(w.prompts[1].output_tokens, 33);
        assert_eq!(w.prompts[0].input_tokens, 2);
        let bad = tmp("bad.jsonl", "{\"prompt\": \"a\"}\n{\"promt\": \"b\"}\n");
        let e = format!("{:#}", jsonl(&bad, 10, 1, &tok).unwrap_err());
        assert!(e.contains("line 2") && e.contains("promt"), "{e}");
        let e = format!(
            "{:#}",
            jsonl(Path::new("/nonexistent/x.jsonl"), 1, 1, &tok).unwrap_err()
        );
        assert!(
            e.contains("/nonexistent/x.jsonl") && e.contains("hint"),
            "{e}"
        );
    }

    /// `--dataset-path /dev/zero` read until the OOM killer came (issue 13, case 5).
    #[test]
    fn a_device_or_a_pipe_is_not_read_as_a_dataset() {
        let tok = Tokenizer::built_in().unwrap();
        for dev in ["/dev/zero", "/dev/urandom"] {
            let e = format!("{:#}", jsonl(Path::new(dev), 1, 1, &tok).unwrap_err());
            assert!(e.contains("not a regular file") && e.contains(dev), "{e}");
        }
    }

    #[test]
    fn sharegpt_takes_first_two_turns_and_filters_like_vllm() {
        let tok = Tokenizer::built_in().unwrap();
        let long = "word ".repeat(50);
        let data = format!(
            r#"[{{"id":"a","conversations":[{{"from":"human","value":"{long}"}},{{"from":"gpt","value":"{long}"}}]}},
               {{"id":"b","conversations":[{{"from":"human","value":"hi"}},{{"from":"gpt","value":"{long}"}}]}},
               {{"id":"c","conversations":[{{"from":"human","value":"{long}"}}]}}]"#
        );
        let p = tmp("sg.json", &data);
        let w = sharegpt(&p, 1, None, 0, &tok).unwrap();
        assert_eq!(w.prompts.len(), 1);
        let n = tok.count_prompt(&long);
        assert!(n >= 50);
        assert_eq!(w.prompts[0].input_tokens, n);
        assert_eq!(w.prompts[0].output_tokens, n);
        let w = sharegpt(&p, 1, Some(9), 0, &tok).unwrap();
        assert_eq!(w.prompts[0].output_tokens, 9);
    }
}
