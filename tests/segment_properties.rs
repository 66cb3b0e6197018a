//! The segmenter's invariant, whatever comes in: every segment starts with a key frame of the
//! video track, and no sample is lost, duplicated or reordered. Random sample tables (key
//! frames anywhere, B-frame composition offsets, audio at its own rate) are planned into
//! fragments by `fmp4::progressive`, one track a fragment as `package` writes them, and cut by
//! the same window the live server and `package` use, with random segment and fragment
//! durations.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proptest::prelude::*;
use websocketlivestream::fmp4::progressive::{self, Kind, Run, SampleRef, TrackSamples};
use websocketlivestream::fmp4::writer::{self, AudioConfig, AudioTrack, VideoConfig, VideoTrack};
use websocketlivestream::fmp4::{Fragment, InitSegment};
use websocketlivestream::stream::window::{Cutting, Window};

/// avcC of x264 High 1280x720, as ffmpeg writes it.
const AVCC: &[u8] = &[
    1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 26, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05,
    0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19,
    0x60, 1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb,
];

fn init() -> Arc<InitSegment> {
    let video = VideoTrack {
        config: VideoConfig::Avc(Bytes::from_static(AVCC)),
        width: 1280,
        height: 720,
        timescale: 90_000,
    };
    let audio = AudioTrack {
        config: AudioConfig::Aac(Bytes::from_static(&[0x11, 0x90])),
        sample_rate: 48_000,
        channels: 2,
        timescale: 48_000,
    };
    let bytes = writer::init_segment(Some(&video), Some(&audio)).expect("our init");
    Arc::new(InitSegment::parse(bytes, 0).expect("reads back"))
}

/// A video track: `frames` of (duration in 90 kHz ticks, key frame, composition offset).
fn video(frames: &[(u32, bool, i32)]) -> TrackSamples {
    let mut time = 0u64;
    let samples = frames
        .iter()
        .enumerate()
        .map(|(i, &(duration, key, offset))| {
            let sample = SampleRef {
                offset: 0,
                size: 1,
                duration,
                decode_time: time,
                composition_offset: offset,
                // The first frame is a key frame, as any decodable stream's.
                sync: key || i == 0,
            };
            time += u64::from(duration);
            sample
        })
        .collect();
    TrackSamples {
        track_id: writer::VIDEO_TRACK_ID,
        timescale: 90_000,
        kind: Kind::Video,
        samples,
        edit_media_time: 0,
    }
}

fn audio(seconds: f64, start_ticks: u64) -> TrackSamples {
    let count = (seconds * 48_000.0 / 1024.0) as u64;
    TrackSamples {
        track_id: writer::AUDIO_TRACK_ID,
        timescale: 48_000,
        kind: Kind::Audio,
        samples: (0..count)
            .map(|i| SampleRef {
                offset: 0,
                size: 1,
                duration: 1024,
                decode_time: start_ticks + i * 1024,
                composition_offset: 0,
                sync: true,
            })
            .collect(),
        edit_media_time: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_segment_starts_with_a_video_key_frame_and_keeps_every_sample(
        frames in prop::collection::vec((1u32..9000, prop::bool::weighted(0.08), -3000i32..6000), 1..400),
        audio_start in 0u64..4096,
        audio_first in any::<bool>(),
        segment_secs in 0.5f64..4.0,
        fragment_secs in prop::option::of(0.1f64..0.5),
    ) {
        let video = video(&frames);
        let seconds = video.duration_secs();
        let audio = audio(seconds, audio_start);
        // The order tracks are listed in must not matter.
        let tracks = if audio_first { vec![audio, video] } else { vec![video, audio] };
        let plan = progressive::plan_fragments(&tracks, fragment_secs);
        // Every sample once, in order, across the fragments.
        for (t, track) in tracks.iter().enumerate() {
            let mut next = 0;
            for ranges in &plan {
                prop_assert_eq!(ranges[t].start, next);
                next = ranges[t].end;
            }
            prop_assert_eq!(next, track.samples.len());
        }
        let init = init();
        let mut window = Window::new(Cutting { segment_secs, part_secs: 0.5, keep: usize::MAX }, 1);
        window.set_init(init.clone()).expect("a reference track");
        let mut sequence = 0;
        let mut pushed = vec![0u64; 2];
        let video_index = tracks.iter().position(|t| t.kind == Kind::Video).expect("video");
        let mut order: Vec<usize> = vec![video_index, 1 - video_index];
        order.dedup();
        for ranges in &plan {
            for &t in &order {
                let samples = &tracks[t].samples[ranges[t].clone()];
                if samples.is_empty() {
                    continue;
                }
                sequence += 1;
                let (mut buf, media) = progressive::fragment_header(
                    sequence,
                    &[Run { track_id: tracks[t].track_id, samples }],
                );
                buf.resize(buf.len() + media as usize, 0);
                let fragment = Fragment::parse(buf.freeze(), 0, &init).expect("reads back");
                pushed[t] += samples.len() as u64;
                window.push(fragment, Instant::now(), 0);
            }
        }
        window.finish();
        let snapshot = window.snapshot(websocketlivestream::stream::Status::Ended);
        let mut kept = vec![0u64; 2];
        for segment in &snapshot.segments {
            let first_video = segment
                .fragments
                .iter()
                .find_map(|f| f.fragment.run(writer::VIDEO_TRACK_ID));
            if let Some(run) = first_video {
                prop_assert!(run.starts_with_sync, "segment {} starts at a non-key frame", segment.number);
            }
            // Nothing of the segment comes before its key frame.
            let first = segment.fragments.first().expect("a fragment");
            prop_assert!(first.fragment.run(writer::VIDEO_TRACK_ID).is_some_and(|r| r.starts_with_sync),
                "segment {} opens with something other than its key frame", segment.number);
            for f in &segment.fragments {
                for run in &f.fragment.runs {
                    let t = tracks.iter().position(|t| t.track_id == run.track_id).expect("a track");
                    kept[t] += u64::from(run.sample_count);
                }
            }
        }
        prop_assert_eq!(kept, pushed);
    }
}
