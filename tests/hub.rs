//! The hub's promise to viewers, on real ffmpeg fragments: a viewer that falls behind is left
//! out up to a fresh key frame, told how much it missed, and never handed a broken picture.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use websocketlivestream::fmp4::Fragment;
use websocketlivestream::stream::{Delivery, Hub, HubConfig, Subscription};

const MAX_LAG: Duration = Duration::from_millis(40);

/// The fixture's fragments cut into groups, each starting at a key frame of the video track.
fn groups() -> (
    Arc<websocketlivestream::fmp4::InitSegment>,
    Vec<Vec<Fragment>>,
) {
    let (init, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let video = init.reference_track().expect("a video track").id;
    let mut groups: Vec<Vec<Fragment>> = Vec::new();
    for fragment in fragments {
        if fragment.starts_with_sync_of(video) || groups.is_empty() {
            groups.push(Vec::new());
        }
        groups.last_mut().expect("a group").push(fragment);
    }
    // The first "group" may hold audio from before the first key frame.
    groups.retain(|g| g[0].starts_with_sync_of(video));
    assert!(groups.len() >= 2, "the fixture has {} groups", groups.len());
    // The hub looks at key frames and arrival times, not at decode times: the fixture's
    // groups, repeated, make a longer stream.
    let groups = groups.iter().cycle().take(5).cloned().collect();
    (init, groups)
}

/// Everything the viewer has ready at `now`.
fn drain(hub: &Hub, viewer: &mut Subscription, now: Instant) -> Vec<Delivery> {
    let window = hub.events_since(viewer.next_number(), now);
    std::iter::from_fn(|| viewer.next_in(&window)).collect()
}

fn keys(deliveries: &[Delivery]) -> Vec<bool> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Fragment(_, f) => Some(f.key),
            _ => None,
        })
        .collect()
}

#[test]
fn a_viewer_behind_skips_to_a_fresh_key_frame_and_is_told_how_much() {
    let (init, groups) = groups();
    let video = init.reference_track().expect("a video track").id;
    let hub = Hub::new(
        HubConfig {
            max_viewer_lag: MAX_LAG,
            ..HubConfig::default()
        },
        1,
    );
    hub.set_init(init);
    let start = Instant::now();
    for fragment in groups[0].clone() {
        hub.push(fragment, start);
    }
    let mut viewer = hub.subscribe();
    let joined = drain(&hub, &mut viewer, start);
    assert!(matches!(joined[0], Delivery::Init(_)), "{joined:?}");
    assert_eq!(
        keys(&joined).first(),
        Some(&true),
        "a join starts at a key frame"
    );
    assert_eq!(keys(&joined).len(), groups[0].len());

    // Two whole groups arrive while the viewer reads nothing; they go stale, key frames too.
    let stale: usize = groups[1].len() + groups[2].len();
    for fragment in groups[1].iter().chain(&groups[2]).cloned() {
        hub.push(fragment, start);
    }
    // A fresh group follows, three times the maximum lag later.
    let later = start + MAX_LAG * 3;
    for fragment in groups[3].clone() {
        hub.push(fragment, later);
    }
    let after = drain(&hub, &mut viewer, later);
    match after.first() {
        Some(Delivery::Skipped(n)) => assert_eq!(*n as usize, stale, "{after:?}"),
        other => panic!("expected a skip first, got {other:?}"),
    }
    // Then the fresh group, whole, from its key frame.
    let expected: Vec<bool> = groups[3]
        .iter()
        .map(|f| f.starts_with_sync_of(video))
        .collect();
    assert_eq!(keys(&after), expected);
    assert_eq!(after.len(), 1 + groups[3].len(), "{after:?}");

    // Caught up: the next group comes whole, with no skip.
    for fragment in groups[4].clone() {
        hub.push(fragment, later);
    }
    let next = drain(&hub, &mut viewer, later);
    assert!(
        next.iter().all(|d| matches!(d, Delivery::Fragment(..))),
        "{next:?}"
    );
}

#[test]
fn a_viewer_whose_queue_went_stale_is_told_and_resumes_at_the_next_key_frame() {
    let (init, groups) = groups();
    let hub = Hub::new(HubConfig::default(), 1);
    hub.set_init(init);
    let now = Instant::now();
    for fragment in groups[0].clone() {
        hub.push(fragment, now);
    }
    let mut viewer = hub.subscribe();
    let taken = drain(&hub, &mut viewer, now);
    assert_eq!(keys(&taken).len(), groups[0].len());
    // The fan-out could not send what it took; it drops the fragments still queued.
    let unsent = 3;
    viewer.skip_to_key(unsent);
    // Fragments up to the next key frame are left out too, and counted.
    let rest_of_group: Vec<_> = groups[1].iter().skip(1).cloned().collect();
    for fragment in rest_of_group.iter().cloned() {
        hub.push(fragment, now);
    }
    for fragment in groups[2].clone() {
        hub.push(fragment, now);
    }
    let after = drain(&hub, &mut viewer, now);
    match after.first() {
        Some(Delivery::Skipped(n)) => {
            assert_eq!(
                *n as usize,
                unsent as usize + rest_of_group.len(),
                "{after:?}"
            )
        }
        other => panic!("expected a skip first, got {other:?}"),
    }
    assert_eq!(keys(&after).first(), Some(&true), "then a key frame");
    assert_eq!(keys(&after).len(), groups[2].len());
}
