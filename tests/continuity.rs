//! A source's timeline across runs: restarts shifted on, resumed relays de-duplicated and
//! passed through byte for byte.

mod common;

use common::*;
use websocketlivestream::fmp4::{Atom, Fragment};
use websocketlivestream::source::{Continuity, Policy};

fn fragments() -> (
    std::sync::Arc<websocketlivestream::fmp4::InitSegment>,
    Vec<Fragment>,
) {
    split_whole(&fixture("av-per-frame.mp4"))
}

fn feed(c: &mut Continuity, fragments: &[Fragment]) -> Vec<Fragment> {
    fragments
        .iter()
        .filter_map(|f| c.apply(f.clone()).expect("apply"))
        .collect()
}

fn end_secs(
    init: &websocketlivestream::fmp4::InitSegment,
    fragments: &[Fragment],
    track: u32,
) -> f64 {
    let ts = init.track(track).expect("track").timescale;
    fragments
        .iter()
        .filter_map(|f| f.run(track))
        .map(|r| r.end_time())
        .max()
        .expect("samples") as f64
        / f64::from(ts)
}

#[test]
fn a_restarted_source_is_shifted_past_what_came_before() {
    let (init, all) = fragments();
    let video = init.video().expect("video").id;
    let mut c = Continuity::new(Policy::Restart);
    c.on_init(&init);
    let first = feed(&mut c, &all);
    assert_eq!(
        first.iter().map(|f| &f.bytes).collect::<Vec<_>>(),
        all.iter().map(|f| &f.bytes).collect::<Vec<_>>(),
        "a first run passes through"
    );
    c.restart();
    c.on_init(&init);
    let second = feed(&mut c, &all);
    assert_eq!(second.len(), all.len(), "nothing dropped");
    let first_end = end_secs(&init, &first, video);
    let ts = f64::from(init.video().expect("v").timescale);
    let second_start = second
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| r.decode_time)
        .min()
        .expect("video") as f64
        / ts;
    assert!(
        second_start >= first_end - 0.001,
        "{second_start} < {first_end}"
    );
    assert!(
        second_start - first_end < 0.05,
        "a gap of {} s",
        second_start - first_end
    );
    let last_seq = first.last().expect("fragments").sequence;
    assert_eq!(
        second[0].sequence,
        last_seq + 1,
        "sequence numbers keep counting"
    );
}

#[test]
fn a_resumed_relay_drops_what_it_has_and_passes_the_rest_through() {
    let (init, all) = fragments();
    let mut c = Continuity::new(Policy::Resume);
    c.on_init(&init);
    let cut = all.len() * 2 / 3;
    let before = feed(&mut c, &all[..cut]);
    // The upstream resends from a while back (its newest group of pictures).
    c.restart();
    c.on_init(&init);
    let resend_from = all.len() / 3;
    let after = feed(&mut c, &all[resend_from..]);
    assert_eq!(
        after.len(),
        all.len() - cut,
        "exactly the overlap is dropped"
    );
    for (got, expected) in after.iter().zip(&all[cut..]) {
        assert_eq!(got.bytes, expected.bytes, "passed through byte for byte");
    }
    assert_eq!(before.len(), cut);
}

#[test]
fn a_relay_whose_upstream_started_a_new_timeline_is_shifted() {
    let (init, all) = fragments();
    let video = init.video().expect("video").id;
    let mut c = Continuity::new(Policy::Resume);
    c.on_init(&init);
    let first = feed(&mut c, &all);
    c.restart();
    c.timeline_changed();
    c.on_init(&init);
    let second = feed(&mut c, &all);
    assert_eq!(second.len(), all.len(), "a new timeline is not an overlap");
    let first_end = end_secs(&init, &first, video);
    let ts = f64::from(init.video().expect("v").timescale);
    let start = second
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| r.decode_time)
        .min()
        .expect("v") as f64
        / ts;
    assert!(start >= first_end - 0.001);
}

#[test]
fn zero_durations_get_the_tracks_frame_interval() {
    let (init, all) = fragments();
    let video = init.video().expect("video").id;
    // Rewrite every video fragment after the first to say duration 0, as ffmpeg does in some
    // input layouts.
    let zeroed: Vec<Fragment> = all
        .iter()
        .map(|f| {
            let Some(run) = f.run(video) else {
                return f.clone();
            };
            if run.decode_time == 0 {
                return f.clone();
            }
            let moof = f.bytes.slice(f.moof_start..f.mdat_start);
            let mut moof = websocketlivestream::fmp4::Moof::decode(&moof).expect("moof");
            moof.traf[0].tfhd.default_sample_duration = Some(0);
            let mut bytes = bytes::BytesMut::new();
            bytes.extend_from_slice(&f.bytes[..f.moof_start]);
            moof.encode(&mut bytes);
            bytes.extend_from_slice(&f.bytes[f.mdat_start..]);
            Fragment::parse(bytes.freeze(), 0, &init).expect("parses")
        })
        .collect();
    assert!(
        zeroed
            .iter()
            .filter_map(|f| f.run(video))
            .filter(|r| r.duration == 0)
            .count()
            > 10
    );
    let mut c = Continuity::new(Policy::Restart);
    c.on_init(&init);
    let fixed = feed(&mut c, &zeroed);
    let durations: Vec<u64> = fixed
        .iter()
        .filter_map(|f| f.run(video))
        .map(|r| r.duration)
        .collect();
    assert!(durations.iter().all(|d| *d > 0), "{durations:?}");
    // From the third frame on, the interval is the real one: 512 ticks at 15360 Hz.
    assert!(durations[3..].iter().all(|d| *d == 512), "{durations:?}");
}
