//! Load from a node's `/metrics`: the `cairn_operation_duration_seconds{op="write"|"read"}`
//! histogram read at two refreshes, turned into requests per second and p50/p99 latency of
//! what happened between them.
//!
//! The quantile is estimated as Prometheus' `histogram_quantile` does
//! (`promql/quantile.go`, `bucketQuantile`): find the bucket the rank falls in and
//! interpolate linearly between its lower and upper bound.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

/// The histogram `cairn top` reads: every request a node served, by duration in seconds.
pub const OPERATION_HISTOGRAM: &str = "cairn_operation_duration_seconds";

/// One cumulative histogram: `count` observations summing to `sum` seconds; `buckets` are
/// `(upper bound in seconds, observations at or below it)`, sorted by bound, the last one
/// `+Inf` when the exporter wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations (`_count`).
    pub count: f64,
    /// Their sum in seconds (`_sum`).
    pub sum: f64,
    /// `(le, cumulative count)`, sorted by `le`.
    pub buckets: Vec<(f64, f64)>,
    /// `(quantile, seconds)` when the exporter wrote a summary instead of buckets: its own
    /// estimate over its own window, used as is.
    pub summary: Vec<(f64, f64)>,
}

impl Histogram {
    /// What was observed after `earlier` and up to `self`. A counter that went down means
    /// the node restarted (Prometheus' counter reset): everything in `self` is new.
    /// Buckets are differenced only when both have the same bounds.
    fn since(&self, earlier: &Histogram) -> Histogram {
        if self.count < earlier.count {
            return self.clone();
        }
        let same_bounds = self.buckets.len() == earlier.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .all(|((a, _), (b, _))| a == b);
        let buckets = if same_bounds {
            self.buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|((le, now), (_, then))| (*le, (now - then).max(0.0)))
                .collect()
        } else {
            Vec::new()
        };
        Histogram {
            count: self.count - earlier.count,
            sum: (self.sum - earlier.sum).max(0.0),
            buckets,
            summary: self.summary.clone(),
        }
    }

    /// Adds `other`'s observations (another node's); buckets are kept only when both have
    /// the same bounds.
    fn add(&mut self, other: &Histogram) {
        // Two nodes' quantile estimates do not add up to the quantile of both.
        self.summary.clear();
        if self.buckets.is_empty() && self.count == 0.0 {
            self.buckets = other.buckets.clone();
        } else if self.buckets.len() == other.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&other.buckets)
                .all(|((a, _), (b, _))| a == b)
        {
            for ((_, mine), (_, theirs)) in self.buckets.iter_mut().zip(&other.buckets) {
                *mine += theirs;
            }
        } else {
            self.buckets.clear();
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The `q`-quantile (0..=1) of the observations in seconds, as `histogram_quantile`
    /// estimates it; without buckets, the summary's value for exactly `q`. `None` without
    /// observations, or when neither gives it.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        histogram_quantile(q, &self.buckets).or_else(|| {
            self.summary
                .iter()
                .find(|(at, v)| (at - q).abs() < 1e-9 && v.is_finite())
                .map(|(_, v)| *v)
        })
    }
}

/// Prometheus' `histogram_quantile(q, buckets)`: `buckets` are `(le, cumulative count)`
/// sorted by `le` and ending with `+Inf`. The rank `q * total` is located in the first
/// bucket whose count reaches it, and interpolated linearly inside that bucket (the first
/// bucket starts at 0). A rank in the `+Inf` bucket gives the highest finite bound.
/// `None` when there are no observations, fewer than two buckets, no `+Inf` bucket, or
/// `q` is not within 0..=1.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || buckets.len() < 2 {
        return None;
    }
    let (last_le, _) = *buckets.last()?;
    if last_le != f64::INFINITY {
        return None;
    }
    // Cumulative counts must not decrease; a scrape racing an observation can make them,
    // and Prometheus fixes that the same way (`ensureMonotonic`).
    let mut monotonic = Vec::with_capacity(buckets.len());
    let mut max = 0.0f64;
    for &(le, count) in buckets {
        max = max.max(count);
        monotonic.push((le, max));
    }
    let total = monotonic.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let mut rank = q * total;
    let b = monotonic.iter().position(|&(_, count)| count >= rank)?;
    if b == monotonic.len() - 1 {
        return Some(monotonic[b - 1].0);
    }
    if b == 0 && monotonic[0].0 <= 0.0 {
        return Some(monotonic[0].0);
    }
    let (end, mut count) = monotonic[b];
    let mut start = 0.0;
    if b > 0 {
        start = monotonic[b - 1].0;
        count -= monotonic[b - 1].1;
        rank -= monotonic[b - 1].1;
    }
    if count <= 0.0 {
        return Some(start);
    }
    Some(start + (end - start) * (rank / count))
}

