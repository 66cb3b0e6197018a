//! A hub's window as manifests: the DASH MPD and the HLS playlists, with the URLs given by
//! the caller (the server's routes, or file names in a recording).

use crate::fmp4::{InitSegment, Track, TrackKind};
use crate::manifest::dash::{AdaptationSet, LowLatency, Mpd, Period, Representation};
use crate::manifest::hls::{self, MediaPlaylist, Multivariant, PlaylistKind};

use super::{HubConfig, Segment, Snapshot};

/// Segments in the window that belong to the current init, oldest first.
fn current_segments(snapshot: &Snapshot) -> Vec<&Segment> {
    let generation = snapshot.init.as_ref().map_or(0, |i| i.generation);
    snapshot
        .segments
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| s.generation == generation)
        .collect()
}

/// Fragments a frame-rate estimate spans.
const FRAME_RATE_SPAN: usize = 30;

/// The frame rate of the video, from the median interval between frames in the window
/// (decode times, which encoders get right even where sample durations are not; the median
/// ignores a start-up hiccup or a dropped frame).
pub fn frame_rate(snapshot: &Snapshot) -> Option<f64> {
    let init = snapshot.init.as_ref()?;
    let video = init.segment.video()?;
    let runs: Vec<_> = current_segments(snapshot)
        .iter()
        .flat_map(|s| s.fragments.iter())
        .filter_map(|f| f.fragment.run(video.id).copied())
        .collect();
    // Over spans of up to a second of frames, not single intervals: decode times from an
    // ingest that counts milliseconds (FLV) step 33 and 34 ms at 30 fps, and a median of
    // single steps would say 30.3.
    let span = runs.len().clamp(2, FRAME_RATE_SPAN + 1);
    let mut intervals: Vec<f64> = runs
        .windows(span)
        .filter_map(|w| {
            let (first, last) = (w.first()?, w.last()?);
            let samples: u32 = w[..w.len() - 1].iter().map(|r| r.sample_count).sum();
            (last.decode_time > first.decode_time && samples > 0)
                .then(|| (last.decode_time - first.decode_time) as f64 / f64::from(samples))
        })
        .collect();
    if intervals.is_empty() {
        return None;
    }
    intervals.sort_by(f64::total_cmp);
    let median = intervals[intervals.len() / 2];
    let fps = f64::from(video.timescale) / median;
    let whole = fps.round();
    Some(if (fps - whole).abs() < 0.01 {
        whole
    } else {
        fps
    })
}

fn dash_frame_rate(fps: f64) -> String {
    if (fps - fps.round()).abs() < 0.01 {
        format!("{}", fps.round() as u64)
    } else {
        format!("{}/1000", (fps * 1000.0).round() as u64)
    }
}

/// Appends to a live timeline the segment being built and the one after it, each expected to
/// last as long as most do: a low-latency client asks for a segment the moment its first
/// fragment is due (`availabilityTimeOffset`), so it must know of it before the next MPD.
fn push_expected(timeline: &mut Vec<(u64, u64)>) {
    let mut durations: Vec<u64> = timeline.iter().map(|&(_, d)| d).collect();
    durations.sort_unstable();
    let Some(&typical) = durations.get(durations.len() / 2) else {
        return;
    };
    for _ in 0..EXPECTED_SEGMENTS {
        if let Some(&(start, duration)) = timeline.last() {
            timeline.push((start + duration, typical));
        }
    }
}

/// Where one Representation's segments are, and which of them it lists.
pub struct Listing {
    pub initialization: String,
    pub media: String,
    pub start_number: u64,
    pub presentation_time_offset: u64,
    /// `(start, duration)` of each segment listed, in the track's timescale.
    pub timeline: Vec<(u64, u64)>,
}

