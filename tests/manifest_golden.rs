//! The manifests, written from fixed segment indexes and held against golden files in
//! `tests/golden/`, reviewed in the diff. `UPDATE_GOLDEN=1 cargo test --test manifest_golden`
//! writes them anew.

use std::path::PathBuf;

use websocketlivestream::manifest::dash::{
    self, AdaptationSet, LowLatency, Mpd, Period, Representation,
};
use websocketlivestream::manifest::hls::{
    self, MediaPlaylist, Multivariant, Part, PlaylistKind, Segment,
};

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("golden folder");
        std::fs::write(&path, actual).expect("writing golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it; review the diff)"
    );
}

fn video(timeline: Vec<(u64, u64)>) -> AdaptationSet {
    AdaptationSet {
        id: 0,
        content_type: "video",
        mime_type: "video/mp4",
        alternatives: Vec::new(),
        representation: Representation {
            id: "1".into(),
            codecs: "avc1.64001f".into(),
            bandwidth: 1_400_000,
            width: 1280,
            height: 720,
            frame_rate: Some("30".into()),
            audio_sampling_rate: 0,
            audio_channels: 0,
            timescale: 15360,
            initialization: "$RepresentationID$/init.mp4".into(),
            media: "$RepresentationID$/$Number$.m4s".into(),
            start_number: 1_796_000_000,
            presentation_time_offset: 0,
            timeline,
        },
    }
}

fn audio(timeline: Vec<(u64, u64)>) -> AdaptationSet {
    AdaptationSet {
        id: 1,
        content_type: "audio",
        mime_type: "audio/mp4",
        alternatives: Vec::new(),
        representation: Representation {
            id: "2".into(),
            codecs: "mp4a.40.2".into(),
            bandwidth: 96_000,
            width: 0,
            height: 0,
            frame_rate: None,
            audio_sampling_rate: 48000,
            audio_channels: 2,
            timescale: 48000,
            initialization: "$RepresentationID$/init.mp4".into(),
            media: "$RepresentationID$/$Number$.m4s".into(),
            start_number: 1_796_000_000,
            presentation_time_offset: 0,
            timeline,
        },
    }
}

#[test]
fn live_low_latency_mpd() {
    // Three complete 2 s segments, the one being built and the next, as the live server lists
    // them: the first segment a little longer, as ffmpeg's first frames often are.
    let mpd = Mpd {
        dynamic: true,
        availability_start_ms: 1_796_000_000_000,
        publish_time_ms: 1_796_000_010_250,
        minimum_update_period_secs: 1.0,
        time_shift_buffer_depth_secs: 12.0,
        suggested_presentation_delay_secs: 4.0,
        min_buffer_time_secs: 2.0,
        max_segment_duration_secs: 2.021,
        media_presentation_duration_secs: None,
        utc_timing_urls: vec!["http://127.0.0.1:8080/api/time".into()],
        low_latency: Some(LowLatency {
            availability_time_offset_secs: 2.0 - 1.0 / 30.0,
            target_latency_ms: 300,
            min_latency_ms: 150,
            max_latency_ms: 4000,
            min_playback_rate: 0.96,
            max_playback_rate: 1.04,
        }),
        periods: vec![Period {
            id: "0".into(),
            start_secs: 0.0,
            adaptation_sets: vec![
                video(vec![
                    (0, 31048),
                    (31048, 30720),
                    (61768, 30720),
                    (92488, 30720),
                    (123208, 30720),
                ]),
                audio(vec![
                    (0, 97280),
                    (97280, 96256),
                    (193536, 95232),
                    (288768, 96256),
                    (385024, 96256),
                ]),
            ],
        }],
    };
    check("live-low-latency.mpd", &dash::render(&mpd));
}

