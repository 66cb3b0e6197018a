//! Our reading of the fixtures against the `mp4` crate's, on what that crate reads reliably in
//! fragmented files: tracks, timescales, codecs, picture sizes and `trun` sample counts.

mod common;

use std::io::Cursor;

use common::*;
use websocketlivestream::fmp4::{Fragment, TrackKind};

#[test]
fn tracks_timescales_codecs_and_sample_counts_agree_with_the_mp4_crate() {
    for name in FRAGMENTED {
        let data = fixture(name);
        let (init, fragments) = split_whole(&data);
        let theirs = mp4::Mp4Reader::read_header(Cursor::new(data.to_vec()), data.len() as u64)
            .unwrap_or_else(|e| panic!("{name}: mp4 crate cannot read it: {e}"));
        assert_eq!(
            theirs.tracks().len(),
            init.tracks.len(),
            "{name}: track count"
        );
        for ours in &init.tracks {
            let track = theirs
                .tracks()
                .get(&ours.id)
                .unwrap_or_else(|| panic!("{name}: mp4 crate lacks track {}", ours.id));
            assert_eq!(track.timescale(), ours.timescale, "{name}: timescale");
            let their_kind = track.track_type().expect("track type");
            match ours.kind {
                TrackKind::Video => {
                    assert_eq!(their_kind, mp4::TrackType::Video, "{name}");
                    assert_eq!(track.width(), ours.width, "{name}: width");
                    assert_eq!(track.height(), ours.height, "{name}: height");
                }
                TrackKind::Audio => assert_eq!(their_kind, mp4::TrackType::Audio, "{name}"),
                TrackKind::Other(_) => {}
            }
            // The mp4 crate models only avc1 and mp4a sample entries.
            if let Ok(box_type) = track.box_type() {
                assert_eq!(
                    box_type.to_string(),
                    ours.sample_entry.to_string(),
                    "{name}: sample entry"
                );
            }
            if let Ok(profile) = track.video_profile() {
                let ours_profile = ours.codec.as_deref().expect("codec");
                let their_byte: u8 = match profile {
                    mp4::AvcProfile::AvcConstrainedBaseline | mp4::AvcProfile::AvcBaseline => 66,
                    mp4::AvcProfile::AvcMain => 77,
                    mp4::AvcProfile::AvcExtended => 88,
                    mp4::AvcProfile::AvcHigh => 100,
                };
                assert!(
                    ours_profile.starts_with(&format!("avc1.{their_byte:02x}")),
                    "{name}: profile {profile:?} vs {ours_profile}"
                );
            }
            let ours_samples: u64 = fragments
                .iter()
                .filter_map(|f: &Fragment| f.run(ours.id))
                .map(|r| u64::from(r.sample_count))
                .sum();
            assert_eq!(
                u64::from(track.sample_count()),
                ours_samples,
                "{name}: samples"
            );
        }
    }
}

/// Each fixture's fragments written back as one progressive file: the `mp4` crate reads every
/// sample of it from its sample tables, at the decode times and with the bytes the fragments
/// had, and ffprobe decodes it.
#[test]
fn fragments_flattened_into_a_progressive_file_read_back_sample_for_sample() {
    use websocketlivestream::fmp4::flatten::flatten;
    for name in FRAGMENTED {
        let data = fixture(name);
        let (init, fragments) = split_whole(&data);
        let flat = flatten(&init, &fragments).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut file = flat.head.to_vec();
        for piece in &flat.media {
            file.extend_from_slice(piece);
        }
        assert_eq!(file.len() as u64, flat.len(), "{name}");
        let mut theirs = mp4::Mp4Reader::read_header(Cursor::new(file.clone()), file.len() as u64)
            .unwrap_or_else(|e| panic!("{name}: mp4 crate cannot read the flat file: {e}"));
        for ours in &init.tracks {
            // The fragments' samples of this track, in order: (decode time, bytes).
            let mut expected: Vec<(u64, Vec<u8>)> = Vec::new();
            for fragment in &fragments {
                for piece in websocketlivestream::fmp4::split_by_track(fragment, &init)
                    .expect("split by track")
                {
                    let Some(run) = piece.run(ours.id) else {
                        continue;
                    };
                    let payload = piece.mdat_payload();
                    let sizes = sample_sizes(&piece, &init);
                    let mut at = 0usize;
                    let mut time = run.decode_time;
                    for (size, duration) in sizes {
                        expected.push((time, payload[at..at + size].to_vec()));
                        at += size;
                        time += duration;
                    }
                }
            }
            let count = theirs
                .sample_count(ours.id)
                .unwrap_or_else(|e| panic!("{name}: track {}: {e}", ours.id));
            assert_eq!(
                count as usize,
                expected.len(),
                "{name}: track {} samples",
                ours.id
            );
            let first_time = expected.first().map_or(0, |(t, _)| *t);
            for (i, (time, bytes)) in expected.iter().enumerate() {
                let sample = theirs
                    .read_sample(ours.id, i as u32 + 1)
                    .unwrap_or_else(|e| panic!("{name}: sample {i}: {e}"))
                    .unwrap_or_else(|| panic!("{name}: sample {i} missing"));
                assert_eq!(
                    sample.start_time,
                    time - first_time,
                    "{name}: sample {i} time"
                );
                assert!(sample.bytes == bytes[..], "{name}: sample {i} bytes differ");
            }
        }
        if have_tool("ffmpeg") {
            let path = temp_media(&format!("flat-{name}"), &[&file]);
            if let Some(errors) = ffmpeg_decode_errors(&path) {
                panic!("{name}: the flat file does not decode cleanly: {errors}");
            }
        }
    }
}

/// The (size, duration) of each sample of a fragment of one track, as its `moof` lists them.
fn sample_sizes(
    piece: &Fragment,
    init: &websocketlivestream::fmp4::InitSegment,
) -> Vec<(usize, u64)> {
    use websocketlivestream::fmp4::Atom;
    use websocketlivestream::fmp4::moof::{SAMPLE_DURATION_PRESENT, SAMPLE_SIZE_PRESENT};
    let moof = websocketlivestream::fmp4::Moof::decode(
        &piece.bytes.slice(piece.moof_start..piece.mdat_start),
    )
    .expect("moof");
    let traf = &moof.traf[0];
    let track = init.track(traf.tfhd.track_id).expect("track");
    let size = traf
        .tfhd
        .default_sample_size
        .unwrap_or(track.defaults.default_sample_size);
    let duration = traf
        .tfhd
        .default_sample_duration
        .unwrap_or(track.defaults.default_sample_duration);
    let mut out = Vec::new();
    for trun in &traf.trun {
        for i in 0..trun.sample_count as usize {
            let stored = trun.samples.get(i);
            let field = |bit: u32| stored.filter(|_| trun.sample_fields & bit != 0);
            out.push((
                field(SAMPLE_SIZE_PRESENT).map_or(size, |s| s.size) as usize,
                u64::from(field(SAMPLE_DURATION_PRESENT).map_or(duration, |s| s.duration)),
            ));
        }
    }
    out
}
