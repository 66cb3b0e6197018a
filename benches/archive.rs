//! A recording's index at a year's size (simulated: 500,000 segments of 2 s with a gap every
//! 10,000): reading it back at start (`Archive::open`, what a restarted server does before it
//! can list anything) and what `GET /api/recordings/{name}` does per request (the spans, the
//! bytes, under the index's read lock).
//!
//! `cargo bench --bench archive`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use websocketlivestream::stream::archive::{Archive, Entry, EntryTrack, spans};

const SEGMENTS: u64 = 500_000;

/// A folder holding an index of `SEGMENTS` entries, written as the recorder writes them.
fn year_of_index() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsls-bench-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench folder");
    let mut text = String::with_capacity(SEGMENTS as usize * 260);
    let mut wall = 1_764_547_200_000u64; // 2025-12-01T00:00:00Z
    for number in 0..SEGMENTS {
        if number % 10_000 == 0 && number > 0 {
            wall += 60_000; // the source down for a minute
        }
        let entry = Entry {
            number,
            init: "init.mp4".into(),
            wall_start_ms: wall,
            start: number * 180_000,
            duration: 180_000,
            timescale: 90_000,
            bytes: 500_000,
            key: true,
            tracks: vec![
                EntryTrack {
                    id: 1,
                    start: number * 180_000,
                    duration: 180_000,
                    bytes: 470_000,
                },
                EntryTrack {
                    id: 2,
                    start: number * 96_000,
                    duration: 96_000,
                    bytes: 30_000,
                },
            ],
        };
        // The segment itself (empty here): the index lists only what is on disk.
        std::fs::File::create(dir.join(format!("{number}.m4s"))).expect("a segment file");
        text.push_str(&serde_json::to_string(&entry).expect("an entry"));
        text.push('\n');
        wall += 2_000;
    }
    std::fs::write(dir.join("segments.jsonl"), text).expect("writing the index");
    dir
}

fn bench(c: &mut Criterion) {
    let dir = year_of_index();
    let mut group = c.benchmark_group("archive_500k");
    group.sample_size(10);
    group.bench_function("open", |b| {
        b.iter(|| black_box(Archive::open(&dir).entries().len()))
    });
    let archive = Archive::open(&dir);
    assert_eq!(archive.entries().len() as u64, SEGMENTS);
    group.bench_function("list", |b| {
        b.iter(|| {
            let entries = archive.entries();
            let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
            let spans = spans(entries.iter());
            assert_eq!(spans.len(), 50);
            black_box((bytes, spans))
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
