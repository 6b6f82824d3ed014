use crate::clock::{now_ns, rss_kb, CpuMeter};
use crate::conn::{Net, St};
use crate::mqtt::enc_publish;
use crate::ws::Template;
use crate::{fail_out, Args, Out};
use mio::Events;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- scenarios

fn run_tag() -> String {
    format!("lg{}", std::process::id())
}

fn default_window(a: &Args, fanout: usize) -> usize {
    if a.window > 0 {
        return a.window;
    }
    // Outstanding deliveries bounded by ~16 MB of payload, and by message count.
    let per = a.payload + 32;
    let by_bytes = (16 << 20) / per;
    let cap = if fanout > 1 { 20 * fanout } else { 4000 };
    by_bytes.clamp(fanout.max(16), cap.max(fanout))
}

/// fan-in (N publishers to distinct topics, one wildcard subscriber) and fan-out
/// (one publisher, N subscribers on one topic).
pub(crate) fn scenario_throughput(a: &Args, fanout_mode: bool) {
    let mut net = Net::new(a);
    let tag = run_tag();
    let qos = a.qos;
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let (nsub, npub) = if fanout_mode { (a.subscribers, 1) } else { (1, a.publishers) };
    let t_setup = Instant::now();
    let sub_specs: Vec<_> = (0..nsub)
        .map(|i| {
            let topic = if fanout_mode { format!("bench/{tag}/fanout") } else { format!("bench/{tag}/in/#") };
            (format!("{tag}s{i}"), Some((topic, qos)))
        })
        .collect();
    let _subs = net.establish(sub_specs, a.connect_batch, deadline).unwrap_or_else(|e| fail_out(a, &e));
    let pub_specs: Vec<_> = (0..npub).map(|i| (format!("{tag}p{i}"), None)).collect();
    let pubs = net.establish(pub_specs, a.connect_batch, deadline).unwrap_or_else(|e| fail_out(a, &e));
    let setup_s = t_setup.elapsed().as_secs_f64();

    // Pre-encoded packet per publisher.
    let payload = vec![0xA5u8; a.payload];
    let mut tmpl: Vec<(Template, usize)> = (0..npub)
        .map(|i| {
            let topic = if fanout_mode { format!("bench/{tag}/fanout") } else { format!("bench/{tag}/in/p{i}") };
            let (pkt, pid_off, _) = enc_publish(&topic, qos, 1, &payload);
            (Template::new(&pkt, a.ws), pid_off)
        })
        .collect();
    let pkt_len = tmpl[0].0.bytes.len();
    let window = default_window(a, nsub) as u64; // outstanding deliveries
    let fan = nsub as u64;
    // Per refill, at most this many bytes are appended to one publisher's buffer.
    let max_pending = (256 * 1024).max(pkt_len * 4);
    let chunk = ((64 * 1024) / pkt_len).clamp(1, 64);

    let t0 = Instant::now();
    let t_meas = t0 + Duration::from_secs_f64(a.warmup);
    let t_end = t_meas + Duration::from_secs_f64(a.duration);
    let mut sent: u64 = 0; // PUBLISH packets written by publishers
    let mut meter: Option<CpuMeter> = None;
    let mut recv_at_meas = 0u64;
    let mut sent_at_meas = 0u64;
    let mut result: Option<(f64, u64, (f64, Option<f64>))> = None;
    let mut last_recv = 0u64;
    let mut last_progress = Instant::now();
    let mut stall_lost: u64 = 0;
    let mut stalls = 0u64;
    loop {
        let now = Instant::now();
        if now > deadline {
            fail_out(a, "overall timeout");
        }
        if meter.is_none() && now >= t_meas {
            meter = Some(CpuMeter::start(a.broker_pid));
            recv_at_meas = net.received;
            sent_at_meas = sent;
        }
        if result.is_none() && now >= t_end {
            let m = meter.take().unwrap_or_else(|| CpuMeter::start(a.broker_pid));
            let el = (now - t_meas).as_secs_f64();
            result = Some((el, net.received - recv_at_meas, m.stop()));
            let _ = sent_at_meas;
        }
        let publishing = result.is_none();
        if publishing {
            // Closed-loop refill, round robin over publishers in small chunks.
            let outstanding = (sent * fan).saturating_sub(net.received + stall_lost);
            let mut room = window.saturating_sub(outstanding) / fan;
            // Hysteresis: refill only once a good part of the window is free, so that writes
            // are batched instead of one syscall per freed slot (keeps the loadgen cheap
            // against brokers that deliver one message per TCP segment).
            if room < (window / fan / 8).max(1) {
                room = 0;
            }
            let mut progress = true;
            while room > 0 && progress {
                progress = false;
                for (k, &pi) in pubs.iter().enumerate() {
                    if room == 0 {
                        break;
                    }
                    let c = &mut net.conns[pi];
                    if c.pending() >= max_pending {
                        continue;
                    }
                    let mut n = (chunk as u64).min(room);
                    if qos > 0 {
                        let free = a.inflight.saturating_sub(c.inflight);
                        if free < (a.inflight / 4).max(1) {
                            continue;
                        }
                        n = n.min(free as u64);
                    }
                    if n == 0 {
                        continue;
                    }
                    let (t, pid_off) = &mut tmpl[k];
                    for _ in 0..n {
                        if qos > 0 {
                            let pid = c.alloc_pid();
                            t.patch(*pid_off, &pid.to_be_bytes());
                            c.inflight += 1;
                        }
                        c.out.extend_from_slice(&t.bytes);
                    }
                    sent += n;
                    room -= n;
                    progress = true;
                    c.flush();
                    if c.st == St::Dead {
                        fail_out(a, &c.err.clone().unwrap_or_default());
                    }
                }
            }
            // Stall detection: a broker that drops messages (or stops reading) would freeze the
            // closed loop, so when nothing arrives for 250 ms the gap is written off as lost.
            let outstanding = (sent * fan).saturating_sub(net.received + stall_lost);
            if net.received != last_recv {
                last_recv = net.received;
                last_progress = now;
            } else if outstanding > 0 && now - last_progress > Duration::from_millis(250) {
                stall_lost += outstanding;
                stalls += 1;
                last_progress = now;
            }
        } else {
            // Draining: stop when everything arrived (and QoS 1 publishers are fully acked).
            let acked = pubs.iter().all(|&p| net.conns[p].inflight == 0);
            let done = net.received >= sent * fan && (qos == 0 || acked);
            if done || now > t_end + Duration::from_secs_f64(a.drain) {
                break;
            }
        }
        if let Err(e) = net.turn(Duration::from_millis(if publishing { 1 } else { 5 })) {
            fail_out(a, &e);
        }
    }
    let (el, recv_meas, (lg_cpu, br_cpu)) = result.unwrap();
    if std::env::var("LOADGEN_DEBUG").is_ok() {
        for c in &net.conns {
            eprintln!(
                "{} st={:?} read={} ws={} frames={} pubs={} pubbytes={} ws_left={} carry={} skip={} out={}",
                c.client_id,
                c.st,
                c.dbg_read,
                c.dbg_ws,
                c.dbg_frames,
                c.pubs,
                c.pub_bytes,
                c.ws_left,
                c.carry.len(),
                c.skip,
                c.pending()
            );
        }
    }
    let expected = sent * fan;
    let lost = expected.saturating_sub(net.received);
    let mut o = Out::new(a);
    o.tls(&net);
    o.n("qos", qos as f64);
    o.n("payload", a.payload as f64);
    o.n("publishers", npub as f64);
    o.n("subscribers", nsub as f64);
    o.n("window", window as f64);
    o.n("setup_s", setup_s);
    o.n("elapsed_s", el);
    o.n("msgs_per_sec", recv_meas as f64 / el);
    o.n("mbytes_per_sec", recv_meas as f64 * a.payload as f64 / el / 1e6);
    o.n("sent", sent as f64);
    o.n("expected", expected as f64);
    o.n("received", net.received as f64);
    o.n("lost", lost as f64);
    o.n("stalls", stalls as f64);
    o.n("loadgen_cpu_pct", lg_cpu);
    o.opt("broker_cpu_pct", br_cpu);
    o.print();
}

