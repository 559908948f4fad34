//! Host metrics: sampled with sysinfo every interval and published to the metrics topic,
//! together with the agent's own health.
//!
//! Metrics are a view of "now", not a record of events: a sample that cannot be delivered
//! is logged and counted, not retried (the next sample supersedes it).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sysinfo::{Disks, Networks, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::watch;

use crate::config::MetricsConfig;
use crate::health::AgentStats;
use crate::producer::{AgentProducer, Record, SendError};
use crate::publisher::send_metric;
use crate::record::{
    self, AgentHealth, CpuStats, DiskStats, MemStats, MetricSample, NetStats, ProcStats,
    HEADER_HOST,
};

/// How many of the busiest processes a sample lists.
const TOP_PROCS: usize = 5;

/// Holds sysinfo's state between samples: CPU usage and network rates are differences
/// between two refreshes.
pub struct Sampler {
    host: String,
    sys: System,
    disks: Disks,
    networks: Networks,
    stats: Arc<AgentStats>,
    last: Instant,
    last_lines: u64,
    last_bytes: u64,
}

impl Sampler {
    pub fn new(host: String, stats: Arc<AgentStats>) -> Sampler {
        let mut sys = System::new();
        // A first refresh, so the first sample's CPU figures have a baseline.
        sys.refresh_cpu_usage();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu(),
        );
        Sampler {
            host,
            sys,
            disks: Disks::new_with_refreshed_list(),
            networks: Networks::new_with_refreshed_list(),
            last_lines: AgentStats::get(&stats.lines_read),
            last_bytes: AgentStats::get(&stats.bytes_read),
            stats,
            last: Instant::now(),
        }
    }

    pub fn sample(&mut self) -> MetricSample {
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64().max(0.001);
        self.last = now;

        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        self.disks.refresh(true);
        self.networks.refresh(true);

        let load = System::load_average();
        let mut procs: Vec<ProcStats> = self
            .sys
            .processes()
            .values()
            .map(|p| ProcStats {
                pid: p.pid().as_u32(),
                name: p.name().to_string_lossy().into_owned(),
                cpu_pct: p.cpu_usage(),
                mem_bytes: p.memory(),
            })
            .collect();
        procs.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
        procs.truncate(TOP_PROCS);

        let lines = AgentStats::get(&self.stats.lines_read);
        let bytes = AgentStats::get(&self.stats.bytes_read);
        let health = AgentHealth {
            lines_per_s: lines.saturating_sub(self.last_lines) as f64 / secs,
            bytes_per_s: bytes.saturating_sub(self.last_bytes) as f64 / secs,
            files_watched: AgentStats::get(&self.stats.files_watched),
            in_flight: AgentStats::get(&self.stats.in_flight),
            errors: AgentStats::get(&self.stats.errors),
            spool_bytes: AgentStats::get(&self.stats.spool_bytes),
        };
        self.last_lines = lines;
        self.last_bytes = bytes;

        MetricSample {
            ts: record::format_ts(SystemTime::now()),
            host: self.host.clone(),
            cpu: CpuStats {
                usage_pct: self.sys.global_cpu_usage(),
                cores_pct: self.sys.cpus().iter().map(|c| c.cpu_usage()).collect(),
            },
            mem: MemStats {
                used_bytes: self.sys.used_memory(),
                total_bytes: self.sys.total_memory(),
                swap_used_bytes: self.sys.used_swap(),
                swap_total_bytes: self.sys.total_swap(),
            },
            load: [load.one, load.five, load.fifteen],
            disks: self
                .disks
                .list()
                .iter()
                .map(|d| DiskStats {
                    mount: d.mount_point().to_string_lossy().into_owned(),
                    used_bytes: d.total_space().saturating_sub(d.available_space()),
                    total_bytes: d.total_space(),
                })
                .collect(),
            net: self
                .networks
                .iter()
                .map(|(iface, data)| NetStats {
                    iface: iface.clone(),
                    rx_bps: data.received() as f64 / secs,
                    tx_bps: data.transmitted() as f64 / secs,
                })
                .collect(),
            procs,
            agent: Some(health),
        }
    }
}

/// Samples and publishes until the task is aborted. `config` may change (SIGHUP): a new
/// interval takes effect at once; `None` pauses sampling.
pub async fn publish_metrics(
    producer: Arc<AgentProducer>,
    host: String,
    mut config: watch::Receiver<MetricsConfig>,
    stats: Arc<AgentStats>,
) {
    let mut sampler = Sampler::new(host.clone(), Arc::clone(&stats));
    loop {
        let current = config.borrow_and_update().clone();
        let Some(interval) = current.interval else {
            if config.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(interval) => {
                let sample = sampler.sample();
                publish(&producer, &current.topic, &host, &sample, &stats).await;
            }
        }
    }
}

async fn publish(
    producer: &AgentProducer,
    topic: &str,
    host: &str,
    sample: &MetricSample,
    stats: &Arc<AgentStats>,
) {
    let value = match serde_json::to_vec(sample) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode metrics sample");
            stats.error();
            return;
        }
    };
    let timestamp = record::unix_millis(SystemTime::now());
    // A full queue (the broker is slow or away) gets a few moments; past that the sample
    // is skipped: the next one supersedes it.
    for _ in 0..50 {
        let record = Record {
            topic,
            key: host.as_bytes(),
            value: &value,
            headers: &[(HEADER_HOST, host.as_bytes())],
            timestamp,
        };
        match send_metric(producer, &record) {
            Ok(()) => return,
            Err(SendError::QueueFull) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot send metrics sample");
                stats.error();
                return;
            }
        }
    }
    tracing::warn!("metrics sample skipped: the producer queue stayed full");
    stats.error();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn sample_has_the_contract_shape() {
        let stats = Arc::new(AgentStats::default());
        stats.lines_read.store(100, Ordering::Relaxed);
        let mut sampler = Sampler::new("web1".to_string(), stats);
        std::thread::sleep(Duration::from_millis(200));
        let s = sampler.sample();
        assert_eq!(s.host, "web1");
        assert!(!s.cpu.cores_pct.is_empty());
        assert!(s.mem.total_bytes > 0);
        assert!(s.procs.len() <= TOP_PROCS);
        let json: serde_json::Value = serde_json::to_value(&s).expect("json");
        for key in ["ts", "host", "cpu", "mem", "load", "disks", "net", "procs"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["load"].as_array().map(Vec::len), Some(3));
    }
}