#[test]
fn recording_mpd_with_two_periods() {
    // A recording whose oldest segments rotated away (so it starts at a media time past 0),
    // then a source that came back with another init: a second Period.
    let mut later = video(vec![(0, 30720), (30720, 30720)]);
    later.representation.initialization = "$RepresentationID$/init-1796000020.mp4".into();
    later.representation.start_number = 1_796_000_020;
    let mut first = video(vec![(92160, 30720), (122880, 30720), (153600, 30720)]);
    first.representation.presentation_time_offset = 92160;
    first.representation.start_number = 1_796_000_003;
    let mpd = Mpd {
        dynamic: false,
        availability_start_ms: 0,
        publish_time_ms: 0,
        minimum_update_period_secs: 0.0,
        time_shift_buffer_depth_secs: 0.0,
        suggested_presentation_delay_secs: 0.0,
        min_buffer_time_secs: 2.0,
        max_segment_duration_secs: 2.0,
        media_presentation_duration_secs: Some(10.0),
        utc_timing_urls: Vec::new(),
        low_latency: None,
        periods: vec![
            Period {
                id: "0".into(),
                start_secs: 0.0,
                adaptation_sets: vec![first],
            },
            Period {
                id: "1".into(),
                start_secs: 6.0,
                adaptation_sets: vec![later],
            },
        ],
    };
    check("recording-two-periods.mpd", &dash::render(&mpd));
}

fn parts(number: u64, count: u32) -> Vec<Part> {
    (0..count)
        .map(|i| Part {
            uri: format!("{number}.{i}.m4s"),
            duration_secs: 0.2,
            independent: i == 0,
        })
        .collect()
}

fn segment(number: u64, with_parts: bool) -> Segment {
    Segment {
        uri: format!("/dash/live/{number}.m4s"),
        duration_secs: 2.0,
        program_date_time_ms: Some(1_796_000_000_000 + (number - 1_796_000_000) * 2000),
        parts: if with_parts {
            parts(number, 10)
        } else {
            Vec::new()
        },
        discontinuity: false,
        map_uri: None,
        byte_range: None,
    }
}

#[test]
fn live_low_latency_media_playlist() {
    let playlist = MediaPlaylist {
        target_duration_secs: 2,
        part_target_secs: 0.2,
        media_sequence: 1_796_000_000,
        discontinuity_sequence: 0,
        map_uri: "/dash/live/init.mp4".into(),
        map_byte_range: None,
        segments: (1_796_000_000..1_796_000_004)
            .map(|n| segment(n, n >= 1_796_000_002))
            .collect(),
        open_parts: parts(1_796_000_004, 3),
        open_program_date_time_ms: Some(1_796_000_008_000),
        preload_hint_uri: Some("1796000004.3.m4s".into()),
        kind: PlaylistKind::Live,
    };
    check("live-low-latency.m3u8", &hls::media(&playlist));
}

#[test]
fn recording_playlists_while_made_and_finished() {
    let mut segments: Vec<Segment> = (1_796_000_000..1_796_000_003)
        .map(|n| segment(n, false))
        .collect();
    for s in &mut segments {
        s.uri = s.uri.trim_start_matches("/dash/live/").to_string();
    }
    // The source came back with a new init: a discontinuity and the new map.
    let mut after = segment(1_796_000_010, false);
    after.uri = "1796000010.m4s".into();
    after.discontinuity = true;
    after.map_uri = Some("init-1796000010.mp4".into());
    segments.push(after);
    let mut playlist = MediaPlaylist {
        target_duration_secs: 2,
        part_target_secs: 0.0,
        media_sequence: 1_796_000_000,
        discontinuity_sequence: 0,
        map_uri: "init.mp4".into(),
        map_byte_range: None,
        segments,
        open_parts: Vec::new(),
        open_program_date_time_ms: None,
        preload_hint_uri: None,
        kind: PlaylistKind::Recording { rotating: false },
    };
    check("recording-event.m3u8", &hls::media(&playlist));
    playlist.kind = PlaylistKind::Finished;
    check("recording-finished.m3u8", &hls::media(&playlist));
}

#[test]
fn multivariant_playlist() {
    let text = hls::multivariant(&Multivariant {
        variants: vec![hls::Variant {
            bandwidth: 1_500_000,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some(30.0),
            uri: "live.m3u8".into(),
            audio_group: None,
        }],
        audio: Vec::new(),
    });
    check("multivariant.m3u8", &text);
}