/// The operation histograms of one `/metrics` document: `None` where the series is
/// absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpMetrics {
    /// `op="write"`.
    pub write: Option<Histogram>,
    /// `op="read"`.
    pub read: Option<Histogram>,
}

impl OpMetrics {
    /// Reads [`OPERATION_HISTOGRAM`] out of Prometheus text. Series with the same `op` and
    /// other labels are added up. Lines that do not parse are skipped (the text comes from
    /// the network).
    pub fn parse(text: &str) -> OpMetrics {
        let Ok(scrape) = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))) else {
            return OpMetrics::default();
        };
        let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
        let bucket_name = format!("{OPERATION_HISTOGRAM}_bucket");
        let count_name = format!("{OPERATION_HISTOGRAM}_count");
        let sum_name = format!("{OPERATION_HISTOGRAM}_sum");
        for sample in &scrape.samples {
            let Some(op) = sample.labels.get("op") else {
                continue;
            };
            let entry = parts.entry(op.to_string()).or_default();
            let scalar = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            };
            match (&sample.value, sample.metric.as_str()) {
                (Value::Histogram(counts), name) if name == OPERATION_HISTOGRAM => {
                    for c in counts {
                        entry.2.push((c.less_than, c.count));
                    }
                }
                (Value::Summary(quantiles), name) if name == OPERATION_HISTOGRAM => {
                    for q in quantiles {
                        entry.3.push((q.quantile, q.count));
                    }
                }
                (_, name) if name == count_name => {
                    *entry.0.get_or_insert(0.0) += scalar.unwrap_or(0.0);
                }
                (_, name) if name == sum_name => {
                    *entry.1.get_or_insert(0.0) += scalar.unwrap_or(0.0);
                }
                // Without a `# TYPE` line the parser leaves buckets as plain samples.
                (_, name) if name == bucket_name => {
                    let le = sample.labels.get("le").and_then(parse_bound);
                    if let (Some(le), Some(v)) = (le, scalar) {
                        entry.2.push((le, v));
                    }
                }
                _ => {}
            }
        }
        let mut out = OpMetrics::default();
        for (op, (count, sum, mut raw, summary)) in parts {
            raw.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut buckets: Vec<(f64, f64)> = Vec::with_capacity(raw.len());
            for (le, v) in raw {
                match buckets.last_mut() {
                    Some(last) if last.0 == le => last.1 += v,
                    _ => buckets.push((le, v)),
                }
            }
            let count =
                count.or_else(|| buckets.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1));
            let Some(count) = count else {
                continue;
            };
            let histogram = Histogram {
                count,
                sum: sum.unwrap_or(0.0),
                buckets,
                summary,
            };
            match op.as_str() {
                "write" => out.write = Some(histogram),
                "read" => out.read = Some(histogram),
                _ => {}
            }
        }
        out
    }

    /// What happened between `earlier` and `self`, `elapsed` apart.
    pub fn since(&self, earlier: &OpMetrics, elapsed: Duration) -> LoadDelta {
        let diff = |now: &Option<Histogram>, then: &Option<Histogram>| match (now, then) {
            (Some(now), Some(then)) => Some(now.since(then)),
            _ => None,
        };
        LoadDelta {
            elapsed,
            write: diff(&self.write, &earlier.write),
            read: diff(&self.read, &earlier.read),
            summed_rates: None,
        }
    }
}

/// One op's series as read, before they make a [`Histogram`]: `_count`, `_sum`, and
/// `(le, cumulative count)` pairs (several per `le` when other labels differ).
type Parts = (Option<f64>, Option<f64>, Vec<(f64, f64)>, Vec<(f64, f64)>);

/// `le` label values: numbers, `+Inf`.
fn parse_bound(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        s => s.parse().ok(),
    }
}

