//! Broken input gets a typed error that says what, where and in which box; never a panic.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use websocketlivestream::fmp4::{Atom, ErrorKind, FourCC, Moov, Reader, Splitter, Unit};

/// Feeds `data` whole and returns the first error.
fn first_error(data: Bytes) -> websocketlivestream::fmp4::Error {
    let mut splitter = Splitter::default();
    splitter.feed(data);
    loop {
        match splitter.poll() {
            Ok(Some(_)) => continue,
            Ok(None) => return splitter.finish().expect_err("input should be refused"),
            Err(err) => return err,
        }
    }
}

fn init_bytes() -> Bytes {
    let (init, _) = split_whole(&fixture("av-per-frame.mp4"));
    init.bytes.clone()
}

fn with_init(tail: &[u8]) -> Bytes {
    let mut out = BytesMut::from(&init_bytes()[..]);
    out.put_slice(tail);
    out.freeze()
}

#[test]
fn a_stream_cut_inside_a_box_is_truncated_at_the_unit_start() {
    let data = fixture("hevc.mp4");
    let (init, fragments) = split_whole(&data);
    let cut = init.bytes.len() + fragments[0].bytes.len() + 10;
    let mut splitter = Splitter::default();
    splitter.feed(data.slice(..cut));
    let mut units = 0;
    while let Some(_unit) = splitter.poll().expect("valid so far") {
        units += 1;
    }
    assert_eq!(
        units, 2,
        "init and first fragment come out; the cut one does not"
    );
    let err = splitter.finish().expect_err("cut mid-fragment");
    assert!(matches!(err.kind, ErrorKind::Truncated { .. }), "{err}");
    assert_eq!(
        err.offset,
        (init.bytes.len() + fragments[0].bytes.len()) as u64
    );
}

#[test]
fn size_zero_is_refused_in_a_stream() {
    let err = first_error(with_init(b"\0\0\0\0mdat"));
    assert_eq!(err.kind, ErrorKind::SizeToEnd);
    assert_eq!(err.fourcc(), Some(FourCC::new(b"mdat")));
    assert_eq!(err.offset, init_bytes().len() as u64);
}

#[test]
fn size_one_needs_a_largesize_of_at_least_sixteen() {
    let mut tail = vec![0, 0, 0, 1];
    tail.extend_from_slice(b"moof");
    tail.extend_from_slice(&9u64.to_be_bytes());
    let err = first_error(with_init(&tail));
    assert_eq!(err.kind, ErrorKind::BadSize { size: 9 });
}

#[test]
fn sizes_below_the_header_are_bad() {
    for size in [2u32, 7] {
        let mut tail = size.to_be_bytes().to_vec();
        tail.extend_from_slice(b"moof");
        let err = first_error(with_init(&tail));
        assert_eq!(
            err.kind,
            ErrorKind::BadSize {
                size: u64::from(size)
            }
        );
    }
}

#[test]
fn a_huge_box_is_refused_before_anything_is_buffered() {
    let mut tail = u32::MAX.to_be_bytes().to_vec();
    tail.extend_from_slice(b"moof");
    let err = first_error(with_init(&tail));
    assert!(matches!(err.kind, ErrorKind::TooLarge { size, .. } if size == u64::from(u32::MAX)));

    let mut splitter = Splitter::new(1000);
    splitter.feed(init_bytes());
    let err = loop {
        match splitter.poll() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the moov is over 1000 bytes and must be refused"),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(err.kind, ErrorKind::TooLarge { max: 1000, .. }),
        "{err}"
    );
}

