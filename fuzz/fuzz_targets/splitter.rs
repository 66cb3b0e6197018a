//! The splitter fed arbitrary bytes in arbitrary chunks: no panic, no hang, and every
//! fragment it hands out can be rewritten (shifted, renumbered, durations filled) into a
//! fragment that parses again with the same samples; and cut by track, at key frames and at
//! a time (what `package` does to other muxers' fragments) into pieces that hold every
//! sample once, in order.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use websocketlivestream::fmp4::rewriter::{self, DurationFill, Rewrite, TrackShift};
use websocketlivestream::fmp4::{Fragment, Splitter, Unit};

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose the chunk size, the rest is the stream.
    let (size, data) = match input {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])).max(1), rest),
        _ => return,
    };
    let data = Bytes::copy_from_slice(data);
    let mut splitter = Splitter::new(1 << 20);
    let mut init = None;
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + size).min(data.len());
        splitter.feed(data.slice(pos..end));
        pos = end;
        loop {
            match splitter.poll() {
                Ok(Some(Unit::Init(i))) => init = Some(i),
                Ok(Some(Unit::Fragment(fragment))) => {
                    let Some(init) = init.as_ref() else {
                        panic!("a fragment before any init");
                    };
                    check_cuts(&fragment, init);
                    check_rewrite(fragment, init);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = splitter.finish();
});

fn check_cuts(fragment: &Fragment, init: &websocketlivestream::fmp4::InitSegment) {
    use websocketlivestream::fmp4::{split_at, split_at_key_frames, split_by_track};
    let Ok(parts) = split_by_track(fragment, init) else {
        return;
    };
    let samples = |fs: &[Fragment], track: u32| -> (u32, u64) {
        fs.iter()
            .filter_map(|f| f.run(track))
            .fold((0, 0), |(n, d), r| (n + r.sample_count, d + r.data_size))
    };
    for run in &fragment.runs {
        let kept = samples(&parts, run.track_id);
        assert_eq!(kept, (run.sample_count, run.data_size), "split by track");
    }
    for part in &parts {
        let Some(run) = part.runs.first().copied() else {
            continue;
        };
        if let Ok(pieces) = split_at_key_frames(part, init) {
            assert_eq!(samples(&pieces, run.track_id), (run.sample_count, run.data_size));
            let mut time = run.decode_time;
            for piece in &pieces {
                let r = piece.run(run.track_id).expect("a piece of the track");
                assert_eq!(r.decode_time, time, "pieces follow each other");
                time = r.end_time();
            }
        }
        let middle = run.decode_time.saturating_add(run.duration / 2);
        if let Ok(Some((before, after))) = split_at(part, middle, init) {
            let (b, a) = (before.runs[0], after.runs[0]);
            assert_eq!(b.sample_count + a.sample_count, run.sample_count);
            assert_eq!(b.data_size + a.data_size, run.data_size);
            assert_eq!(b.end_time(), a.decode_time);
            assert!(a.decode_time >= middle);
        }
    }
}

fn check_rewrite(fragment: Fragment, init: &websocketlivestream::fmp4::InitSegment) {
    let shifts: Vec<TrackShift> = fragment
        .runs
        .iter()
        .map(|r| TrackShift {
            track_id: r.track_id,
            ticks: 1 << 33,
        })
        .collect();
    let fills: Vec<DurationFill> = fragment
        .runs
        .iter()
        .map(|r| DurationFill {
            track_id: r.track_id,
            duration: 512,
        })
        .collect();
    let rewrite = Rewrite {
        shifts: &shifts,
        sequence: Some(7),
        fill_durations: &fills,
    };
    let Ok(rewritten) = rewriter::apply(fragment.clone(), &rewrite) else {
        return;
    };
    let reparsed =
        Fragment::parse(rewritten.bytes.clone(), 0, init).expect("a rewritten fragment parses");
    assert_eq!(reparsed.sequence, 7);
    assert_eq!(reparsed.runs.len(), fragment.runs.len());
    for (before, after) in fragment.runs.iter().zip(&reparsed.runs) {
        assert_eq!(after.decode_time, before.decode_time + (1 << 33));
        assert_eq!(after.sample_count, before.sample_count);
        assert_eq!(after.data_size, before.data_size);
        assert_eq!(after.starts_with_sync, before.starts_with_sync);
    }
    assert_eq!(
        reparsed.runs, rewritten.runs,
        "the summary matches the bytes"
    );
    assert_eq!(reparsed.mdat_payload(), fragment.mdat_payload());
}
