//! Properties of the box code: any chunking of a stream splits the same; decode and encode
//! are inverse both ways; no input makes it panic.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use proptest::prelude::*;
use websocketlivestream::fmp4::moof::{
    Mfhd, SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT, SAMPLE_DURATION_PRESENT, SAMPLE_FIELDS,
    SAMPLE_FLAGS_PRESENT, SAMPLE_SIZE_PRESENT, Tfdt, Tfhd, Trun, TrunSample,
};
use websocketlivestream::fmp4::{
    Atom, Avcc, Esds, FourCC, Ftyp, Hdlr, Hvcc, HvccArray, InitSegment, Mdhd, Moof, Moov, Mvhd,
    Prft, Segmenter, Splitter, Tkhd, Trex, Unit, probe,
};

/// Segment boundaries as (fragment index, segment number) for a list of units.
fn boundaries(units: &[Unit]) -> Vec<(usize, u64)> {
    let mut segmenter = None;
    let mut out = Vec::new();
    let mut index = 0;
    for unit in units {
        match unit {
            Unit::Init(init) => {
                let reference = init.reference_track().expect("a track");
                segmenter = Some(Segmenter::new(reference, 1.0, 0.3, 1));
            }
            Unit::Fragment(fragment) => {
                if let Some(placement) = segmenter.as_mut().and_then(|s| s.push(fragment))
                    && placement.starts_segment
                {
                    out.push((index, placement.segment));
                }
                index += 1;
            }
        }
    }
    out
}

