//! Micro-benchmark of the hot codecs (no criterion: a plain timed loop, for profiling with perf or
//! callgrind). Run: `cargo bench --bench codec`.

use std::hint::black_box;
use std::time::Instant;

use midge::mqtt::properties::write_user_property;
use midge::mqtt::{
    decode_packet, encode_packet, encode_publish_header, Packet, ProtocolLevel, Publish, PublishProperties,
    PublishPropertyBlock, PublishV5Extras, QoS, UserProperties,
};
use midge::ws::{FrameDecoder, WsEvent};

fn time<F: FnMut() -> usize>(name: &str, iterations: usize, mut f: F) {
    let start = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..iterations {
        bytes = bytes.wrapping_add(black_box(f()));
    }
    let elapsed = start.elapsed();
    let per = elapsed.as_nanos() as f64 / iterations as f64;
    println!("{name:<40} {per:>9.1} ns/iter  ({:.0} MB/s)", bytes as f64 / elapsed.as_secs_f64() / 1e6);
}

fn main() {
    for size in [16usize, 1024, 65536] {
        let payload = vec![0xA5u8; size];
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "sensors/building-1/floor-2/temperature",
            packet_id: Some(7),
            payload: &payload,
            properties: Default::default(),
        };
        let mut wire = Vec::new();
        for _ in 0..64 {
            encode_packet(&Packet::Publish(publish.clone()), ProtocolLevel::V311, &mut wire);
        }
        let iterations = (200_000_000 / (size + 64)).max(1000);
        time(&format!("mqtt decode 64 x PUBLISH {size} B"), iterations / 64 + 1, || {
            let mut pos = 0;
            while let Ok(Some((p, n))) = decode_packet(&wire[pos..], ProtocolLevel::V311, usize::MAX) {
                black_box(&p);
                pos += n;
            }
            pos
        });
        let mut out = Vec::with_capacity(size + 64);
        time(&format!("mqtt encode PUBLISH header {size} B"), iterations, || {
            out.clear();
            encode_publish_header(
                publish.topic,
                publish.qos,
                false,
                false,
                Some(9),
                size,
                ProtocolLevel::V311,
                None,
                &mut out,
            );
            out.len() + size
        });

        // MQTT 5.0: the same PUBLISH without properties, and with the usual request/response set
        // (content type, response topic, correlation data, two user properties).
        let mut block = Vec::new();
        write_user_property(&mut block, "trace-id", "4bf92f3577b34da6");
        write_user_property(&mut block, "unit", "celsius");
        let rich = PublishProperties {
            payload_format_indicator: Some(1),
            content_type: Some("application/json"),
            response_topic: Some("replies/client-42"),
            correlation_data: Some(b"req-0001"),
            user_properties: UserProperties::from_block(&block).unwrap(),
            ..Default::default()
        };
        for (label, properties) in [("no properties", PublishProperties::default()), ("5 properties", rich)] {
            let mut wire = Vec::new();
            let block = properties.to_block();
            let p = Publish { properties: PublishPropertyBlock::raw(&block), ..publish.clone() };
            for _ in 0..64 {
                encode_packet(&Packet::Publish(p.clone()), ProtocolLevel::V5, &mut wire);
            }
            time(&format!("v5 decode 64 x PUBLISH {size} B, {label}"), iterations / 64 + 1, || {
                let mut pos = 0;
                while let Ok(Some((p, n))) = decode_packet(&wire[pos..], ProtocolLevel::V5, usize::MAX) {
                    black_box(&p);
                    pos += n;
                }
                pos
            });
        }
        let mut forwarded = Vec::new();
        rich.forward(&mut forwarded);
        let extras = PublishV5Extras {
            topic_alias: Some(3),
            message_expiry_interval: Some(300),
            subscription_identifiers: &[7],
            forwarded: &forwarded,
        };
        time(&format!("v5 encode PUBLISH header {size} B, alias+expiry+fwd"), iterations, || {
            out.clear();
            encode_publish_header(
                "",
                publish.qos,
                false,
                false,
                Some(9),
                size,
                ProtocolLevel::V5,
                Some(&extras),
                &mut out,
            );
            out.len() + size
        });

        // A masked client frame holding the 64 packets.
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x82u8, 0xFF];
        frame.extend_from_slice(&(wire.len() as u64).to_be_bytes());
        frame.extend_from_slice(&mask);
        frame.extend(wire.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        // Unmasking twice restores the bytes, so the same buffer serves every iteration.
        time(&format!("ws unmask in place, 64 x {size} B"), iterations / 64 + 1, || {
            let mut decoder = FrameDecoder::new(usize::MAX);
            match decoder.decode_in_place(&mut frame) {
                Ok((n, WsEvent::Data(_))) => n,
                _ => 0,
            }
        });
    }

    // The broker's common case: a burst of small frames, one short PUBLISH each, in one read.
    // Decoding unmasks and slides them, so each iteration restores the burst first.
    let mask = [9u8, 8, 7, 6];
    let mut burst = Vec::new();
    for i in 0..64u8 {
        let packet = [0x30, 18, 0, 6, b's', b'e', b'n', b's', b'o', b'r', i, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        burst.extend_from_slice(&[0x82, 0x80 | packet.len() as u8]);
        burst.extend_from_slice(&mask);
        burst.extend(packet.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    let mut work = burst.clone();
    time("ws decode burst of 64 x 20 B frames", 2_000_000, || {
        work.copy_from_slice(&burst);
        let mut decoder = FrameDecoder::new(usize::MAX);
        let mut pos = 0;
        while let Ok((n, WsEvent::Data(_))) = decoder.decode_in_place(&mut work[pos..]) {
            pos += n;
        }
        pos
    });
}
