//! What the fragment writer and the manifests need from AV1 (AV1 Codec ISO Media File Format
//! Binding v1.2.0): the picture size from the sequence header OBU that the
//! AV1CodecConfigurationRecord (`av1C`) carries (AV1 spec §5.5.1), and the record's codec
//! string. Read through the same bounded bit reader as H.264's: `None`, never a panic.

use super::avc::Bits;

const OBU_SEQUENCE_HEADER: u8 = 1;

/// The `av01.P.LLT.DD` codecs parameter (AV1-ISOBMFF §"Codecs Parameter String"): profile,
/// level and tier, bit depth, from the record's fixed bytes.
pub fn codec(av1c: &[u8]) -> Option<String> {
    let [marker, profile_level, flags, ..] = *av1c else {
        return None;
    };
    if marker != 0x81 {
        return None;
    }
    let profile = profile_level >> 5;
    let level = profile_level & 0x1f;
    let tier = if flags & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (flags & 0x40 != 0, flags & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    Some(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// The largest picture the sequence header in `av1c`'s configOBUs allows
/// (`max_frame_width_minus_1 + 1` by `max_frame_height_minus_1 + 1`).
pub fn dimensions(av1c: &[u8]) -> Option<(u16, u16)> {
    let mut obus = av1c.get(4..)?;
    while !obus.is_empty() {
        let header = obus[0];
        let kind = (header >> 3) & 0x0f;
        let mut at = 1 + usize::from(header & 0x04 != 0);
        let size = if header & 0x02 != 0 {
            let (size, len) = leb128(obus.get(at..)?)?;
            at += len;
            usize::try_from(size).ok()?
        } else {
            obus.len().checked_sub(at)?
        };
        let body = obus.get(at..at.checked_add(size)?)?;
        if kind == OBU_SEQUENCE_HEADER {
            return sequence_header_dimensions(body);
        }
        obus = &obus[at + size..];
    }
    None
}

fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn uvlc(r: &mut Bits<'_>) -> Option<u32> {
    let mut zeros = 0;
    while !r.bit()? {
        zeros += 1;
        if zeros >= 32 {
            return None;
        }
    }
    Some(r.bits(zeros)? + ((1u32 << zeros) - 1))
}

/// sequence_header_obu() up to the frame size (§5.5.1).
fn sequence_header_dimensions(body: &[u8]) -> Option<(u16, u16)> {
    let mut r = Bits::new(body);
    r.bits(3)?; // seq_profile
    r.bit()?; // still_picture
    if r.bit()? {
        // reduced_still_picture_header
        r.bits(5)?; // seq_level_idx[0]
    } else {
        let mut decoder_model_info = false;
        let mut buffer_delay_length = 0;
        if r.bit()? {
            // timing_info()
            r.bits(32)?;
            r.bits(32)?;
            if r.bit()? {
                uvlc(&mut r)?;
            }
            decoder_model_info = r.bit()?;
            if decoder_model_info {
                buffer_delay_length = r.bits(5)? + 1;
                r.bits(32)?;
                r.bits(5)?;
                r.bits(5)?;
            }
        }
        let initial_display_delay = r.bit()?;
        let operating_points = r.bits(5)? + 1;
        for _ in 0..operating_points {
            r.bits(12)?; // operating_point_idc
            let level = r.bits(5)?;
            if level > 7 {
                r.bit()?; // seq_tier
            }
            if decoder_model_info && r.bit()? {
                r.bits(buffer_delay_length)?;
                r.bits(buffer_delay_length)?;
                r.bit()?;
            }
            if initial_display_delay && r.bit()? {
                r.bits(4)?;
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let width = r.bits(width_bits)?.checked_add(1)?;
    let height = r.bits(height_bits)?.checked_add(1)?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_svt_av1s_record() {
        // ffmpeg -c:v libsvtav1 at 320x240, its av1C in an MP4.
        let av1c = [
            0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xfb,
            0xf9, 0x00, 0x40,
        ];
        assert_eq!(codec(&av1c).as_deref(), Some("av01.0.00M.08"));
        assert_eq!(dimensions(&av1c), Some((320, 240)));
        for cut in 0..av1c.len() {
            let _ = dimensions(&av1c[..cut]);
        }
        assert_eq!(codec(&[0x80, 0, 0, 0]), None, "not a version 1 record");
    }
}
