//! `GET /stats`: the counters as JSON, per route and in total, answering the question the
//! cache is there for: how much waiting did it save?

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Class, RouteCounts};

/// One route's figures (or the total's).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    pub hit: u64,
    pub stale: u64,
    pub miss: u64,
    pub pass: u64,
    /// Passed because the policy failed.
    pub error: u64,
    /// Answers from the cache (fresh or stale) over the requests that looked the cache up
    /// (hits, stale answers, misses), to four decimals; `null` before the first lookup.
    pub hit_ratio: Option<f64>,
    /// Summed fill time of every entry answered from the cache: the upstream waiting the
    /// cache saved, in milliseconds.
    pub upstream_time_saved_ms: f64,
    pub bytes_from_cache: u64,
    pub bytes_from_upstream: u64,
    /// Requests that waited for another's fill and were given its response.
    pub coalesced: u64,
    /// Of those, requests answered from another instance's fill (with a Redis store).
    pub fleet_collapsed: u64,
    /// Fill leases taken over from an instance that vanished mid-fill: each cost one more
    /// upstream request.
    pub lease_takeovers: u64,
    /// Mean time to the response header of fresh hits, in milliseconds.
    pub hit_latency_ms: Option<f64>,
    /// Mean time to the response header of misses, in milliseconds.
    pub miss_latency_ms: Option<f64>,
    /// Mean upstream time (to the response header), in milliseconds.
    pub upstream_latency_ms: Option<f64>,
    pub upstream_requests: u64,
    /// Mean time of one plugin call, in microseconds.
    pub plugin_call_us: Option<f64>,
    pub plugin_calls: u64,
    /// Requests answered with the `on-request` decision of an identical earlier request,
    /// without a plugin call.
    pub plugin_decisions_reused: u64,
}

/// Raw sums, added up over routes before the means are taken.
#[derive(Default)]
struct Sums {
    requests: [u64; 5],
    latency_us: [u64; 5],
    coalesced: u64,
    fleet_collapsed: u64,
    lease_takeovers: u64,
    bytes_from_cache: u64,
    bytes_from_upstream: u64,
    saved_us: u64,
    upstream_us: u64,
    upstream_calls: u64,
    plugin_us: u64,
    plugin_calls: u64,
    decisions_reused: u64,
}

impl Sums {
    fn read(c: &RouteCounts) -> Self {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Sums {
            requests: c.requests.each_ref().map(load),
            latency_us: c.latency_us.each_ref().map(load),
            coalesced: load(&c.coalesced),
            fleet_collapsed: load(&c.fleet_collapsed),
            lease_takeovers: load(&c.lease_takeovers),
            bytes_from_cache: load(&c.bytes_from_cache),
            bytes_from_upstream: load(&c.bytes_from_upstream),
            saved_us: load(&c.saved_us),
            upstream_us: load(&c.upstream_us),
            upstream_calls: load(&c.upstream_calls),
            plugin_us: load(&c.plugin_us),
            plugin_calls: load(&c.plugin_calls),
            decisions_reused: load(&c.decisions_reused),
        }
    }

    fn add(&mut self, o: &Sums) {
        for i in 0..5 {
            self.requests[i] += o.requests[i];
            self.latency_us[i] += o.latency_us[i];
        }
        self.coalesced += o.coalesced;
        self.fleet_collapsed += o.fleet_collapsed;
        self.lease_takeovers += o.lease_takeovers;
        self.bytes_from_cache += o.bytes_from_cache;
        self.bytes_from_upstream += o.bytes_from_upstream;
        self.saved_us += o.saved_us;
        self.upstream_us += o.upstream_us;
        self.upstream_calls += o.upstream_calls;
        self.plugin_us += o.plugin_us;
        self.plugin_calls += o.plugin_calls;
        self.decisions_reused += o.decisions_reused;
    }

