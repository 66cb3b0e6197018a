//! The browser publisher's framing (`fmp4::webcodecs`): arbitrary messages never panic, and
//! whatever the muxer writes reads back in our own splitter without an error.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use websocketlivestream::fmp4::Splitter;
use websocketlivestream::fmp4::webcodecs::BrowserMuxer;

fuzz_target!(|data: &[u8]| {
    let mut muxer = BrowserMuxer::default();
    let mut out = Vec::new();
    // Messages are length-prefixed by one byte each here: the fuzzer chooses their bounds.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (message, next) = tail.split_at(len);
        rest = next;
        if let Ok(bytes) = muxer.push(message, std::time::UNIX_EPOCH) {
            out.extend_from_slice(&bytes);
        }
    }
    let mut splitter = Splitter::default();
    splitter.feed(Bytes::from(out));
    while let Some(_unit) = splitter
        .poll()
        .expect("the muxer's own output must read back")
    {}
});
