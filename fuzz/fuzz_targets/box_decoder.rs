//! Every box decoder on arbitrary bytes: decoding must never panic, and whatever decodes must
//! encode to bytes that decode to the same thing.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use websocketlivestream::fmp4::{Atom, InitSegment, Moof, Moov, probe};

fn round_trip<A: Atom + PartialEq + std::fmt::Debug>(data: &Bytes) {
    if let Ok(atom) = A::decode(data) {
        let again = A::decode(&atom.to_bytes()).expect("what we encode, we decode");
        assert_eq!(again, atom, "decode(encode(x)) != x");
    }
}

fuzz_target!(|data: &[u8]| {
    let data = Bytes::copy_from_slice(data);
    round_trip::<Moov>(&data);
    round_trip::<Moof>(&data);
    if let Ok(init) = InitSegment::parse(data.clone(), 0) {
        for track in &init.tracks {
            let single = init.single_track(track.id).expect("each track has an init");
            InitSegment::parse(single, 0).expect("single-track inits parse");
        }
    }
    let _ = probe::dump(&data);
});
