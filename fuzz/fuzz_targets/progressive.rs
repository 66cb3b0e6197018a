//! Progressive MP4's sample tables from arbitrary bytes: the first `moov` that decodes is read
//! into a sample index against a file of the input's length (no panic, no hang, memory bounded
//! by the tables' own bytes and MAX_SAMPLES), and whatever is read must come out right: every
//! sample inside the file, the fragmented init reading back as an init, and each planned
//! fragment reading back with the samples it was given.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use websocketlivestream::fmp4::progressive::{self, Run};
use websocketlivestream::fmp4::{Atom, Fragment, InitSegment, Moov, Reader};

fuzz_target!(|input: &[u8]| {
    let data = Bytes::copy_from_slice(input);
    let mut r = Reader::new(&data, 0);
    let moov = loop {
        match r.next_box() {
            Ok(Some(child)) if child.kind() == Moov::KIND => match child.decode::<Moov>() {
                Ok(moov) => break moov,
                Err(_) => return,
            },
            Ok(Some(_)) => {}
            _ => return,
        }
    };
    let file_len = input.len() as u64;
    let Ok(tracks) = progressive::sample_tables(&moov, file_len) else {
        return;
    };
    for track in &tracks {
        for sample in &track.samples {
            assert!(sample.offset + u64::from(sample.size) <= file_len);
        }
    }
    let Ok(init) = InitSegment::parse(progressive::fragmented_init(&moov), 0) else {
        // A moov whose tracks an init cannot describe (no sample entry we read): the same
        // refusal as live input gets.
        return;
    };
    for (n, ranges) in progressive::plan_fragments(&tracks, Some(0.5))
        .iter()
        .enumerate()
        .take(64)
    {
        for (track, range) in tracks.iter().zip(ranges) {
            let samples = &track.samples[range.clone()];
            if samples.is_empty() || samples.len() > 4096 {
                continue;
            }
            let run = Run {
                track_id: track.track_id,
                samples,
            };
            let (mut buf, media) = progressive::fragment_header(n as u32 + 1, &[run]);
            if media > 1 << 20 {
                continue;
            }
            buf.resize(buf.len() + media as usize, 0);
            if let Ok(fragment) = Fragment::parse(buf.freeze(), 0, &init) {
                let run = fragment.run(track.track_id).expect("the run we wrote");
                assert_eq!(run.decode_time, samples[0].decode_time);
                assert_eq!(run.data_size, media);
            }
        }
    }
});
