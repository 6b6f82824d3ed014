use std::sync::OnceLock;
use std::time::Instant;

// ---------------------------------------------------------------- clocks and /proc

static BASE: OnceLock<Instant> = OnceLock::new();

pub(crate) fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Total on-CPU nanoseconds of all threads of a process (sum of /proc/PID/task/*/schedstat).
fn cpu_ns(pid: &str) -> u64 {
    let mut total = 0u64;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    for e in rd.flatten() {
        let p = e.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            total += s.split_whitespace().next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

pub(crate) fn rss_kb(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            return rest.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        }
    }
    0
}

pub(crate) struct CpuMeter {
    t0: Instant,
    self0: u64,
    broker: Option<(String, u64)>,
}

impl CpuMeter {
    pub(crate) fn start(broker_pid: Option<u32>) -> Self {
        let broker = broker_pid.map(|p| {
            let s = p.to_string();
            let c = cpu_ns(&s);
            (s, c)
        });
        CpuMeter { t0: Instant::now(), self0: cpu_ns("self"), broker }
    }
    /// (loadgen %, broker %) of one core since start.
    pub(crate) fn stop(&self) -> (f64, Option<f64>) {
        let wall = self.t0.elapsed().as_nanos().max(1) as f64;
        let me = (cpu_ns("self").saturating_sub(self.self0)) as f64 * 100.0 / wall;
        let br = self.broker.as_ref().map(|(p, c0)| (cpu_ns(p).saturating_sub(*c0)) as f64 * 100.0 / wall);
        (me, br)
    }
}
