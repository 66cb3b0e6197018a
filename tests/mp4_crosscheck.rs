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
