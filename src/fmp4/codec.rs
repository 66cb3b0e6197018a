//! RFC 6381 `codecs` parameters from decoder configuration records, as MSE's
//! `isTypeSupported`, WebCodecs and DASH/HLS manifests want them.

use std::fmt::Write as _;

use super::{Avcc, Esds, FourCC, Hvcc};

/// `avc1.PPCCLL`: profile, constraint flags and level in hex (ISO/IEC 14496-15 Annex E.2).
pub fn avc(kind: FourCC, avcc: &Avcc) -> String {
    format!(
        "{kind}.{:02x}{:02x}{:02x}",
        avcc.profile_indication, avcc.profile_compatibility, avcc.level_indication
    )
}

/// `hvc1.P.C.TL.CC…` (ISO/IEC 14496-15 Annex E.3): profile space and profile, the
/// compatibility flags bit-reversed in hex, tier and level, then the constraint bytes with
/// trailing zero bytes left out. For example `hvc1.1.6.L93.B0`.
pub fn hevc(kind: FourCC, hvcc: &Hvcc) -> String {
    let space = match hvcc.general_profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let mut out = format!(
        "{kind}.{space}{}.{:X}.{}{}",
        hvcc.general_profile_idc,
        hvcc.general_profile_compatibility_flags.reverse_bits(),
        if hvcc.general_tier_flag { 'H' } else { 'L' },
        hvcc.general_level_idc
    );
    let constraints = hvcc.general_constraint_indicator_flags.to_be_bytes();
    let constraints = constraints.get(2..).unwrap_or(&[]);
    let used = constraints
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1);
    for byte in constraints.iter().take(used) {
        let _ = write!(out, ".{byte:X}");
    }
    out
}

/// `mp4a.40.A` for MPEG-4 audio with audio object type A (RFC 6381 §3.3), or `mp4a.OO` for
/// other object types (`mp4a.6b` is MP3).
pub fn mp4a(esds: &Esds) -> String {
    match (esds.object_type_indication, esds.audio_object_type()) {
        (0x40, Some(aot)) => format!("mp4a.40.{aot}"),
        (oti, _) => format!("mp4a.{oti:02x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn avcc(profile: u8, compat: u8, level: u8) -> Avcc {
        Avcc {
            configuration_version: 1,
            profile_indication: profile,
            profile_compatibility: compat,
            level_indication: level,
            length_size_minus_one: 3,
            sequence_parameter_sets: vec![],
            picture_parameter_sets: vec![],
            extension: Bytes::new(),
        }
    }

    #[test]
    fn avc_codec_is_profile_compat_level_in_hex() {
        assert_eq!(avc(FourCC::new(b"avc1"), &avcc(100, 0, 31)), "avc1.64001f");
        assert_eq!(
            avc(FourCC::new(b"avc1"), &avcc(66, 0xe0, 30)),
            "avc1.42e01e"
        );
        assert_eq!(
            avc(FourCC::new(b"avc3"), &avcc(77, 0x40, 40)),
            "avc3.4d4028"
        );
    }

    #[test]
    fn hevc_codec_follows_annex_e() {
        // Main profile, level 3.1, progressive-source and frame-only constraints: the usual
        // output of x265 (`hvc1.1.6.L93.B0`).
        let hvcc = Hvcc {
            configuration_version: 1,
            general_profile_space: 0,
            general_tier_flag: false,
            general_profile_idc: 1,
            general_profile_compatibility_flags: 0x6000_0000,
            general_constraint_indicator_flags: 0xb000_0000_0000,
            general_level_idc: 93,
            min_spatial_segmentation_idc: 0,
            parallelism_type: 0,
            chroma_format_idc: 1,
            bit_depth_luma_minus8: 0,
            bit_depth_chroma_minus8: 0,
            avg_frame_rate: 0,
            constant_frame_rate: 0,
            num_temporal_layers: 1,
            temporal_id_nested: true,
            length_size_minus_one: 3,
            arrays: vec![],
        };
        assert_eq!(hevc(FourCC::new(b"hvc1"), &hvcc), "hvc1.1.6.L93.B0");
        let main10_high = Hvcc {
            general_profile_idc: 2,
            general_profile_compatibility_flags: 0x2000_0000,
            general_tier_flag: true,
            general_level_idc: 120,
            general_constraint_indicator_flags: 0,
            ..hvcc
        };
        assert_eq!(hevc(FourCC::new(b"hev1"), &main10_high), "hev1.2.4.H120");
    }

    fn esds(oti: u8, asc: &'static [u8]) -> Esds {
        Esds {
            es_id: 1,
            es_flags: 0,
            es_optional: Bytes::new(),
            object_type_indication: oti,
            stream_type: 0x15,
            buffer_size_db: 0,
            max_bitrate: 0,
            avg_bitrate: 0,
            decoder_specific_info: Some(Bytes::from_static(asc)),
            trailing_descriptors: Bytes::new(),
            size_width: 4,
        }
    }

    #[test]
    fn mp4a_codec_names_the_audio_object_type() {
        // 0x1190: AAC-LC (2), 48 kHz, stereo.
        assert_eq!(mp4a(&esds(0x40, &[0x11, 0x90])), "mp4a.40.2");
        // Escaped object type: 31 then 6 more bits (here 32 + 10 = 42, USAC-like).
        assert_eq!(mp4a(&esds(0x40, &[0xf9, 0x40])), "mp4a.40.42");
        assert_eq!(mp4a(&esds(0x6b, &[])), "mp4a.6b");
    }
}
