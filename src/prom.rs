//! A reader for the Prometheus text exposition format (what `/metrics` returns): family
//! types from `# TYPE`, and samples with their labels. Pure; used to check the simulator
//! against real vLLM output and to turn scraped metrics into series.

use loadtest_analysis::server_metrics::MetricRow;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// family name → type (`counter`, `gauge`, `histogram`, …)
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Samples of one metric name whose labels include all of `with`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

/// One exposition as the rows a scrape at `t_ns` stores: vLLM's families (`vllm:…`, not
/// their `_created` series), the `engine` label apart, the others as `k=v,…` sorted by name.
pub fn rows_from(text: &str, t_ns: u64, endpoint: u32) -> Result<Vec<MetricRow>, String> {
    let e = parse(text)?;
    Ok(e.samples
        .into_iter()
        .filter(|s| s.name.starts_with("vllm:") && !s.name.ends_with("_created"))
        .map(|mut s| {
            let engine = s.labels.remove("engine");
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            MetricRow {
                t_ns,
                endpoint,
                name: s.name,
                engine,
                labels,
                value: s.value,
            }
        })
        .collect())
}

/// Parse the text format. `Err` names the first bad line (1-based) and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.split_whitespace();
            if parts.next() == Some("TYPE") {
                let (Some(name), Some(ty)) = (parts.next(), parts.next()) else {
                    return Err(format!("line {}: malformed TYPE", i + 1));
                };
                out.types.insert(name.to_string(), ty.to_string());
            }
            continue;
        }
        out.samples
            .push(sample(line).map_err(|e| format!("line {}: {e}: `{line}`", i + 1))?);
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, String> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => (&line[..i], &line[i..]),
        None => return Err("no value".into()),
    };
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut labels = BTreeMap::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            // key
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((j, '}')) => {
                    end = Some(*j);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label `{key}` value not quoted"));
            }
            let mut val = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => val.push('\n'),
                        Some((_, c)) => val.push(c),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => val.push(c),
                }
            }
            if !closed {
                return Err("unterminated label value".into());
            }
            labels.insert(key.trim().to_string(), val);
        }
        let end = end.ok_or("unterminated label set")?;
        &body[end + 1..]
    } else {
        rest
    };
    let value_str = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_str {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value `{v}`"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_vllm_metrics() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vllm/metrics-dp2.txt"
        ))
        .unwrap();
        let e = parse(&text).unwrap();
        assert_eq!(
            e.types.get("vllm:num_requests_running").map(String::as_str),
            Some("gauge")
        );
        assert_eq!(e.find("vllm:num_requests_running", &[]).count(), 2);
        assert_eq!(
            e.find("vllm:num_requests_running", &[("engine", "1")])
                .count(),
            1
        );
        let inf = e
            .find(
                "vllm:time_to_first_token_seconds_bucket",
                &[("engine", "0"), ("le", "+Inf")],
            )
            .next()
            .unwrap();
        assert!(inf.value >= 0.0);
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        assert!(parse("a 1\nb{x=1} 2\n").unwrap_err().starts_with("line 2"));
        assert!(parse("a notanumber").is_err());
    }
}
