//! Our box code against real ffmpeg output (tests/fixtures, made by make.sh).

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use websocketlivestream::fmp4::{
    Atom, Ftyp, Moof, Moov, Prft, Reader, Segmenter, TrackKind, Unit, probe,
};

#[test]
fn every_fixture_splits_into_an_init_and_fragments_that_cover_the_file() {
    for name in FRAGMENTED {
        let data = fixture(name);
        let units = split_chunked(&data, &[data.len()]);
        let Some(Unit::Init(init)) = units.first() else {
            panic!("{name}: first unit is not the init");
        };
        assert!(!init.tracks.is_empty(), "{name}: no tracks");
        let fragments: usize = units
            .iter()
            .filter(|u| matches!(u, Unit::Fragment(_)))
            .count();
        assert!(fragments > 0, "{name}: no fragments");
        // Everything but the trailing mfra (dropped) is in some unit, in order.
        let covered: usize = units
            .iter()
            .map(|u| match u {
                Unit::Init(i) => i.bytes.len(),
                Unit::Fragment(f) => f.bytes.len(),
            })
            .sum();
        let mfra = tail_box_len(&data, b"mfra");
        assert_eq!(
            covered + mfra,
            data.len(),
            "{name}: bytes lost or duplicated"
        );
    }
}

/// The size of the last top-level box if it is of `kind`.
fn tail_box_len(data: &Bytes, kind: &[u8; 4]) -> usize {
    let mut r = Reader::new(data, 0);
    let mut last = None;
    while let Some(child) = r.next_box().expect("valid file") {
        last = Some((child.kind(), child.len()));
    }
    match last {
        Some((k, len)) if k.as_bytes() == kind => len,
        _ => 0,
    }
}

#[test]
fn sample_counts_match_what_ffprobe_decodes() {
    if !have_tool("ffprobe") {
        return;
    }
    for name in FRAGMENTED {
        let data = fixture(name);
        let (init, fragments) = split_whole(&data);
        let probed = ffprobe_frames(&fixture_path(name));
        assert_eq!(probed.len(), init.tracks.len(), "{name}: stream count");
        for (track, (kind, frames)) in init.tracks.iter().zip(&probed) {
            let expected_kind = match track.kind {
                TrackKind::Video => "video",
                TrackKind::Audio => "audio",
                TrackKind::Other(_) => "data",
            };
            assert_eq!(kind, expected_kind, "{name}: track {} kind", track.id);
            let samples: u64 = fragments
                .iter()
                .filter_map(|f| f.run(track.id))
                .map(|r| u64::from(r.sample_count))
                .sum();
            assert_eq!(samples, *frames, "{name}: track {} sample count", track.id);
        }
    }
}