/// The operations one node (or the cluster) served between two refreshes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadDelta {
    /// The time between the two samples.
    pub elapsed: Duration,
    /// Writes observed in between; `None` when either sample lacked the series.
    pub write: Option<Histogram>,
    /// Reads observed in between.
    pub read: Option<Histogram>,
    /// For a sum of nodes ([`LoadDelta::add`]): writes/s and reads/s added node by node,
    /// each over its own elapsed time (a node back after a long gap has a long one).
    pub summed_rates: Option<(Option<f64>, Option<f64>)>,
}

impl LoadDelta {
    /// Adds another node's delta: rates add up (each node's over its own elapsed time),
    /// histograms merge; the elapsed time is the longest of the two.
    pub fn add(&mut self, other: &LoadDelta) {
        let (mine, theirs) = (self.load(), other.load());
        let sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, None) => a,
            (None, b) => b,
        };
        self.summed_rates = Some((
            sum(mine.writes_per_s, theirs.writes_per_s),
            sum(mine.reads_per_s, theirs.reads_per_s),
        ));
        self.elapsed = self.elapsed.max(other.elapsed);
        for (mine, theirs) in [
            (&mut self.write, &other.write),
            (&mut self.read, &other.read),
        ] {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.add(t),
                (None, Some(t)) => *mine = Some(t.clone()),
                _ => {}
            }
        }
    }

    /// Requests per second and latency quantiles, as shown.
    pub fn load(&self) -> Load {
        let secs = self.elapsed.as_secs_f64();
        let rate =
            |h: &Option<Histogram>| h.as_ref().filter(|_| secs > 0.0).map(|h| h.count / secs);
        let quantile = |h: &Option<Histogram>, q| h.as_ref().and_then(|h| h.quantile(q));
        let (writes_per_s, reads_per_s) = self
            .summed_rates
            .unwrap_or_else(|| (rate(&self.write), rate(&self.read)));
        Load {
            writes_per_s,
            reads_per_s,
            write_p50: quantile(&self.write, 0.5),
            write_p99: quantile(&self.write, 0.99),
            read_p50: quantile(&self.read, 0.5),
            read_p99: quantile(&self.read, 0.99),
        }
    }
}

