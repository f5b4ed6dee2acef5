//! What a run measured and how it is printed: one line of text, or one JSON object per run
//! with `--json`.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{BenchArgs, System, Workload, BATCH_ROWS};

/// What one run measured.
pub(super) struct Report {
    /// Operations that succeeded.
    pub(super) ops: u64,
    /// Operations that failed.
    pub(super) errors: u64,
    /// How long the run took.
    pub(super) elapsed: Duration,
    /// Latency of the successful operations, in microseconds.
    pub(super) hist: Histogram<u64>,
}

pub(super) fn report_json(args: &BenchArgs, r: &Report) -> Value {
    let ms = |q: f64| r.hist.value_at_quantile(q) as f64 / 1000.0;
    let rows = if args.workload == Workload::Batch {
        BATCH_ROWS as u64
    } else {
        1
    };
    json!({
        "system": args.system.name(),
        "workload": format!("{:?}", args.workload),
        "clients": args.clients,
        "value_size": args.value_size,
        "duration_s": r.elapsed.as_secs_f64(),
        "ops": r.ops,
        "errors": r.errors,
        "ops_per_s": r.ops as f64 / r.elapsed.as_secs_f64(),
        "rows_per_s": (r.ops * rows) as f64 / r.elapsed.as_secs_f64(),
        "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
        "max_ms": r.hist.max() as f64 / 1000.0,
    })
}

/// Prints one run: its JSON object with `--json`, one line of text otherwise.
pub(super) fn print_run(args: &BenchArgs, r: &Report) {
    let j = report_json(args, r);
    if args.json {
        println!("{j}");
    } else {
        println!(
            "{} {:?} clients={} value={}B: {:.0} ops/s ({:.0} rows/s), p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            j["system"].as_str().unwrap_or(""),
            args.workload,
            args.clients,
            args.value_size,
            j["ops_per_s"].as_f64().unwrap_or(0.0),
            j["rows_per_s"].as_f64().unwrap_or(0.0),
            j["p50_ms"].as_f64().unwrap_or(0.0),
            j["p90_ms"].as_f64().unwrap_or(0.0),
            j["p99_ms"].as_f64().unwrap_or(0.0),
            j["max_ms"].as_f64().unwrap_or(0.0),
            r.errors
        );
    }
}

/// Prints the failover trials: the time from each kill to the first acknowledged write,
/// and how many acknowledged writes survived.
pub(super) fn print_failover(
    system: System,
    args: &BenchArgs,
    times: &[Duration],
    acknowledged: usize,
    lost: usize,
) {
    let ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let median = median(&ms);
    let j = json!({
        "system": system.name(),
        "workload": "Failover",
        "clients": args.clients,
        "trials": args.trials,
        "first_ack_ms": ms,
        "median_first_ack_ms": median,
        "max_first_ack_ms": ms.iter().cloned().fold(0.0, f64::max),
        "acknowledged_writes": acknowledged,
        "lost_writes": lost,
    });
    if args.json {
        println!("{j}");
    } else {
        println!(
            "{} failover: first acknowledged write after {:?} ms (median {:.0} ms); {} acknowledged writes, {lost} lost",
            system.name(),
            ms.iter().map(|m| m.round()).collect::<Vec<_>>(),
            median.unwrap_or(f64::NAN),
            acknowledged
        );
    }
}

/// The median of `xs` (the mean of the two middle values for an even count); `None` when
/// empty.
pub(super) fn median(xs: &[f64]) -> Option<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Prints one run of a lifecycle workload: `j` with `--json`, else `line`.
pub(super) fn print_object(args: &BenchArgs, j: &Value, line: &str) {
    if args.json {
        println!("{j}");
    } else {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty_lists() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