#[test]
fn codec_strings_and_picture_sizes_come_from_the_sample_entries() {
    let (init, _) = split_whole(&fixture("av-per-frame.mp4"));
    // The codec string must name what the SPS itself says: profile_idc, the constraint flags
    // and level_idc are its bytes 1 to 3 (ITU-T H.264 §7.3.2.1.1).
    let entry = &init.moov.trak[0].mdia.minf.stbl.stsd.entries[0];
    let websocketlivestream::fmp4::SampleEntry::Avc1(avc1) = entry else {
        panic!("expected avc1, got {}", entry.kind());
    };
    let sps = &avc1.avcc.sequence_parameter_sets[0];
    let from_sps = format!("avc1.{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]);
    assert_eq!(init.codecs(), format!("{from_sps},mp4a.40.2"));
    assert_eq!(
        init.mime(),
        format!("video/mp4; codecs=\"{from_sps},mp4a.40.2\"")
    );
    let video = init.video().expect("video track");
    assert_eq!((video.width, video.height), (320, 240));
    let audio = init.audio().expect("audio track");
    assert_eq!((audio.sample_rate, audio.timescale), (48000, 48000));

    let (init, _) = split_whole(&fixture("hevc.mp4"));
    let codec = init.codecs();
    assert!(codec.starts_with("hvc1.1.6.L"), "hevc codec string {codec}");

    let (init, _) = split_whole(&fixture("audio-only.mp4"));
    assert_eq!(init.mime(), "audio/mp4; codecs=\"mp4a.40.2\"");
}

#[test]
fn init_boxes_round_trip_byte_for_byte() {
    for name in FRAGMENTED {
        let data = fixture(name);
        let (init, _) = split_whole(&data);
        let mut r = Reader::new(&init.bytes, 0);
        while let Some(child) = r.next_box().expect("valid init") {
            let raw = child.raw().bytes;
            let kind = child.kind();
            let again = if kind == Moov::KIND {
                Moov::decode(&raw).expect("moov decodes").to_bytes()
            } else if kind == Ftyp::KIND {
                Ftyp::decode(&raw).expect("ftyp decodes").to_bytes()
            } else {
                continue;
            };
            assert_eq!(again, raw, "{name}: {kind} re-encodes differently");
        }
    }
}

#[test]
fn fragment_boxes_round_trip_byte_for_byte() {
    for name in FRAGMENTED {
        let (_, fragments) = split_whole(&fixture(name));
        for fragment in &fragments {
            let mut r = Reader::new(&fragment.bytes, 0);
            let mut rebuilt = BytesMut::new();
            while let Some(child) = r.next_box().expect("valid fragment") {
                let raw = child.raw().bytes;
                let kind = child.kind();
                if kind == Moof::KIND {
                    Moof::decode(&raw)
                        .expect("moof decodes")
                        .encode(&mut rebuilt);
                } else if kind == Prft::KIND {
                    Prft::decode(&raw)
                        .expect("prft decodes")
                        .encode(&mut rebuilt);
                } else {
                    rebuilt.extend_from_slice(&raw);
                }
            }
            assert_eq!(
                rebuilt.freeze(),
                fragment.bytes,
                "{name}: fragment {}",
                fragment.sequence
            );
        }
    }
}

#[test]
fn typed_moof_agrees_with_the_splitters_summary() {
    for name in FRAGMENTED {
        let (init, fragments) = split_whole(&fixture(name));
        for fragment in &fragments {
            let moof_bytes = fragment
                .bytes
                .slice(fragment.moof_start..fragment.mdat_start);
            let moof = Moof::decode(&moof_bytes).expect("moof decodes");
            assert_eq!(moof.mfhd.sequence_number, fragment.sequence);
            for (traf, run) in moof.traf.iter().zip(&fragment.runs) {
                assert_eq!(traf.tfhd.track_id, run.track_id);
                let tfdt = traf.tfdt.expect("ffmpeg writes tfdt");
                assert_eq!(tfdt.base_media_decode_time, run.decode_time);
                let defaults = init.track(run.track_id).expect("known track").defaults;
                let default_duration = traf
                    .tfhd
                    .default_sample_duration
                    .unwrap_or(defaults.default_sample_duration);
                let duration: u64 = traf
                    .trun
                    .iter()
                    .map(|trun| {
                        if trun.samples.is_empty() {
                            u64::from(trun.sample_count) * u64::from(default_duration)
                        } else {
                            trun.samples
                                .iter()
                                .map(|s| {
                                    if trun.sample_fields & 0x100 != 0 {
                                        u64::from(s.duration)
                                    } else {
                                        u64::from(default_duration)
                                    }
                                })
                                .sum()
                        }
                    })
                    .sum();
                assert_eq!(
                    duration, run.duration,
                    "{name}: duration of {}",
                    fragment.sequence
                );
            }
        }
    }
}

#[test]
fn decode_times_are_contiguous_per_track() {
    for name in FRAGMENTED {
        let (init, fragments) = split_whole(&fixture(name));
        for track in &init.tracks {
            let runs: Vec<_> = fragments.iter().filter_map(|f| f.run(track.id)).collect();
            for pair in runs.windows(2) {
                assert_eq!(
                    pair[0].end_time(),
                    pair[1].decode_time,
                    "{name}: gap or overlap in track {}",
                    track.id
                );
            }
        }
    }
}

#[test]
fn prft_comes_with_every_video_fragment_but_the_first() {
    let (init, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let video = init.video().expect("video").id;
    let video_fragments: Vec<_> = fragments
        .iter()
        .filter(|f| f.run(video).is_some())
        .collect();
    let with_prft = video_fragments.iter().filter(|f| f.prft.is_some()).count();
    // ffmpeg writes the first prft once it has a reference, from the second video fragment.
    assert!(
        with_prft + 1 >= video_fragments.len(),
        "{with_prft} of {}",
        video_fragments.len()
    );
    let prft = video_fragments.iter().find_map(|f| f.prft).expect("a prft");
    assert_eq!(prft.reference_track_id, video);
    let millis = prft.unix_millis().expect("after 1970");
    assert!(
        millis > 1_600_000_000_000,
        "wall clock {millis} is not a recent date"
    );
}

#[test]
fn segments_start_at_key_frames_and_add_up_to_the_stream() {
    for name in FRAGMENTED {
        let (init, fragments) = split_whole(&fixture(name));
        let reference = init.reference_track().expect("a track");
        let mut segmenter = Segmenter::new(reference, 1.0, 0.3, 1);
        let mut segments = Vec::new();
        let mut first_start = None;
        for fragment in &fragments {
            let Some(placement) = segmenter.push(fragment) else {
                continue;
            };
            if placement.starts_segment {
                let run = fragment
                    .run(reference.id)
                    .expect("segment starts on reference");
                assert!(run.starts_with_sync, "{name}: segment starts without sync");
                first_start.get_or_insert(run.decode_time);
            }
            segments.extend(placement.closed_segment);
        }
        let (last, _) = segmenter.finish().expect("an open segment");
        segments.push(last);
        let total: u64 = segments.iter().map(|s| s.duration).sum();
        let stream_end = fragments
            .iter()
            .filter_map(|f| f.run(reference.id))
            .map(|r| r.end_time())
            .max()
            .expect("reference samples");
        assert_eq!(total, stream_end - first_start.expect("a start"), "{name}");
        for pair in segments.windows(2) {
            assert_eq!(
                pair[0].start + pair[0].duration,
                pair[1].start,
                "{name}: timeline gap"
            );
            assert_eq!(pair[0].number + 1, pair[1].number, "{name}: numbering");
        }
    }
}

#[test]
fn probe_dumps_every_box_with_its_fields() {
    let dump = probe::dump(&fixture("av-per-frame.mp4")).expect("probe");
    for needle in [
        "ftyp size=28 major=iso5",
        "moov size=",
        "avcC size=",
        "profile=",
        "esds size=",
        "audio_object_type=2",
        "trex size=32 track=1",
        "moof size=",
        "tfdt size=20 decode_time=0",
        "prft size=32 track=1 wallclock_ms=",
        "mdat size=",
        "mfra size=",
    ] {
        assert!(
            dump.contains(needle),
            "probe output lacks {needle:?}:\n{dump}"
        );
    }
}

#[test]
fn a_plain_mp4_is_refused_with_a_clear_reason() {
    let data = fixture("plain.mp4");
    let mut splitter = websocketlivestream::fmp4::Splitter::default();
    splitter.feed(data);
    let err = loop {
        match splitter.poll() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a plain MP4 must not split"),
            Err(err) => break err,
        }
    };
    assert!(
        err.to_string().contains("not a fragmented MP4"),
        "unclear error: {err}"
    );
}
