//! `server_metrics.parquet`: the scraped `/metrics` rows of a cell, one row per sample, and
//! the same rows read back for the aggregate stage and the report. Its columns: `t_ns`
//! (from the cell's clock zero), `at` (`TIMESTAMP(NANOS, UTC)`), `endpoint`, `metric`,
//! `engine` (vLLM's DP rank label), then one text column per other Prometheus label the
//! cell saw (`model_name`, `finished_reason`, `le`, …; null where a series has no such
//! label), then `value`. A label whose name is one of those fixed columns is stored as
//! `label_<name>`.

use super::parquet::{Column, Table};
use anyhow::{Result, bail};
use loadtest_analysis::server_metrics::MetricRow;
use std::collections::BTreeMap;
use std::path::Path;

const FIXED: [&str; 6] = ["t_ns", "at", "endpoint", "metric", "engine", "value"];
const LABEL_PREFIX: &str = "label_";

/// A row's other labels (`k=v,k=v`, as `MetricRow` keeps them) as pairs. A value may
/// itself hold a comma: a piece that does not start with `name=` belongs to the value
/// before it.
fn label_pairs(labels: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    if labels.is_empty() {
        return out;
    }
    for piece in labels.split(',') {
        let named = piece.split_once('=').filter(|(k, _)| {
            let mut c = k.chars();
            c.next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        });
        match (named, out.last_mut()) {
            (Some((k, v)), _) => out.push((k, v.to_string())),
            (None, Some((_, v))) => {
                v.push(',');
                v.push_str(piece);
            }
            (None, None) => out.push(("label", piece.to_string())),
        }
    }
    out
}

fn column_name(label: &str) -> String {
    if FIXED.contains(&label) || label.starts_with(LABEL_PREFIX) {
        format!("{LABEL_PREFIX}{label}")
    } else {
        label.to_string()
    }
}

/// The rows as a table; `clock_zero_unix_ns` places them on the wall clock.
pub fn table(rows: &[MetricRow], clock_zero_unix_ns: i64) -> Table {
    let pairs: Vec<Vec<(&str, String)>> = rows.iter().map(|r| label_pairs(&r.labels)).collect();
    let mut labels: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    for p in &pairs {
        for (k, _) in p {
            labels.entry(k).or_default();
        }
    }
    for p in pairs {
        for (k, col) in labels.iter_mut() {
            col.push(p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        }
    }
    let mut t = Table::default();
    t.push(
        "t_ns",
        Column::I64(rows.iter().map(|r| Some(r.t_ns as i64)).collect()),
    );
    t.push(
        "at",
        Column::Timestamp(
            rows.iter()
                .map(|r| Some(clock_zero_unix_ns + r.t_ns as i64))
                .collect(),
        ),
    );
    t.push(
        "endpoint",
        Column::I64(rows.iter().map(|r| Some(i64::from(r.endpoint))).collect()),
    );
    t.push(
        "metric",
        Column::Str(rows.iter().map(|r| Some(r.name.clone())).collect()),
    );
    t.push(
        "engine",
        Column::Str(rows.iter().map(|r| r.engine.clone()).collect()),
    );
    for (k, col) in labels {
        t.push(&column_name(k), Column::Str(col));
    }
    t.push(
        "value",
        Column::F64(rows.iter().map(|r| Some(r.value)).collect()),
    );
    t
}

/// The rows of a `server_metrics.parquet`, labels back in `MetricRow`'s `k=v,…` form
/// (sorted by name).
pub fn read(path: &Path) -> Result<Vec<MetricRow>> {
    let t = super::parquet::read(path)?;
    let need = |name: &str| match t.column(name) {
        Some(c) => Ok(c),
        None => bail!("`{}` has no column `{name}`", path.display()),
    };
    let (t_ns, endpoint, metric, value) = (
        need("t_ns")?,
        need("endpoint")?,
        need("metric")?,
        need("value")?,
    );
    let engine = t.column("engine");
    let mut labels: Vec<(String, &Column)> = t
        .columns
        .iter()
        .filter(|(n, c)| !FIXED.contains(&n.as_str()) && matches!(c, Column::Str(_)))
        .map(|(n, c)| (n.strip_prefix(LABEL_PREFIX).unwrap_or(n).to_string(), c))
        .collect();
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((0..t.rows())
        .map(|i| MetricRow {
            t_ns: t_ns.i64_at(i).unwrap_or(0) as u64,
            endpoint: endpoint.i64_at(i).unwrap_or(0) as u32,
            name: metric.str_at(i).unwrap_or_default().to_string(),
            engine: engine.and_then(|c| c.str_at(i)).map(str::to_string),
            labels: labels
                .iter()
                .filter_map(|(k, c)| c.str_at(i).map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(","),
            value: value.f64_at(i).unwrap_or(f64::NAN),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, engine: Option<&str>, labels: &str, v: f64) -> MetricRow {
        MetricRow {
            t_ns: 5,
            endpoint: 1,
            name: name.into(),
            engine: engine.map(Into::into),
            labels: labels.into(),
            value: v,
        }
    }

    #[test]
    fn labels_become_columns_and_read_back_as_written() {
        let rows = vec![
            row("vllm:num_requests_waiting", Some("0"), "model_name=m", 3.0),
            row(
                "vllm:e2e_request_latency_seconds_bucket",
                Some("1"),
                "le=0.5,model_name=m",
                7.0,
            ),
            row(
                "vllm:request_success_total",
                None,
                "finished_reason=length,metric=odd,model_name=a,b",
                9.0,
            ),
        ];
        let t = table(&rows, 1_000);
        let names: Vec<&str> = t.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "t_ns",
                "at",
                "endpoint",
                "metric",
                "engine",
                "finished_reason",
                "le",
                "label_metric",
                "model_name",
                "value"
            ]
        );
        assert_eq!(t.column("at").unwrap().i64_at(0), Some(1_005));
        assert_eq!(t.column("le").unwrap().str_at(0), None);
        assert_eq!(t.column("model_name").unwrap().str_at(2), Some("a,b"));
        let dir = std::env::temp_dir().join(format!("metrics-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("server_metrics.parquet");
        super::super::parquet::write(&p, &t).unwrap();
        assert_eq!(read(&p).unwrap(), rows);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