/// One track as an AdaptationSet of its own (DASH-IF IOP: one media component per
/// Representation); `None` for a track that is neither video nor audio.
pub fn track_set(
    index: usize,
    track: &Track,
    bandwidth_bps: u64,
    frame_rate: Option<String>,
    listing: Listing,
) -> Option<AdaptationSet> {
    let (content_type, mime_type) = match track.kind {
        TrackKind::Video => ("video", "video/mp4"),
        TrackKind::Audio => ("audio", "audio/mp4"),
        TrackKind::Other(_) => return None,
    };
    Some(AdaptationSet {
        id: u32::try_from(index).unwrap_or(u32::MAX),
        content_type,
        mime_type,
        alternatives: Vec::new(),
        representation: Representation {
            id: track.id.to_string(),
            codecs: track.codec.clone().unwrap_or_default(),
            bandwidth: bandwidth_bps.max(1000),
            width: track.width,
            height: track.height,
            frame_rate: frame_rate.filter(|_| track.kind == TrackKind::Video),
            audio_sampling_rate: track.sample_rate,
            audio_channels: track.channels,
            timescale: track.timescale,
            initialization: listing.initialization,
            media: listing.media,
            start_number: listing.start_number,
            presentation_time_offset: listing.presentation_time_offset,
            timeline: listing.timeline,
        },
    })
}

/// Every track in one Representation, for segments that cannot be cut by track (fragments
/// that mix tracks); `timescale` is the one the listing's times are in.
pub fn muxed_set(
    init: &InitSegment,
    bandwidth_bps: u64,
    frame_rate: Option<String>,
    timescale: u32,
    listing: Listing,
) -> AdaptationSet {
    let video = init.video();
    AdaptationSet {
        id: 0,
        content_type: if video.is_some() { "video" } else { "audio" },
        mime_type: if video.is_some() {
            "video/mp4"
        } else {
            "audio/mp4"
        },
        alternatives: Vec::new(),
        representation: Representation {
            id: "muxed".into(),
            codecs: init.codecs(),
            bandwidth: bandwidth_bps.max(1000),
            width: video.map_or(0, |v| v.width),
            height: video.map_or(0, |v| v.height),
            frame_rate,
            audio_sampling_rate: 0,
            audio_channels: 0,
            timescale,
            initialization: listing.initialization,
            media: listing.media,
            start_number: listing.start_number,
            presentation_time_offset: listing.presentation_time_offset,
            timeline: listing.timeline,
        },
    }
}

/// The segments a live MPD lists beyond the complete ones: the one being built, the next.
pub const EXPECTED_SEGMENTS: usize = 2;

/// The latency a low-latency DASH client is asked to keep (its `ServiceDescription`).
pub const LL_DASH_TARGET_MS: u64 = 300;

/// The MPD of the window. `None` before the first complete segment.
pub fn dash_mpd(
    snapshot: &Snapshot,
    config: &HubConfig,
    utc_timing_urls: Vec<String>,
    now_ms: u64,
    dynamic: bool,
) -> Option<Mpd> {
    let init = snapshot.init.as_ref()?;
    let segments = current_segments(snapshot);
    let first = segments.first()?;
    let max_duration = segments
        .iter()
        .map(|s| s.duration_secs())
        .fold(0.0, f64::max);
    let total: f64 = segments.iter().map(|s| s.duration_secs()).sum();
    let measured_fps = frame_rate(snapshot);
    let fps = measured_fps.map(dash_frame_rate);
    // One component per Representation (DASH-IF IOP) where every segment can be cut by
    // track; fragments that mix tracks leave only the muxed form.
    let per_track = snapshot.single_track_fragments
        && init.segment.tracks.iter().all(|t| {
            segments
                .iter()
                .all(|s| s.tracks.iter().any(|tt| tt.track_id == t.id))
        });
    let expected = |mut timeline: Vec<(u64, u64)>| {
        if dynamic {
            push_expected(&mut timeline);
        }
        timeline
    };
    let adaptation_sets = if per_track {
        init.segment
            .tracks
            .iter()
            .enumerate()
            .filter_map(|(index, track)| {
                let timeline = segments
                    .iter()
                    .filter_map(|s| s.tracks.iter().find(|t| t.track_id == track.id))
                    .map(|t| (t.start, t.duration))
                    .collect();
                track_set(
                    index,
                    track,
                    snapshot.track_bitrate_bps(track.id),
                    fps.clone(),
                    Listing {
                        initialization: "$RepresentationID$/init.mp4".into(),
                        media: "$RepresentationID$/$Number$.m4s".into(),
                        start_number: first.number,
                        presentation_time_offset: 0,
                        timeline: expected(timeline),
                    },
                )
            })
            .collect()
    } else {
        vec![muxed_set(
            &init.segment,
            snapshot.bitrate_bps(),
            fps,
            first.timescale,
            Listing {
                initialization: "init.mp4".into(),
                media: "$Number$.m4s".into(),
                start_number: first.number,
                presentation_time_offset: 0,
                timeline: expected(segments.iter().map(|s| (s.start, s.duration)).collect()),
            },
        )]
    };
    // A live MPD's newest segment is served while it grows, a fragment at a time: it may be
    // asked for once its first fragment (a frame) exists.
    let frame_secs = measured_fps.map_or(config.part_secs, |fps| 1.0 / fps);
    let low_latency = dynamic.then(|| LowLatency {
        availability_time_offset_secs: (config.segment_secs - frame_secs).max(0.0),
        target_latency_ms: LL_DASH_TARGET_MS,
        min_latency_ms: LL_DASH_TARGET_MS / 2,
        max_latency_ms: (config.segment_secs * 2000.0) as u64,
        min_playback_rate: 0.96,
        max_playback_rate: 1.04,
    });
    Some(Mpd {
        dynamic,
        availability_start_ms: snapshot.anchor_ms.unwrap_or(0),
        publish_time_ms: now_ms,
        // Each MPD lists a segment ahead; looking again twice a segment keeps it so.
        minimum_update_period_secs: if dynamic {
            config.segment_secs / 2.0
        } else {
            config.segment_secs
        },
        time_shift_buffer_depth_secs: (config.window as f64 * config.segment_secs).max(total),
        suggested_presentation_delay_secs: 2.0 * config.segment_secs,
        min_buffer_time_secs: config.segment_secs,
        max_segment_duration_secs: max_duration.max(config.segment_secs),
        media_presentation_duration_secs: (!dynamic).then_some(total),
        utc_timing_urls,
        low_latency,
        periods: vec![Period {
            id: "0".into(),
            start_secs: 0.0,
            adaptation_sets,
        }],
    })
}

