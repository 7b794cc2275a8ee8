//! Shared helpers of the benches and the HTTP load tool: latency percentiles and the
//! loopback-only check of target hosts.

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
