//! Shared helpers of the benches and the HTTP load tool: latency percentiles, the summary line
//! of a load run (and the merge of several runs), and the loopback-only check of target hosts.

/// Nearest-rank percentile (`p` in 0..=100) of an ascending slice; 0 for an empty slice.
/// p = 0 is the minimum, p = 100 the maximum.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The figures of one load run, or of several runs of the same target merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub label: String,
    /// Every measured latency in microseconds, ascending.
    pub latencies_us: Vec<u64>,
    /// Length of the measured window(s), microseconds.
    pub window_us: u64,
    pub errors: u64,
    pub concurrency: usize,
    pub rounds: usize,
}

impl Summary {
    pub fn new(
        label: &str,
        mut latencies_us: Vec<u64>,
        window_us: u64,
        errors: u64,
        concurrency: usize,
    ) -> Summary {
        latencies_us.sort_unstable();
        Summary {
            label: label.to_string(),
            latencies_us,
            window_us: window_us.max(1),
            errors,
            concurrency,
            rounds: 1,
        }
    }

    /// Completed requests per second over the measured window(s).
    pub fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / (self.window_us as f64 / 1e6)
    }

    /// The machine-readable line: `NAME requests=… rps=… p50_ms=… p90_ms=… p99_ms=… max_ms=…
    /// errors=… concurrency=…` (and `rounds=…` for merged runs).
    pub fn line(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let l = &self.latencies_us;
        let mut line = format!(
            "{} requests={} rps={:.1} p50_ms={} p90_ms={} p99_ms={} max_ms={} errors={} concurrency={}",
            self.label,
            l.len(),
            self.rps(),
            ms(percentile(l, 50.0)),
            ms(percentile(l, 90.0)),
            ms(percentile(l, 99.0)),
            ms(l.last().copied().unwrap_or(0)),
            self.errors,
            self.concurrency,
        );
        if self.rounds > 1 {
            line.push_str(&format!(" rounds={}", self.rounds));
        }
        line
    }

    /// The raw form (`loadgen --raw`): a header line, then one latency a line.
    pub fn to_raw(&self) -> String {
        let mut out = format!(
            "# window_us={} errors={} concurrency={}\n",
            self.window_us, self.errors, self.concurrency
        );
        for us in &self.latencies_us {
            out.push_str(&us.to_string());
            out.push('\n');
        }
        out
    }

    pub fn from_raw(label: &str, text: &str) -> Result<Summary, String> {
        let mut lines = text.lines();
        let header = lines.next().ok_or("empty raw file")?;
        let field = |name: &str| -> Result<u64, String> {
            header
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("raw header lacks {name}: {header:?}"))
        };
        let (window_us, errors, concurrency) =
            (field("window_us")?, field("errors")?, field("concurrency")?);
        let latencies = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("bad latency {l:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Summary::new(
            label,
            latencies,
            window_us,
            errors,
            concurrency as usize,
        ))
    }

    /// Several runs of one target as one: all latencies, summed windows and errors.
    pub fn merge(label: &str, runs: &[Summary]) -> Summary {
        let mut s = Summary::new(
            label,
            runs.iter()
                .flat_map(|r| r.latencies_us.iter().copied())
                .collect(),
            runs.iter().map(|r| r.window_us).sum(),
            runs.iter().map(|r| r.errors).sum(),
            runs.iter().map(|r| r.concurrency).max().unwrap_or(0),
        );
        s.rounds = runs.iter().map(|r| r.rounds).sum();
        s
    }
}

/// True for hosts that can only mean this machine: `localhost`, 127.0.0.0/8, `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_empty_is_zero() {
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn percentile_of_one_value_is_that_value() {
        for p in [0.0, 1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&[7], p), 7);
        }
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&v, 1.0), 1);
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 99.9), 100);
        assert_eq!(percentile(&v, 100.0), 100);
        // Ten values: p50 is the 5th, p90 the 9th, p99 the 10th.
        let w = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(percentile(&w, 50.0), 50);
        assert_eq!(percentile(&w, 90.0), 90);
        assert_eq!(percentile(&w, 99.0), 100);
        assert_eq!(percentile(&w, 51.0), 60);
    }

    #[test]
    fn percentile_clamps_out_of_range_p() {
        let v = [1, 2, 3];
        assert_eq!(percentile(&v, -5.0), 1);
        assert_eq!(percentile(&v, 250.0), 3);
    }

    #[test]
    fn percentile_is_monotonic_in_p() {
        let v: Vec<u64> = (0..1000).map(|i| (i * i) % 997).collect::<Vec<_>>();
        let mut v = v;
        v.sort_unstable();
        let mut last = 0;
        for i in 0..=1000 {
            let q = percentile(&v, i as f64 / 10.0);
            assert!(q >= last);
            last = q;
        }
    }

    #[test]
    fn summary_line_has_every_figure() {
        let s = Summary::new("x", vec![3000, 1000, 2000, 4000], 2_000_000, 1, 4);
        assert_eq!(
            s.line(),
            "x requests=4 rps=2.0 p50_ms=2.000 p90_ms=4.000 p99_ms=4.000 max_ms=4.000 errors=1 concurrency=4"
        );
    }

    #[test]
    fn raw_form_round_trips() {
        let s = Summary::new("x", vec![5, 1, 3], 1_500_000, 2, 8);
        assert_eq!(Summary::from_raw("x", &s.to_raw()).unwrap(), s);
        assert!(Summary::from_raw("x", "").is_err());
        assert!(Summary::from_raw("x", "# window_us=1 errors=0\n1\n").is_err());
        assert!(Summary::from_raw("x", "# window_us=1 errors=0 concurrency=1\nx\n").is_err());
    }

    #[test]
    fn merged_runs_pool_latencies_windows_and_errors() {
        let a = Summary::new("a", vec![1000; 10], 1_000_000, 0, 8);
        let b = Summary::new("b", vec![3000; 30], 2_000_000, 2, 8);
        let m = Summary::merge("m", &[a, b]);
        assert_eq!(m.latencies_us.len(), 40);
        assert_eq!(m.errors, 2);
        assert_eq!(m.rounds, 2);
        // 40 requests over 3 s, not the mean of 10/s and 15/s.
        assert!((m.rps() - 40.0 / 3.0).abs() < 1e-9);
        assert_eq!(percentile(&m.latencies_us, 25.0), 1000);
        assert_eq!(percentile(&m.latencies_us, 26.0), 3000);
        assert!(m.line().ends_with(" rounds=2"));
    }

    #[test]
    fn only_loopback_hosts_pass() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LOCALHOST",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "0.0.0.0",
            "example.com",
            "localhost.example.com",
            "::",
            "192.168.1.1",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