#[test]
fn every_split_point_gives_the_same_units() {
    for name in ["hevc.mp4", "audio-only.mp4"] {
        let data = fixture(name);
        let whole = split_chunked(&data, &[data.len()]);
        for at in 1..data.len() {
            let mut splitter = Splitter::default();
            let mut units = Vec::new();
            for piece in [data.slice(..at), data.slice(at..)] {
                splitter.feed(piece);
                while let Some(unit) = splitter.poll().expect("valid") {
                    units.push(unit);
                }
            }
            splitter.finish().expect("complete");
            assert_eq!(units, whole, "{name}: split at {at}");
        }
    }
    // The larger fixture: every split point through the init and the first fragments.
    let data = fixture("av-per-frame.mp4");
    let whole = split_chunked(&data, &[data.len()]);
    for at in 1..8192.min(data.len()) {
        let units = split_chunked(&data, &[at, data.len()]);
        assert_eq!(units, whole, "av-per-frame.mp4: split at {at}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_chunking_gives_the_same_units_and_segments(
        fixture_index in 0..FRAGMENTED.len(),
        sizes in prop::collection::vec(1usize..70_000, 1..40),
    ) {
        let name = FRAGMENTED[fixture_index];
        let data = fixture(name);
        let whole = split_chunked(&data, &[data.len()]);
        let chunked = split_chunked(&data, &sizes);
        prop_assert_eq!(boundaries(&chunked), boundaries(&whole));
        prop_assert_eq!(chunked, whole);
    }

    #[test]
    fn random_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        sizes in prop::collection::vec(1usize..512, 1..8),
    ) {
        exercise_everything(&Bytes::from(data), &sizes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        fixture_index in 0..FRAGMENTED.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        sizes in prop::collection::vec(1usize..4096, 1..8),
    ) {
        let mut data = fixture(FRAGMENTED[fixture_index]).to_vec();
        for (index, byte) in edits {
            let at = index.index(data.len());
            data[at] = byte;
        }
        exercise_everything(&Bytes::from(data), &sizes);
    }
}

/// Runs every decoder over `data`; only panics count as failures.
fn exercise_everything(data: &Bytes, sizes: &[usize]) {
    let mut splitter = Splitter::new(1 << 20);
    let mut pos = 0;
    let mut sizes = sizes.iter().cycle();
    'feed: while pos < data.len() {
        let end = (pos + sizes.next().copied().unwrap_or(1)).min(data.len());
        splitter.feed(data.slice(pos..end));
        pos = end;
        loop {
            match splitter.poll() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    let _ = splitter.finish();
    let _ = probe::dump(data);
    let _ = InitSegment::parse(data.clone(), 0);
    let _ = Moov::decode(data);
    let _ = Moof::decode(data);
}

// Struct -> encode -> decode == struct, for every box type with fields.

fn bytes_up_to(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn fourcc() -> impl Strategy<Value = FourCC> {
    any::<[u8; 4]>().prop_map(FourCC)
}

fn round_trip<A: Atom + PartialEq + std::fmt::Debug>(atom: &A) -> Result<(), TestCaseError> {
    let encoded = atom.to_bytes();
    prop_assert_eq!(encoded.len(), atom.encoded_len());
    let decoded = A::decode(&encoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, atom);
    Ok(())
}

fn trun() -> impl Strategy<Value = Trun> {
    (
        0u8..=1,
        prop::option::of(any::<i32>()),
        prop::option::of(any::<u32>()),
        any::<u32>().prop_map(|f| f & SAMPLE_FIELDS),
        0u32..50,
    )
        .prop_flat_map(
            |(version, data_offset, first_sample_flags, fields, count)| {
                let sample = (any::<u32>(), any::<u32>(), any::<u32>(), any::<i32>()).prop_map(
                    move |(duration, size, flags, cto)| TrunSample {
                        duration: if fields & SAMPLE_DURATION_PRESENT != 0 {
                            duration
                        } else {
                            0
                        },
                        size: if fields & SAMPLE_SIZE_PRESENT != 0 {
                            size
                        } else {
                            0
                        },
                        flags: if fields & SAMPLE_FLAGS_PRESENT != 0 {
                            flags
                        } else {
                            0
                        },
                        composition_offset: match (
                            fields & SAMPLE_COMPOSITION_TIME_OFFSETS_PRESENT != 0,
                            version,
                        ) {
                            (false, _) => 0,
                            (true, 0) => i64::from(cto as u32),
                            (true, _) => i64::from(cto),
                        },
                    },
                );
                let samples = if fields == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    prop::collection::vec(sample, count as usize).boxed()
                };
                samples.prop_map(move |samples| Trun {
                    version,
                    data_offset,
                    first_sample_flags,
                    sample_fields: fields,
                    sample_count: count,
                    samples,
                })
            },
        )
}

fn tfhd() -> impl Strategy<Value = Tfhd> {
    (
        any::<u32>(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::sample::select(vec![0u32, 0x01_0000, 0x02_0000, 0x03_0000]),
    )
        .prop_map(|(track_id, base, sdi, duration, size, flags, other)| Tfhd {
            track_id,
            base_data_offset: base,
            sample_description_index: sdi,
            default_sample_duration: duration,
            default_sample_size: size,
            default_sample_flags: flags,
            other_flags: other,
        })
}

fn language() -> impl Strategy<Value = [u8; 3]> {
    prop::array::uniform3(b'a'..=b'z')
}

fn times(version: u8) -> BoxedStrategy<u64> {
    if version == 0 {
        any::<u32>().prop_map(u64::from).boxed()
    } else {
        any::<u64>().boxed()
    }
}

fn mdhd() -> impl Strategy<Value = Mdhd> {
    (0u8..=1).prop_flat_map(|version| {
        (
            times(version),
            times(version),
            1u32..,
            times(version),
            language(),
        )
            .prop_map(
                move |(creation_time, modification_time, timescale, duration, language)| Mdhd {
                    version,
                    creation_time,
                    modification_time,
                    timescale,
                    duration,
                    language,
                },
            )
    })
}

fn mvhd() -> impl Strategy<Value = Mvhd> {
    (0u8..=1).prop_flat_map(|version| {
        (
            times(version),
            times(version),
            any::<u32>(),
            times(version),
            any::<i32>(),
            any::<i16>(),
            any::<[i32; 9]>(),
            any::<u32>(),
        )
            .prop_map(
                move |(c, m, timescale, duration, rate, volume, matrix, next)| Mvhd {
                    version,
                    creation_time: c,
                    modification_time: m,
                    timescale,
                    duration,
                    rate,
                    volume,
                    matrix,
                    next_track_id: next,
                },
            )
    })
}

fn tkhd() -> impl Strategy<Value = Tkhd> {
    (0u8..=1).prop_flat_map(|version| {
        (
            (
                0u32..0x100_0000,
                times(version),
                times(version),
                any::<u32>(),
                times(version),
            ),
            (
                any::<i16>(),
                any::<i16>(),
                any::<i16>(),
                any::<[i32; 9]>(),
                any::<u32>(),
                any::<u32>(),
            ),
        )
            .prop_map(
                move |((flags, c, m, track_id, duration), (layer, group, volume, matrix, w, h))| {
                    Tkhd {
                        version,
                        flags,
                        creation_time: c,
                        modification_time: m,
                        track_id,
                        duration,
                        layer,
                        alternate_group: group,
                        volume,
                        matrix,
                        width: w,
                        height: h,
                    }
                },
            )
    })
}

fn avcc() -> impl Strategy<Value = Avcc> {
    (
        any::<[u8; 3]>(),
        0u8..4,
        prop::collection::vec(bytes_up_to(40), 0..4),
        prop::collection::vec(bytes_up_to(20), 0..4),
        bytes_up_to(8),
    )
        .prop_map(
            |([profile, compat, level], nal, sps, pps, extension)| Avcc {
                configuration_version: 1,
                profile_indication: profile,
                profile_compatibility: compat,
                level_indication: level,
                length_size_minus_one: nal,
                sequence_parameter_sets: sps,
                picture_parameter_sets: pps,
                extension,
            },
        )
}

fn hvcc() -> impl Strategy<Value = Hvcc> {
    let array = (
        any::<bool>(),
        0u8..64,
        prop::collection::vec(bytes_up_to(30), 0..3),
    )
        .prop_map(|(completeness, nal_unit_type, nalus)| HvccArray {
            completeness,
            nal_unit_type,
            nalus,
        });
    (
        (
            0u8..4,
            any::<bool>(),
            0u8..32,
            any::<u32>(),
            0u64..(1 << 48),
            any::<u8>(),
        ),
        (0u16..4096, 0u8..4, 0u8..4, 0u8..8, 0u8..8, any::<u16>()),
        (0u8..4, 0u8..8, any::<bool>(), 0u8..4),
        prop::collection::vec(array, 0..4),
    )
        .prop_map(
            |(
                (space, tier, profile, compat, constraints, level),
                (min_seg, parallelism, chroma, luma8, chroma8, fps),
                (cfr, layers, nested, nal),
                arrays,
            )| Hvcc {
                configuration_version: 1,
                general_profile_space: space,
                general_tier_flag: tier,
                general_profile_idc: profile,
                general_profile_compatibility_flags: compat,
                general_constraint_indicator_flags: constraints,
                general_level_idc: level,
                min_spatial_segmentation_idc: min_seg,
                parallelism_type: parallelism,
                chroma_format_idc: chroma,
                bit_depth_luma_minus8: luma8,
                bit_depth_chroma_minus8: chroma8,
                avg_frame_rate: fps,
                constant_frame_rate: cfr,
                num_temporal_layers: layers,
                temporal_id_nested: nested,
                length_size_minus_one: nal,
                arrays,
            },
        )
}

fn esds() -> impl Strategy<Value = Esds> {
    (
        any::<u16>(),
        0u8..32,
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 24),
        any::<(u32, u32)>(),
        prop::option::of(bytes_up_to(200)),
        prop::sample::select(vec![Bytes::new(), Bytes::from_static(&[6, 1, 2])]),
        prop::sample::select(vec![1u8, 4]),
    )
        .prop_map(
            |(es_id, priority, oti, stream_type, buffer, (max, avg), dsi, sl, width)| Esds {
                es_id,
                es_flags: priority,
                es_optional: Bytes::new(),
                object_type_indication: oti,
                stream_type,
                buffer_size_db: buffer,
                max_bitrate: max,
                avg_bitrate: avg,
                decoder_specific_info: dsi,
                trailing_descriptors: sl,
                size_width: width,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn trun_round_trips(t in trun()) { round_trip(&t)?; }

    #[test]
    fn tfhd_round_trips(t in tfhd()) { round_trip(&t)?; }

    #[test]
    fn tfdt_round_trips(version in 0u8..=1, time in any::<u64>()) {
        let time = if version == 0 { time & u64::from(u32::MAX) } else { time };
        round_trip(&Tfdt { version, base_media_decode_time: time })?;
    }

    #[test]
    fn mfhd_round_trips(sequence_number in any::<u32>()) {
        round_trip(&Mfhd { sequence_number })?;
    }

    #[test]
    fn trex_round_trips(v in any::<[u32; 5]>()) {
        round_trip(&Trex {
            track_id: v[0],
            default_sample_description_index: v[1],
            default_sample_duration: v[2],
            default_sample_size: v[3],
            default_sample_flags: v[4],
        })?;
    }

    #[test]
    fn prft_round_trips(version in 0u8..=1, track in any::<u32>(), ntp in any::<u64>(), media in any::<u64>()) {
        let media_time = if version == 0 { media & u64::from(u32::MAX) } else { media };
        round_trip(&Prft { version, flags: 0, reference_track_id: track, ntp_timestamp: ntp, media_time })?;
    }

    #[test]
    fn ftyp_round_trips(major in fourcc(), minor in any::<u32>(), brands in prop::collection::vec(fourcc(), 0..8)) {
        round_trip(&Ftyp { major_brand: major, minor_version: minor, compatible_brands: brands })?;
    }

    #[test]
    fn mvhd_round_trips(m in mvhd()) { round_trip(&m)?; }

    #[test]
    fn tkhd_round_trips(t in tkhd()) { round_trip(&t)?; }

    #[test]
    fn mdhd_round_trips(m in mdhd()) { round_trip(&m)?; }

    #[test]
    fn hdlr_round_trips(handler in fourcc(), name in bytes_up_to(40)) {
        round_trip(&Hdlr { handler_type: handler, name })?;
    }

    #[test]
    fn avcc_round_trips(a in avcc()) { round_trip(&a)?; }

    #[test]
    fn hvcc_round_trips(h in hvcc()) { round_trip(&h)?; }

    #[test]
    fn esds_round_trips(e in esds()) { round_trip(&e)?; }
}

#[test]
fn fixture_moofs_survive_struct_round_trips_too() {
    // bytes -> struct -> bytes is tested on fixtures elsewhere; here struct -> bytes -> struct on
    // the same real boxes, so both directions cover what ffmpeg writes.
    for name in FRAGMENTED {
        let (_, fragments) = split_whole(&fixture(name));
        for fragment in fragments {
            let moof = Moof::decode(
                &fragment
                    .bytes
                    .slice(fragment.moof_start..fragment.mdat_start),
            )
            .expect("moof");
            let mut buf = BytesMut::new();
            moof.encode(&mut buf);
            assert_eq!(Moof::decode(&buf.freeze()).expect("re-decodes"), moof);
        }
    }
}