/// Latency at a fixed rate: a paced publisher thread, a subscriber on the main loop;
/// each payload carries its send timestamp.
pub(crate) fn scenario_latency(a: &Args) {
    let mut net = Net::new(a);
    let tag = run_tag();
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let topic = format!("bench/{tag}/lat");
    let sub = net
        .establish(vec![(format!("{tag}s0"), Some((topic.clone(), a.qos)))], 1, deadline)
        .unwrap_or_else(|e| fail_out(a, &e))[0];
    net.conns[sub].record_lat = true;
    net.conns[sub].lat.reserve(((a.warmup + a.duration) * a.rate as f64) as usize + 1024);

    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let err: Arc<std::sync::Mutex<Option<String>>> = Arc::new(std::sync::Mutex::new(None));
    let _ = now_ns();
    let t0 = Instant::now();
    let meas_from_ns = now_ns() + (a.warmup * 1e9) as u64;
    let total_s = a.warmup + a.duration;
    let (sent2, done2, err2, a2, fin2) = (sent.clone(), done.clone(), err.clone(), a.clone(), finished.clone());
    let payload_len = a.payload.max(8);
    let th = std::thread::spawn(move || {
        let a = a2;
        let run = || -> Result<(), String> {
            let mut pn = Net::new(&a);
            let p = pn.establish(vec![(format!("{}p0", run_tag()), None)], 1, deadline)?[0];
            let (pkt, pid_off, pay_off) = enc_publish(&topic, a.qos, 1, &vec![0x5Au8; payload_len]);
            let mut t = Template::new(&pkt, a.ws);
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(total_s);
            let period = 1.0 / a.rate.max(1) as f64;
            let mut i: u64 = 0;
            loop {
                let now = Instant::now();
                if now >= end || now > deadline {
                    break;
                }
                let due = ((now - start).as_secs_f64() / period) as u64 + 1;
                if due > i {
                    let c = &mut pn.conns[p];
                    while i < due {
                        if a.qos > 0 {
                            let pid = c.alloc_pid();
                            t.patch(pid_off, &pid.to_be_bytes());
                        }
                        t.patch(pay_off, &now_ns().to_le_bytes());
                        c.out.extend_from_slice(&t.bytes);
                        i += 1;
                    }
                    c.flush();
                    if c.st == St::Dead {
                        return Err(c.err.clone().unwrap_or_default());
                    }
                    sent2.store(i, Ordering::Relaxed);
                }
                // Drain acks / anything the broker sends, without blocking.
                pn.turn(Duration::ZERO)?;
                let next = start + Duration::from_secs_f64(i as f64 * period);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            fin2.store(true, Ordering::Relaxed);
            // Keep the connection open until the subscriber has drained.
            let stop = Instant::now() + Duration::from_secs_f64(a.drain);
            while Instant::now() < stop && !done2.load(Ordering::Relaxed) {
                pn.turn(Duration::from_millis(5))?;
            }
            Ok(())
        };
        if let Err(e) = run() {
            *err2.lock().unwrap() = Some(e);
        }
        fin2.store(true, Ordering::Relaxed);
        done2.store(true, Ordering::Relaxed);
    });

    let mut meter: Option<CpuMeter> = None;
    let mut cpu = (0.0, None);
    let t_meas = t0 + Duration::from_secs_f64(a.warmup);
    let t_end = t_meas + Duration::from_secs_f64(a.duration);
    let mut ended = false;
    let mut drain_start: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if meter.is_none() && !ended && now >= t_meas {
            meter = Some(CpuMeter::start(a.broker_pid));
        }
        if !ended && now >= t_end {
            if let Some(m) = meter.take() {
                cpu = m.stop();
            }
            ended = true;
        }
        if let Some(e) = err.lock().unwrap().clone() {
            fail_out(a, &e);
        }
        let fin = finished.load(Ordering::Relaxed);
        let s = sent.load(Ordering::Relaxed);
        if ended && fin {
            let drain_until = *drain_start.get_or_insert(now) + Duration::from_secs_f64(a.drain);
            if net.received >= s || now > drain_until {
                break;
            }
        }
        if now > deadline {
            fail_out(a, "overall timeout");
        }
        if let Err(e) = net.turn(Duration::from_millis(2)) {
            fail_out(a, &e);
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = th.join();
    let s = sent.load(Ordering::Relaxed);
    let mut lats: Vec<u64> = net.conns[sub].lat.iter().filter(|(ts, _)| *ts >= meas_from_ns).map(|(_, l)| *l).collect();
    lats.sort_unstable();
    let pct = |q: f64| -> Option<f64> {
        if lats.is_empty() {
            return None;
        }
        let idx = ((q * lats.len() as f64).ceil() as usize).clamp(1, lats.len()) - 1;
        Some(lats[idx] as f64 / 1000.0)
    };
    let mut o = Out::new(a);
    o.tls(&net);
    o.n("qos", a.qos as f64);
    o.n("payload", payload_len as f64);
    o.n("rate", a.rate as f64);
    o.n("samples", lats.len() as f64);
    o.n("sent", s as f64);
    o.n("expected", s as f64);
    o.n("received", net.received as f64);
    o.n("lost", s.saturating_sub(net.received) as f64);
    o.opt("p50_us", pct(0.50));
    o.opt("p99_us", pct(0.99));
    o.opt("p999_us", pct(0.999));
    o.opt("max_us", lats.last().map(|x| *x as f64 / 1000.0));
    o.n("loadgen_cpu_pct", cpu.0);
    o.opt("broker_cpu_pct", cpu.1);
    o.print();
}

/// Many idle subscribed clients: connect time, broker RSS per connection, then one message
/// to each client's own topic to prove they are all alive.
pub(crate) fn scenario_conns(a: &Args) {
    let mut net = Net::new(a);
    net.events = Events::with_capacity(16384);
    let tag = run_tag();
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let rss0 = a.broker_pid.map(rss_kb);
    let t_conn = Instant::now();
    let specs: Vec<_> =
        (0..a.conns).map(|i| (format!("{tag}c{i}"), Some((format!("bench/{tag}/c/{i}"), a.qos)))).collect();
    let subs = net.establish(specs, a.connect_batch, deadline).unwrap_or_else(|e| fail_out(a, &e));
    let connect_s = t_conn.elapsed().as_secs_f64();
    // Let the broker settle, then sample its memory.
    let settle = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < settle {
        if let Err(e) = net.turn(Duration::from_millis(50)) {
            fail_out(a, &e);
        }
    }
    let rss1 = a.broker_pid.map(rss_kb);
    let p = net.establish(vec![(format!("{tag}pub"), None)], 1, deadline).unwrap_or_else(|e| fail_out(a, &e))[0];
    let payload = vec![0x42u8; a.payload];
    let t_pub = Instant::now();
    let meter = CpuMeter::start(a.broker_pid);
    let mut next = 0usize;
    let window = 2000u64;
    let pub_deadline = t_pub + Duration::from_secs_f64(a.drain.max(1.0) + 3.0);
    loop {
        let outstanding = (next as u64).saturating_sub(net.received);
        let mut room = window.saturating_sub(outstanding);
        let c = &mut net.conns[p];
        while room > 0 && next < subs.len() && c.pending() < 256 * 1024 {
            let (pkt, pid_off, _) = enc_publish(&format!("bench/{tag}/c/{next}"), a.qos, 0, &payload);
            let mut pkt = pkt;
            if a.qos > 0 {
                let pid = c.alloc_pid();
                pkt[pid_off..pid_off + 2].copy_from_slice(&pid.to_be_bytes());
            }
            c.send_mqtt(&pkt);
            next += 1;
            room -= 1;
        }
        c.flush();
        if net.received >= subs.len() as u64 || Instant::now() > pub_deadline {
            break;
        }
        if let Err(e) = net.turn(Duration::from_millis(5)) {
            fail_out(a, &e);
        }
    }
    let deliver_s = t_pub.elapsed().as_secs_f64();
    let (lg_cpu, br_cpu) = meter.stop();
    let alive = subs.iter().filter(|&&i| net.conns[i].pubs > 0).count();
    let mut o = Out::new(a);
    o.tls(&net);
    o.n("conns", a.conns as f64);
    o.n("connect_s", connect_s);
    o.n("conns_per_sec", a.conns as f64 / connect_s.max(1e-9));
    o.opt("broker_rss_kb_before", rss0.map(|x| x as f64));
    o.opt("broker_rss_kb_after", rss1.map(|x| x as f64));
    o.opt(
        "rss_per_conn_kb",
        match (rss0, rss1) {
            (Some(b), Some(c)) => Some((c as f64 - b as f64) / a.conns.max(1) as f64),
            _ => None,
        },
    );
    o.n("alive", alive as f64);
    o.n("expected", a.conns as f64);
    o.n("lost", (a.conns - alive) as f64);
    o.n("deliver_s", deliver_s);
    o.n("loadgen_cpu_pct", lg_cpu);
    o.opt("broker_cpu_pct", br_cpu);
    o.print();
}

/// What the flood measured: seconds, messages published, messages received, and the CPU meter.
type FloodResult = (f64, u64, u64, (f64, Option<f64>));

/// Open-loop fan-in flood: N publishers (distinct topics) write QoS 0 PUBLISHes as fast as
/// the broker's sockets accept them, with no window: their socket buffers stay full and TCP
/// flow control is the only brake. One wildcard subscriber reads as fast as it can. A broker
/// that is the bottleneck should slow the publishers (stop reading them) rather than drop
/// messages to a subscriber that keeps up; anything published but never received after the
/// drain is lost. "Published" counts whole packets the kernel accepted from the publishers.
pub(crate) fn scenario_flood(a: &Args) {
    if a.qos != 0 {
        fail_out(a, "flood is QoS 0 only");
    }
    let mut net = Net::new(a);
    let tag = run_tag();
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    let t_setup = Instant::now();
    let sub = net
        .establish(vec![(format!("{tag}s0"), Some((format!("bench/{tag}/in/#"), 0)))], 1, deadline)
        .unwrap_or_else(|e| fail_out(a, &e))[0];
    let pub_specs: Vec<_> = (0..a.publishers).map(|i| (format!("{tag}p{i}"), None)).collect();
    let pubs = net.establish(pub_specs, a.connect_batch, deadline).unwrap_or_else(|e| fail_out(a, &e));
    let setup_s = t_setup.elapsed().as_secs_f64();

    // One ring of whole packets per publisher (~256 KB; the write size per syscall).
    let payload = vec![0xA5u8; a.payload];
    let mut rings = Vec::new();
    for i in 0..pubs.len() {
        let (pkt, _, _) = enc_publish(&format!("bench/{tag}/in/p{i}"), 0, 0, &payload);
        let unit = Template::new(&pkt, a.ws).bytes;
        let n = ((256 * 1024) / unit.len()).max(1);
        rings.push((Arc::new(unit.repeat(n)), unit.len()));
    }
    let published = |net: &Net| -> u64 { pubs.iter().map(|&p| net.conns[p].flood_packets()).sum() };

    let t0 = Instant::now();
    for (k, &p) in pubs.iter().enumerate() {
        let (ring, unit) = rings[k].clone();
        net.conns[p].flood_start(ring, unit);
    }
    let t_meas = t0 + Duration::from_secs_f64(a.warmup);
    let t_end = t_meas + Duration::from_secs_f64(a.duration);
    let t_drain_max = t_end + Duration::from_secs_f64(a.drain);
    // The drain also ends once nothing has arrived for this long after the publishers stopped
    // (a broker that dropped messages would otherwise always cost the whole drain).
    let quiet = Duration::from_millis(500);
    let mut meter: Option<CpuMeter> = None;
    let (mut pub_meas, mut recv_meas) = (0u64, 0u64);
    let mut result: Option<FloodResult> = None;
    let mut last_recv = 0u64;
    let mut last_progress = Instant::now();
    let mut rss_max = 0u64;
    let me = std::process::id();
    loop {
        let now = Instant::now();
        if now > deadline {
            fail_out(a, "overall timeout");
        }
        if meter.is_none() && result.is_none() && now >= t_meas {
            meter = Some(CpuMeter::start(a.broker_pid));
            pub_meas = published(&net);
            recv_meas = net.received;
        }
        if result.is_none() && now >= t_end {
            let cpu = meter.take().unwrap_or_else(|| CpuMeter::start(a.broker_pid)).stop();
            let el = (now - t_meas).as_secs_f64();
            result = Some((el, published(&net) - pub_meas, net.received - recv_meas, cpu));
            rss_max = rss_max.max(rss_kb(me));
            for &p in &pubs {
                net.conns[p].flood_stop();
            }
            last_progress = now;
        }
        if net.received != last_recv {
            last_recv = net.received;
            last_progress = now;
        }
        if result.is_some() {
            let stopped = pubs.iter().all(|&p| !net.conns[p].flooding());
            if stopped && net.received >= published(&net) {
                break;
            }
            if now > t_drain_max || (stopped && now - last_progress > quiet) {
                break;
            }
        }
        if let Err(e) = net.turn(Duration::from_millis(1)) {
            fail_out(a, &e);
        }
    }
    let drain_s = (Instant::now() - t_end).as_secs_f64();
    let (el, pub_w, recv_w, (lg_cpu, br_cpu)) = result.unwrap();
    let total_pub = published(&net);
    let lost = total_pub.saturating_sub(net.received);
    let mut o = Out::new(a);
    o.tls(&net);
    o.n("qos", 0.0);
    o.n("payload", a.payload as f64);
    o.n("publishers", pubs.len() as f64);
    o.n("subscribers", 1.0);
    o.n("setup_s", setup_s);
    o.n("elapsed_s", el);
    o.n("msgs_per_sec", recv_w as f64 / el);
    o.n("published_per_sec", pub_w as f64 / el);
    o.n("mbytes_per_sec", recv_w as f64 * a.payload as f64 / el / 1e6);
    o.n("published_window", pub_w as f64);
    o.n("received_window", recv_w as f64);
    o.n("sent", total_pub as f64);
    o.n("expected", total_pub as f64);
    o.n("received", net.received as f64);
    o.n("lost", lost as f64);
    o.n("loss_pct", if total_pub > 0 { lost as f64 * 100.0 / total_pub as f64 } else { 0.0 });
    o.n("drain_s", drain_s);
    o.n("subscriber_pubs", net.conns[sub].pubs as f64);
    o.n("loadgen_rss_kb", rss_max as f64);
    o.n("loadgen_cpu_pct", lg_cpu);
    o.opt("broker_cpu_pct", br_cpu);
    o.print();
}