    fn stats(&self, route: String) -> RouteStats {
        let n = |c: Class| self.requests[c as usize];
        let mean = |sum: u64, count: u64, scale: f64| {
            (count > 0).then(|| round3(sum as f64 / count as f64 / scale))
        };
        let looked_up = n(Class::Hit) + n(Class::Stale) + n(Class::Miss);
        RouteStats {
            route,
            requests: self.requests.iter().sum(),
            hit: n(Class::Hit),
            stale: n(Class::Stale),
            miss: n(Class::Miss),
            pass: n(Class::Pass),
            error: n(Class::Error),
            hit_ratio: (looked_up > 0).then(|| {
                let ratio = (n(Class::Hit) + n(Class::Stale)) as f64 / looked_up as f64;
                (ratio * 10_000.0).round() / 10_000.0
            }),
            upstream_time_saved_ms: round3(self.saved_us as f64 / 1000.0),
            bytes_from_cache: self.bytes_from_cache,
            bytes_from_upstream: self.bytes_from_upstream,
            coalesced: self.coalesced,
            fleet_collapsed: self.fleet_collapsed,
            lease_takeovers: self.lease_takeovers,
            hit_latency_ms: mean(self.latency_us[Class::Hit as usize], n(Class::Hit), 1000.0),
            miss_latency_ms: mean(
                self.latency_us[Class::Miss as usize],
                n(Class::Miss),
                1000.0,
            ),
            upstream_latency_ms: mean(self.upstream_us, self.upstream_calls, 1000.0),
            upstream_requests: self.upstream_calls,
            plugin_call_us: mean(self.plugin_us, self.plugin_calls, 1.0),
            plugin_calls: self.plugin_calls,
            plugin_decisions_reused: self.decisions_reused,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Reloads since start.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReloadStats {
    /// Reloads that published a snapshot.
    pub ok: u64,
    /// Of those, reloads that refused at least one plugin file (its previous version serves).
    pub refused: u64,
    /// Reloads refused as a whole (bad config, a route's plugin missing).
    pub failed: u64,
    /// Unix seconds of the last published reload.
    pub last_at: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
}

/// Per-route figures and their total.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub uptime_s: u64,
    pub total: RouteStats,
    pub routes: Vec<RouteStats>,
}

impl Stats {
    pub fn of(routes: &[(String, std::sync::Arc<RouteCounts>)], uptime_s: u64) -> Self {
        let mut total = Sums::default();
        let routes = routes
            .iter()
            .map(|(name, counts)| {
                let sums = Sums::read(counts);
                total.add(&sums);
                sums.stats(name.clone())
            })
            .collect();
        Stats {
            uptime_s,
            total: total.stats("(all)".into()),
            routes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Class, Served, Telemetry};

    #[test]
    fn ratios_and_savings_add_up_over_routes() {
        let t = Telemetry::new();
        let a = t.route("a", "p", "v1");
        let b = t.route("b", "p", "v1");
        let served = |class, saved_us| Served {
            class,
            collapsed: false,
            fleet: false,
            elapsed: Duration::from_micros(100),
            bytes: Some(10),
            saved_us,
        };
        a.served(served(Class::Miss, 0));
        a.served(served(Class::Hit, 1_200_000));
        a.served(served(Class::Hit, 1_200_000));
        b.served(served(Class::Pass, 0));
        b.served(served(Class::Stale, 500));
        let stats = super::Stats::of(&t.route_counts(), 0);
        let by = |name: &str| stats.routes.iter().find(|r| r.route == name).unwrap();
        assert_eq!(by("a").hit_ratio, Some(0.6667));
        assert_eq!(by("a").upstream_time_saved_ms, 2400.0);
        assert_eq!(by("b").hit_ratio, Some(1.0));
        assert_eq!(by("a").bytes_from_cache, 20);
        assert_eq!(by("a").bytes_from_upstream, 10);
        assert_eq!(stats.total.requests, 5);
        assert_eq!(stats.total.hit_ratio, Some(0.75));
        assert_eq!(stats.total.upstream_time_saved_ms, 2400.5);
        // A reload registers the route again: it keeps its counts.
        let again = t.route("a", "p", "v2");
        again.served(served(Class::Hit, 0));
        let stats = super::Stats::of(&t.route_counts(), 0);
        assert_eq!(stats.routes.iter().filter(|r| r.route == "a").count(), 1);
        assert_eq!(stats.total.hit, 3);
        assert!(
            t.render()
                .contains("larder_requests_total{route=\"a\",cache=\"hit\"} 3")
        );
    }
}