/// Load as the dashboard shows it; `None` is shown as `-` (no metrics, no second sample,
/// or no requests to take a quantile of).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// Write requests per second.
    pub writes_per_s: Option<f64>,
    /// Read requests per second.
    pub reads_per_s: Option<f64>,
    /// Median write latency, seconds.
    pub write_p50: Option<f64>,
    /// 99th percentile write latency, seconds.
    pub write_p99: Option<f64>,
    /// Median read latency, seconds.
    pub read_p50: Option<f64>,
    /// 99th percentile read latency, seconds.
    pub read_p99: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn quantiles_interpolate_inside_the_bucket_as_prometheus_does() {
        // 10 observations <= 0.1, 10 more in (0.1, 0.2], none above.
        let b = [(0.1, 10.0), (0.2, 20.0), (INF, 20.0)];
        // rank 10 falls at the top of the first bucket.
        assert_eq!(histogram_quantile(0.5, &b), Some(0.1));
        // rank 15: halfway into (0.1, 0.2].
        let p75 = histogram_quantile(0.75, &b).expect("a quantile");
        assert!((p75 - 0.15).abs() < 1e-12, "{p75}");
        // rank 5 in the first bucket, which starts at 0.
        let p25 = histogram_quantile(0.25, &b).expect("a quantile");
        assert!((p25 - 0.05).abs() < 1e-12, "{p25}");
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(
            histogram_quantile(0.99, &[(0.1, 1.0), (INF, 10.0)]),
            Some(0.1)
        );
        assert_eq!(histogram_quantile(0.5, &[(0.1, 0.0), (INF, 0.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(0.1, 3.0), (1.0, 3.0)]), None);
        assert_eq!(histogram_quantile(1.5, &b), None);
    }

    #[test]
    fn the_operation_histogram_is_read_by_op_with_or_without_type_lines() {
        let typed = "\
# TYPE cairn_operation_duration_seconds histogram
cairn_operation_duration_seconds_bucket{op=\"write\",le=\"0.001\"} 2
cairn_operation_duration_seconds_bucket{op=\"write\",le=\"0.01\"} 5
cairn_operation_duration_seconds_bucket{op=\"write\",le=\"+Inf\"} 6
cairn_operation_duration_seconds_sum{op=\"write\"} 0.5
cairn_operation_duration_seconds_count{op=\"write\"} 6
garbage line {{{
";
        let m = OpMetrics::parse(typed);
        let w = m.write.expect("the write series");
        assert_eq!(w.count, 6.0);
        assert_eq!(w.sum, 0.5);
        assert_eq!(w.buckets, vec![(0.001, 2.0), (0.01, 5.0), (INF, 6.0)]);
        assert_eq!(m.read, None);
        let untyped = typed.replace("# TYPE", "# NOTE");
        assert_eq!(OpMetrics::parse(&untyped).write, Some(w));
        assert_eq!(OpMetrics::parse("not metrics at all"), OpMetrics::default());
    }

    #[test]
    fn a_summary_gives_its_own_quantiles_when_there_are_no_buckets() {
        let text = |count: u32| {
            format!(
                "\
# TYPE cairn_operation_duration_seconds summary
cairn_operation_duration_seconds{{op=\"read\",quantile=\"0.5\"}} 0.0004
cairn_operation_duration_seconds{{op=\"read\",quantile=\"0.99\"}} 0.003
cairn_operation_duration_seconds_sum{{op=\"read\"}} 0.5
cairn_operation_duration_seconds_count{{op=\"read\"}} {count}
"
            )
        };
        let (earlier, later) = (OpMetrics::parse(&text(100)), OpMetrics::parse(&text(150)));
        let load = later.since(&earlier, Duration::from_secs(1)).load();
        assert_eq!(load.reads_per_s, Some(50.0));
        assert_eq!(load.read_p50, Some(0.0004));
        assert_eq!(load.read_p99, Some(0.003));
        // Nothing served in between: no latency to show.
        let idle = later.since(&later, Duration::from_secs(1)).load();
        assert_eq!((idle.reads_per_s, idle.read_p50), (Some(0.0), None));
    }

    #[test]
    fn rates_come_from_the_difference_of_two_samples() {
        let at = |count: f64, fast: f64| OpMetrics {
            write: Some(Histogram {
                count,
                sum: count * 0.002,
                buckets: vec![(0.001, fast), (0.01, count), (INF, count)],
                summary: Vec::new(),
            }),
            read: None,
        };
        let delta = at(150.0, 50.0).since(&at(50.0, 0.0), Duration::from_secs(2));
        let load = delta.load();
        assert_eq!(load.writes_per_s, Some(50.0));
        // 100 new writes: 50 at or below 1 ms, 50 in (1 ms, 10 ms].
        assert_eq!(load.write_p50, Some(0.001));
        let p99 = load.write_p99.expect("p99");
        assert!((p99 - (0.001 + 0.009 * 49.0 / 50.0)).abs() < 1e-12, "{p99}");
        assert_eq!(load.reads_per_s, None);
        // A restarted node's counters start again: the new sample is all new.
        let reset = at(10.0, 10.0).since(&at(50.0, 0.0), Duration::from_secs(1));
        assert_eq!(reset.load().writes_per_s, Some(10.0));
    }

    #[test]
    fn deltas_of_nodes_add_up() {
        let one = LoadDelta {
            elapsed: Duration::from_secs(1),
            write: Some(Histogram {
                count: 10.0,
                sum: 0.1,
                buckets: vec![(0.01, 10.0), (INF, 10.0)],
                summary: Vec::new(),
            }),
            read: None,
            summed_rates: None,
        };
        let mut total = LoadDelta::default();
        total.add(&one);
        total.add(&one);
        assert_eq!(total.load().writes_per_s, Some(20.0));
        assert_eq!(
            total.write.as_ref().expect("writes").buckets,
            vec![(0.01, 20.0), (INF, 20.0)]
        );
        // A node back after 60 s without an answer adds its own rate, not a 60th of it.
        let mut back = one.clone();
        back.elapsed = Duration::from_secs(60);
        back.write.as_mut().expect("writes").count = 600.0;
        total.add(&back);
        assert_eq!(total.load().writes_per_s, Some(30.0));
    }
}
