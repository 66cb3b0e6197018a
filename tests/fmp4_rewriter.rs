//! The rewriter against real fragments: time shifts, renumbering, zero durations filled in.

mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use websocketlivestream::fmp4::rewriter::{self, DurationFill, Rewrite, TrackShift};
use websocketlivestream::fmp4::{Atom, ErrorKind, Fragment, InitSegment, Moof};

#[test]
fn rewriting_shifts_times_and_renumbers_in_place() {
    let (init, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let video = init.video().expect("video").id;
    let fragment = fragments
        .iter()
        .find(|f| f.run(video).is_some())
        .expect("video fragment")
        .clone();
    let before = fragment.run(video).expect("run").decode_time;
    let shifted = rewriter::rewrite(
        fragment.clone(),
        &[TrackShift {
            track_id: video,
            ticks: 15_360,
        }],
        Some(77),
    )
    .expect("rewrite");
    assert_eq!(
        shifted.len(),
        fragment.len(),
        "a v1 tfdt is patched in place"
    );
    assert_eq!(
        shifted.run(video).expect("run").decode_time,
        before + 15_360
    );
    assert_eq!(shifted.sequence, 77);
    // What the bytes now say, read back from scratch.
    let reparsed = Fragment::parse(shifted.bytes.clone(), 0, &init).expect("parses");
    assert_eq!(reparsed.run(video), shifted.run(video));
    assert_eq!(reparsed.sequence, 77);
    assert_eq!(reparsed.mdat_payload(), fragment.mdat_payload());

    // Below zero is an error, not a wrap-around.
    let err = rewriter::rewrite(
        fragment,
        &[TrackShift {
            track_id: video,
            ticks: -(1 << 40),
        }],
        None,
    )
    .expect_err("negative time");
    assert!(matches!(err.kind, ErrorKind::Overflow(_)));
}

#[test]
fn rewriting_past_32_bits_upgrades_tfdt_and_moves_data_offsets() {
    // ffmpeg writes version-1 tfdt; build a version-0 one to exercise the re-encode path.
    let (init, fragments) = split_whole(&fixture("audio-only.mp4"));
    let fragment = fragments[1].clone();
    let moof_bytes = fragment
        .bytes
        .slice(fragment.moof_start..fragment.mdat_start);
    let mut moof = Moof::decode(&moof_bytes).expect("moof");
    let tfdt = moof.traf[0].tfdt.as_mut().expect("tfdt");
    tfdt.version = 0;
    let shrink = 4;
    for trun in &mut moof.traf[0].trun {
        if let Some(off) = trun.data_offset.as_mut() {
            *off -= shrink;
        }
    }
    let mut v0 = BytesMut::new();
    v0.put_slice(&fragment.bytes[..fragment.moof_start]);
    moof.encode(&mut v0);
    v0.put_slice(&fragment.bytes[fragment.mdat_start..]);
    let v0 = Fragment::parse(v0.freeze(), 0, &init).expect("v0 parses");
    let track = v0.runs[0].track_id;
    let before = v0.runs[0].decode_time;

    let far = 1i64 << 33;
    let shifted = rewriter::rewrite(
        v0.clone(),
        &[TrackShift {
            track_id: track,
            ticks: far,
        }],
        None,
    )
    .expect("rewrite");
    assert_eq!(shifted.len(), v0.len() + 4, "tfdt grew to version 1");
    let reparsed = Fragment::parse(shifted.bytes.clone(), 0, &init).expect("parses");
    assert_eq!(reparsed.runs[0].decode_time, before + far as u64);
    assert_eq!(reparsed.mdat_payload(), v0.mdat_payload());
}

/// The first video fragment of the fixture, rebuilt with its moof changed by `edit`.
fn video_fragment_with(edit: impl Fn(&mut Moof)) -> (std::sync::Arc<InitSegment>, Fragment) {
    let (init, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let video = init.video().expect("video").id;
    let fragment = fragments
        .iter()
        .filter(|f| f.run(video).is_some())
        .nth(3)
        .expect("a video fragment")
        .clone();
    let mut moof = Moof::decode(
        &fragment
            .bytes
            .slice(fragment.moof_start..fragment.mdat_start),
    )
    .expect("moof");
    let before = moof.encoded_len() as i32;
    edit(&mut moof);
    let growth = moof.encoded_len() as i32 - before;
    for trun in &mut moof.traf[0].trun {
        if let Some(offset) = trun.data_offset.as_mut() {
            *offset += growth;
        }
    }
    let mut bytes = BytesMut::new();
    bytes.put_slice(&fragment.bytes[..fragment.moof_start]);
    moof.encode(&mut bytes);
    bytes.put_slice(&fragment.bytes[fragment.mdat_start..]);
    let rebuilt = Fragment::parse(bytes.freeze(), 0, &init).expect("rebuilt fragment parses");
    (init, rebuilt)
}

#[test]
fn a_zero_default_duration_is_filled_in_place() {
    // ffmpeg's live fMP4 writes tfhd default_sample_duration = 0 for every video frame.
    let (init, zero) = video_fragment_with(|moof| {
        moof.traf[0].tfhd.default_sample_duration = Some(0);
    });
    let video = zero.runs[0].track_id;
    assert_eq!(zero.runs[0].duration, 0);
    let filled = rewriter::apply(
        zero.clone(),
        &Rewrite {
            fill_durations: &[DurationFill {
                track_id: video,
                duration: 512,
            }],
            ..Rewrite::default()
        },
    )
    .expect("fill");
    assert_eq!(filled.len(), zero.len(), "patched in place");
    assert_eq!(filled.runs[0].duration, 512);
    let reparsed = Fragment::parse(filled.bytes.clone(), 0, &init).expect("parses");
    assert_eq!(reparsed.runs[0].duration, 512, "the bytes say so too");
    assert_eq!(reparsed.runs[0].decode_time, zero.runs[0].decode_time);
}

#[test]
fn a_duration_only_trex_gives_is_added_to_tfhd() {
    // No duration in tfhd or trun, and trex says 0: the field must be added.
    let (init, zero) = video_fragment_with(|moof| {
        moof.traf[0].tfhd.default_sample_duration = None;
    });
    let video = zero.runs[0].track_id;
    assert_eq!(zero.runs[0].duration, 0, "the fixture's trex default is 0");
    let filled = rewriter::apply(
        zero.clone(),
        &Rewrite {
            fill_durations: &[DurationFill {
                track_id: video,
                duration: 512,
            }],
            ..Rewrite::default()
        },
    )
    .expect("fill");
    assert_eq!(filled.len(), zero.len() + 4, "tfhd grew by one field");
    let reparsed = Fragment::parse(filled.bytes.clone(), 0, &init).expect("parses");
    assert_eq!(reparsed.runs[0].duration, 512);
    assert_eq!(
        reparsed.mdat_payload(),
        zero.mdat_payload(),
        "data offsets moved with the moof"
    );
}

#[test]
fn durations_that_are_set_are_left_alone() {
    let (_, fragment) = video_fragment_with(|_| {});
    let video = fragment.runs[0].track_id;
    let before = fragment.runs[0].duration;
    assert!(before > 0);
    let same = rewriter::apply(
        fragment.clone(),
        &Rewrite {
            fill_durations: &[DurationFill {
                track_id: video,
                duration: 999,
            }],
            ..Rewrite::default()
        },
    )
    .expect("apply");
    assert_eq!(same.bytes, fragment.bytes);
    assert_eq!(same.runs[0].duration, before);
}

/// Found by the `splitter` fuzz target: a track whose `trex` gives a default duration and whose
/// fragments name none was taken to last 0 and "filled", so the summary and the bytes
/// disagreed. The rewriter fills only runs that really last 0.
#[test]
fn fuzz_regression_a_trex_default_duration_is_not_refilled() {
    let input = fixture("fuzz/splitter-trex-default-duration.bin").slice(2..);
    let mut splitter = websocketlivestream::fmp4::Splitter::default();
    splitter.feed(input);
    let mut init = None;
    let mut checked = 0;
    while let Ok(Some(unit)) = splitter.poll() {
        match unit {
            websocketlivestream::fmp4::Unit::Init(i) => init = Some(i),
            websocketlivestream::fmp4::Unit::Fragment(fragment) => {
                let init = init.as_ref().expect("init first");
                let fills: Vec<DurationFill> = fragment
                    .runs
                    .iter()
                    .map(|r| DurationFill {
                        track_id: r.track_id,
                        duration: 512,
                    })
                    .collect();
                let before = fragment.runs.clone();
                let rewritten = rewriter::apply(
                    fragment,
                    &Rewrite {
                        fill_durations: &fills,
                        ..Rewrite::default()
                    },
                )
                .expect("rewrite");
                let reparsed = Fragment::parse(rewritten.bytes.clone(), 0, init).expect("parses");
                assert_eq!(reparsed.runs, rewritten.runs, "summary and bytes agree");
                assert_eq!(rewritten.runs, before, "nothing lasted 0, nothing changed");
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn a_prft_moves_with_its_track() {
    // After a restart the timeline is shifted; the producer reference time must say the same
    // media time as the frame it stamps, or players measure the wrong latency.
    let (init, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let video = init.video().expect("video").id;
    let fragment = fragments
        .iter()
        .find(|f| f.prft.is_some() && f.run(video).is_some())
        .expect("a video fragment with prft")
        .clone();
    let before = fragment.prft.expect("prft");
    for ticks in [15_360i64, 1 << 34] {
        let shifted = rewriter::rewrite(
            fragment.clone(),
            &[TrackShift {
                track_id: video,
                ticks,
            }],
            None,
        )
        .expect("rewrite");
        let reparsed = Fragment::parse(shifted.bytes.clone(), 0, &init).expect("parses");
        let after = reparsed.prft.expect("prft kept");
        assert_eq!(after.media_time, before.media_time + ticks as u64);
        assert_eq!(
            after.ntp_timestamp, before.ntp_timestamp,
            "the wall clock stays"
        );
        assert_eq!(shifted.prft, reparsed.prft);
        assert_eq!(reparsed.mdat_payload(), fragment.mdat_payload());
    }
    // Another track's shift leaves it alone.
    let audio = init.audio().expect("audio").id;
    let other = rewriter::rewrite(
        fragment.clone(),
        &[TrackShift {
            track_id: audio,
            ticks: 48_000,
        }],
        None,
    )
    .expect("rewrite");
    assert_eq!(other.prft, fragment.prft);
}