#[test]
fn media_before_the_init_is_out_of_order() {
    let (_, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let err = first_error(fragments[1].bytes.clone());
    assert!(matches!(err.kind, ErrorKind::OutOfOrder(_)), "{err}");
}

#[test]
fn a_moof_must_be_followed_by_its_mdat() {
    let (_, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let f = &fragments[0];
    let moof = &f.bytes[f.moof_start..f.mdat_start];
    let mut tail = moof.to_vec();
    tail.extend_from_slice(moof);
    let err = first_error(with_init(&tail));
    assert_eq!(
        err.kind,
        ErrorKind::OutOfOrder("moof not followed by its mdat")
    );
}

#[test]
fn a_run_pointing_outside_its_mdat_is_invalid() {
    let (_, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let f = &fragments[0];
    // Shrink the mdat by one byte: the run's samples now reach past it.
    let mut bytes = f.bytes.to_vec();
    bytes.pop();
    let mdat_size = u32::from_be_bytes(bytes[f.mdat_start..f.mdat_start + 4].try_into().unwrap());
    bytes[f.mdat_start..f.mdat_start + 4].copy_from_slice(&(mdat_size - 1).to_be_bytes());
    let err = first_error(with_init(&bytes));
    assert_eq!(
        err.kind,
        ErrorKind::InvalidValue("trun sample data lies outside the mdat")
    );
    assert_eq!(err.path.to_string(), "moof > traf > trun");
}

#[test]
fn garbage_after_a_good_stream_is_reported_where_it_starts() {
    let data = fixture("hevc.mp4");
    let mut bytes = data.to_vec();
    let garbage_at = bytes.len();
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
    let err = first_error(Bytes::from(bytes));
    assert!(matches!(err.kind, ErrorKind::TooLarge { .. }), "{err}");
    assert_eq!(err.offset, garbage_at as u64);
}

#[test]
fn a_child_larger_than_its_parent_names_the_path() {
    let init = init_bytes();
    let mut r = Reader::new(&init, 0);
    let mut moov_raw = None;
    while let Some(child) = r.next_box().expect("valid") {
        if child.kind() == Moov::KIND {
            moov_raw = Some((child.offset(), child.raw().bytes));
        }
    }
    let (moov_offset, moov) = moov_raw.expect("moov");
    // moov's first child is mvhd: claim it is 16 bytes longer than it is.
    let mut bytes = moov.to_vec();
    let mvhd_size = u32::from_be_bytes(bytes[8..12].try_into().unwrap());
    bytes[8..12].copy_from_slice(&(mvhd_size + 0x10000).to_be_bytes());
    let err = Moov::decode_at(&Bytes::from(bytes), moov_offset).expect_err("mvhd overflows moov");
    assert!(matches!(err.kind, ErrorKind::Truncated { .. }), "{err}");
    assert_eq!(err.path.to_string(), "moov");
    assert_eq!(err.offset, moov_offset + 8);
}

#[test]
fn errors_stick_until_the_splitter_is_replaced() {
    let mut splitter = Splitter::default();
    splitter.feed(Bytes::from_static(b"\0\0\0\x03junk"));
    let first = splitter.poll().expect_err("bad size");
    splitter.feed(fixture("hevc.mp4"));
    assert_eq!(splitter.poll().expect_err("still broken"), first);
}

#[test]
fn a_new_init_between_fragments_starts_over() {
    // Two streams back to back, as a restarted encoder writes them.
    let a = fixture("hevc.mp4");
    let units_a = split_chunked(&a, &[a.len()]);
    let mut joined = a.to_vec();
    joined.extend_from_slice(&fixture("audio-only.mp4"));
    let units = split_chunked(&Bytes::from(joined), &[4096]);
    let inits: Vec<_> = units
        .iter()
        .filter_map(|u| match u {
            Unit::Init(i) => Some(i.codecs()),
            _ => None,
        })
        .collect();
    assert_eq!(inits.len(), 2);
    assert!(inits[0].starts_with("hvc1"));
    assert_eq!(inits[1], "mp4a.40.2");
    assert_eq!(&units[..units_a.len()], &units_a[..]);
}

/// Found by the `splitter` fuzz target: a moof without mfhd passed the splitter's summary
/// (though the typed decoder refuses it), and the rewriter then could not renumber it.
#[test]
fn fuzz_regression_a_moof_without_mfhd_is_refused() {
    let input = fixture("fuzz/splitter-moof-without-mfhd.bin");
    // The fuzz input starts with two bytes of chunk size.
    let err = first_error(input.slice(2..));
    assert_eq!(
        err.kind,
        ErrorKind::MissingBox(FourCC::new(b"mfhd")),
        "{err}"
    );
    assert_eq!(err.path.to_string(), "moof");
}

#[test]
fn duplicate_headers_in_a_traf_are_refused() {
    let (_, fragments) = split_whole(&fixture("av-per-frame.mp4"));
    let f = &fragments[0];
    // Insert a second copy of the tfhd right after the first.
    let moof = f.bytes.slice(f.moof_start..f.mdat_start);
    let mut r = Reader::new(&moof, 0);
    let mut moof_child = r.next_box().expect("moof").expect("present");
    let body = moof_child.body();
    let _mfhd = body.next_box().expect("mfhd").expect("present");
    let mut traf = body.next_box().expect("traf").expect("present");
    let tfhd = traf
        .body()
        .next_box()
        .expect("tfhd")
        .expect("present")
        .raw()
        .bytes;
    let traf_start = traf.start();
    let tfhd_end = traf_start + 8 + tfhd.len();
    let mut bytes = f.bytes.to_vec();
    let at = f.moof_start + tfhd_end;
    bytes.splice(at..at, tfhd.iter().copied());
    // Grow moof and traf sizes by the inserted box.
    for size_at in [f.moof_start, f.moof_start + traf_start] {
        let size = u32::from_be_bytes(bytes[size_at..size_at + 4].try_into().expect("4 bytes"));
        bytes[size_at..size_at + 4].copy_from_slice(&(size + tfhd.len() as u32).to_be_bytes());
    }
    let err = first_error(with_init(&bytes));
    assert_eq!(
        err.kind,
        ErrorKind::DuplicateBox(FourCC::new(b"tfhd")),
        "{err}"
    );
}
