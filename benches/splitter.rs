//! Splitter plus segmenter over a large stream fed in 64 KiB chunks, as ffmpeg's pipe would
//! deliver it. The stream is the bundled sample clip looped (decode times shifted each pass),
//! about 120 MB of 720p H.264 and AAC, one fragment per frame.
//!
//! `cargo bench --bench splitter` prints the throughput; the target is 3 GB/s.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use websocketlivestream::fmp4::rewriter::{self, TrackShift};
use websocketlivestream::fmp4::{Segmenter, Splitter, Unit};

const SAMPLE: &[u8] = include_bytes!("../res/sample.mp4");
const PASSES: u64 = 100;
const CHUNK: usize = 64 * 1024;

/// The sample looped `PASSES` times, as one fMP4 byte stream.
fn large_stream() -> Bytes {
    let mut splitter = Splitter::default();
    splitter.feed(Bytes::from_static(SAMPLE));
    let mut init = None;
    let mut fragments = Vec::new();
    while let Some(unit) = splitter.poll().expect("sample splits") {
        match unit {
            Unit::Init(i) => init = Some(i),
            Unit::Fragment(f) => fragments.push(f),
        }
    }
    let init = init.expect("init");
    let reference = init.reference_track().expect("track");
    let pass_ticks: u64 = fragments
        .iter()
        .filter_map(|f| f.run(reference.id))
        .map(|r| r.duration)
        .sum();
    let mut out = BytesMut::new();
    out.extend_from_slice(&init.bytes);
    let mut sequence = 1;
    for pass in 0..PASSES {
        let shifts: Vec<TrackShift> = init
            .tracks
            .iter()
            .map(|t| TrackShift {
                track_id: t.id,
                ticks: (pass * pass_ticks * u64::from(t.timescale) / u64::from(reference.timescale))
                    as i64,
            })
            .collect();
        for fragment in &fragments {
            let shifted =
                rewriter::rewrite(fragment.clone(), &shifts, Some(sequence)).expect("rewrite");
            sequence += 1;
            out.extend_from_slice(&shifted.bytes);
        }
    }
    out.freeze()
}

fn split_and_segment(stream: &Bytes) -> (usize, u64) {
    let mut splitter = Splitter::default();
    let mut segmenter: Option<Segmenter> = None;
    let mut fragments = 0;
    let mut segments = 0;
    let mut pos = 0;
    while pos < stream.len() {
        let end = (pos + CHUNK).min(stream.len());
        splitter.feed(stream.slice(pos..end));
        pos = end;
        while let Some(unit) = splitter.poll().expect("valid stream") {
            match unit {
                Unit::Init(init) => {
                    let reference = init.reference_track().expect("track");
                    segmenter = Some(Segmenter::new(reference, 2.0, 1.0 / 3.0, 1));
                }
                Unit::Fragment(fragment) => {
                    fragments += 1;
                    if let Some(placement) = segmenter.as_mut().and_then(|s| s.push(&fragment)) {
                        segments += u64::from(placement.closed_segment.is_some());
                    }
                    black_box(&fragment);
                }
            }
        }
    }
    (fragments, segments)
}

fn bench(c: &mut Criterion) {
    let stream = large_stream();
    let (fragments, segments) = split_and_segment(&stream);
    eprintln!(
        "stream: {:.1} MB, {fragments} fragments, {segments} segments",
        stream.len() as f64 / 1e6
    );
    let mut group = c.benchmark_group("splitter+segmenter");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.sample_size(20);
    group.bench_function("64KiB chunks", |b| {
        b.iter(|| black_box(split_and_segment(&stream)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