/// Where the HLS playlists point.
pub struct HlsUris<'a> {
    /// The init segment (the DASH one).
    pub map: &'a str,
    /// Prefix of full segments (`{prefix}{number}.m4s`, the DASH ones).
    pub segment_prefix: &'a str,
    /// Prefix of parts (`{prefix}{number}.{part}.m4s`).
    pub part_prefix: &'a str,
    /// Appended to every URI (`?token=…`), or empty.
    pub query: &'a str,
}

pub fn hls_multivariant(snapshot: &Snapshot, media_uri: &str) -> Option<String> {
    let init = snapshot.init.as_ref()?;
    let video = init.segment.video();
    Some(hls::multivariant(&Multivariant {
        variants: vec![hls::Variant {
            bandwidth: snapshot.bitrate_bps().max(1000),
            codecs: init.segment.codecs(),
            resolution: video.map(|v| (v.width, v.height)),
            frame_rate: frame_rate(snapshot),
            uri: media_uri.to_string(),
            audio_group: None,
        }],
        audio: Vec::new(),
    }))
}

/// The multivariant playlist of a ladder: a variant per rung that is live, `uri(rung, track)`
/// naming a track's media playlist: each variant the rung's video alone, and the audio every
/// rung shares (the top rung's track) as the rendition group `audio`; `None` if no rung is
/// live.
pub fn hls_ladder(rungs: &[&Snapshot], uri: &dyn Fn(usize, u32) -> String) -> Option<String> {
    let audio = rungs.first().and_then(|top| {
        let init = top.init.as_ref()?;
        let track = init.segment.audio()?;
        Some((
            track.clone(),
            top.track_bitrate_bps(track.id),
            uri(0, track.id),
        ))
    });
    let variants: Vec<hls::Variant> = rungs
        .iter()
        .enumerate()
        .filter_map(|(rung, snapshot)| {
            let init = snapshot.init.as_ref()?;
            let video = init.segment.video()?;
            let mut codecs = vec![video.codec.clone().unwrap_or_default()];
            codecs.extend(audio.as_ref().and_then(|(a, _, _)| a.codec.clone()));
            Some(hls::Variant {
                bandwidth: (snapshot.track_bitrate_bps(video.id)
                    + audio.as_ref().map_or(0, |(_, bps, _)| *bps))
                .max(1000),
                codecs: codecs.join(","),
                resolution: Some((video.width, video.height)),
                frame_rate: frame_rate(snapshot),
                uri: uri(rung, video.id),
                audio_group: audio.as_ref().map(|_| "audio".to_string()),
            })
        })
        .collect();
    if variants.is_empty() {
        return None;
    }
    Some(hls::multivariant(&Multivariant {
        variants,
        audio: audio
            .into_iter()
            .map(|(track, _, uri)| hls::AudioRendition {
                group_id: "audio".into(),
                name: "audio".into(),
                uri,
                channels: Some(track.channels).filter(|c| *c > 0),
                default: true,
            })
            .collect(),
    }))
}

