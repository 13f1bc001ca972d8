//! GPU samples from `nvidia-smi --query-gpu=… --format=csv -lms …` when the command exists.
//! No `nvidia-smi` (or one that fails) is recorded as absent, never as an error of the run.

use crate::store::parquet::{Column, Table};
use loadtest_base::clock::Clock;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

const QUERY: &str = "index,utilization.gpu,memory.used,memory.total,power.draw";

#[derive(Debug, Clone, PartialEq)]
pub struct GpuRow {
    pub t_ns: u64,
    pub gpu: i64,
    pub util_pct: Option<f64>,
    pub mem_used_mib: Option<f64>,
    pub mem_total_mib: Option<f64>,
    pub power_w: Option<f64>,
}

#[derive(Debug, Default)]
pub struct GpuSamples {
    /// `None`: no usable `nvidia-smi` here.
    pub rows: Option<Vec<GpuRow>>,
    pub note: Option<String>,
}

/// One CSV line (`0, 45, 1024, 81920, 250.3`); `[N/A]` fields are absent.
pub fn parse_line(line: &str, t_ns: u64) -> Option<GpuRow> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() < 5 {
        return None;
    }
    let num = |s: &str| s.parse::<f64>().ok();
    Some(GpuRow {
        t_ns,
        gpu: f[0].parse().ok()?,
        util_pct: num(f[1]),
        mem_used_mib: num(f[2]),
        mem_total_mib: num(f[3]),
        power_w: num(f[4]),
    })
}

/// Sample until `stop`; the child is killed when sampling ends.
pub async fn sample(
    interval: Duration,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> GpuSamples {
    let child = tokio::process::Command::new("nvidia-smi")
        .arg(format!("--query-gpu={QUERY}"))
        .arg("--format=csv,noheader,nounits")
        .arg(format!("-lms={}", interval.as_millis().max(100)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return GpuSamples {
                rows: None,
                note: Some(format!("no nvidia-smi: {e}")),
            };
        }
    };
    let Some(out) = child.stdout.take() else {
        return GpuSamples::default();
    };
    let mut lines = BufReader::new(out).lines();
    let mut rows = Vec::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            l = lines.next_line() => match l {
                Ok(Some(l)) => rows.extend(parse_line(&l, clock.now_ns())),
                _ => break,
            },
        }
    }
    let _ = child.kill().await;
    if rows.is_empty() {
        let status = child.wait().await.ok();
        return GpuSamples {
            rows: None,
            note: Some(format!("nvidia-smi gave no samples (exit {status:?})")),
        };
    }
    GpuSamples {
        rows: Some(rows),
        note: None,
    }
}

/// `gpu.parquet`: `clock_zero_unix_ns` places the samples on the wall clock (`at`).
pub fn table(rows: &[GpuRow], clock_zero_unix_ns: i64) -> Table {
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
        "gpu",
        Column::I64(rows.iter().map(|r| Some(r.gpu)).collect()),
    );
    t.push(
        "util_pct",
        Column::F64(rows.iter().map(|r| r.util_pct).collect()),
    );
    t.push(
        "mem_used_mib",
        Column::F64(rows.iter().map(|r| r.mem_used_mib).collect()),
    );
    t.push(
        "mem_total_mib",
        Column::F64(rows.iter().map(|r| r.mem_total_mib).collect()),
    );
    t.push(
        "power_w",
        Column::F64(rows.iter().map(|r| r.power_w).collect()),
    );
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_csv_and_na() {
        let r = super::parse_line("1, 87, 40000, 81920, [N/A]", 3).unwrap();
        assert_eq!((r.gpu, r.util_pct, r.power_w), (1, Some(87.0), None));
        assert!(super::parse_line("garbage", 0).is_none());
    }
}