/// How many of the newest segments list their parts (RFC 8216bis §6.2.2 keeps parts for the
/// last three target durations or so).
const SEGMENTS_WITH_PARTS: usize = 3;

fn parts_of(segment: &Segment, uris: &HlsUris<'_>, complete_only: bool) -> Vec<hls::Part> {
    segment
        .parts
        .iter()
        .filter(|p| !complete_only || p.info.duration > 0 || segment.complete)
        .map(|p| hls::Part {
            uri: format!(
                "{}{}.{}.m4s{}",
                uris.part_prefix, segment.number, p.info.index, uris.query
            ),
            duration_secs: p.info.duration as f64 / f64::from(segment.timescale.max(1)),
            independent: p.info.independent,
        })
        .collect()
}

/// The media playlist of the window, live, or finished (a packaged file).
pub fn hls_media(
    snapshot: &Snapshot,
    config: &HubConfig,
    uris: &HlsUris<'_>,
    kind: PlaylistKind,
) -> Option<MediaPlaylist> {
    let ended = kind == PlaylistKind::Finished;
    snapshot.init.as_ref()?;
    let segments = current_segments(snapshot);
    let count = segments.len();
    let first_number = segments
        .first()
        .map(|s| s.number)
        .or_else(|| snapshot.open.as_ref().map(|s| s.number))?;
    let in_window_discontinuities = segments.iter().filter(|s| s.discontinuity).count() as u64;
    let listed = segments
        .iter()
        .enumerate()
        .map(|(i, s)| hls::Segment {
            uri: format!("{}{}.m4s{}", uris.segment_prefix, s.number, uris.query),
            duration_secs: s.duration_secs(),
            program_date_time_ms: Some(s.wall_start_ms),
            parts: if i + SEGMENTS_WITH_PARTS >= count {
                parts_of(s, uris, false)
            } else {
                Vec::new()
            },
            discontinuity: s.discontinuity && i > 0,
            map_uri: None,
            byte_range: None,
        })
        .collect();
    let open = snapshot.open.as_ref().filter(|_| !ended);
    let open_parts = open.map(|s| parts_of(s, uris, true)).unwrap_or_default();
    let preload_hint_uri = open.map(|s| {
        let next = s
            .parts
            .iter()
            .filter(|p| p.info.duration > 0)
            .map(|p| p.info.index + 1)
            .max()
            .unwrap_or(0);
        format!(
            "{}{}.{}.m4s{}",
            uris.part_prefix, s.number, next, uris.query
        )
    });
    let max_duration = segments
        .iter()
        .map(|s| s.duration_secs())
        .fold(config.segment_secs, f64::max);
    Some(MediaPlaylist {
        target_duration_secs: max_duration.round().max(1.0) as u64,
        part_target_secs: config.part_secs,
        media_sequence: first_number,
        discontinuity_sequence: snapshot
            .discontinuities
            .saturating_sub(in_window_discontinuities),
        map_uri: format!("{}{}", uris.map, uris.query),
        map_byte_range: None,
        segments: listed,
        open_parts,
        open_program_date_time_ms: open.map(|s| s.wall_start_ms),
        preload_hint_uri,
        kind,
    })
}

/// The newest complete part, as `(segment number, part index)`, for blocking reloads.
pub fn last_part(snapshot: &Snapshot) -> Option<(u64, u32)> {
    if let Some(open) = &snapshot.open
        && let Some(part) = open.parts.iter().rev().find(|p| p.info.duration > 0)
    {
        return Some((open.number, part.info.index));
    }
    let last = snapshot.segments.last()?;
    let part = last.parts.last()?;
    Some((last.number, part.info.index))
}
