//! What the fragment writer needs from an H.265 sequence parameter set: the picture size
//! (ITU-T H.265 §7.3.2.2.1, the conformance window of §7.4.3.2.1). Through the same bounded
//! bit reader as H.264's: a short or malformed SPS gives `None`, never a panic.

use super::avc::{Bits, unescape};

const NAL_SPS: u8 = 33;

/// The display width and height an SPS describes, after its conformance window.
pub fn sps_dimensions(nal: &[u8]) -> Option<(u16, u16)> {
    // The two-byte NAL header (§7.3.1.2), type in bits 1..7 of the first.
    let (header, rest) = nal.split_at_checked(2)?;
    if (header[0] >> 1) & 0x3f != NAL_SPS {
        return None;
    }
    let rbsp = unescape(rest);
    let mut r = Bits::new(&rbsp);
    r.bits(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)? as usize; // sps_max_sub_layers_minus1
    r.bit()?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(&mut r, sub_layers)?;
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    let separate_colour_plane = chroma_format_idc == 3 && r.bit()?;
    let width = u64::from(r.ue()?);
    let height = u64::from(r.ue()?);
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        left = r.ue()?.into();
        right = r.ue()?.into();
        top = r.ue()?.into();
        bottom = r.ue()?.into();
    }
    // SubWidthC and SubHeightC (Table 6-1); one sample when the planes are coded apart.
    let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let width = width.checked_sub((left + right).checked_mul(sub_width)?)?;
    let height = height.checked_sub((top + bottom).checked_mul(sub_height)?)?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// profile_tier_level(1, max_sub_layers_minus1) (§7.3.3): 96 bits of general profile and
/// level, two presence flags per sub-layer, padding to eight, then what is present.
fn skip_profile_tier_level(r: &mut Bits<'_>, sub_layers: usize) -> Option<()> {
    r.skip(96)?;
    let mut present = Vec::with_capacity(sub_layers);
    for _ in 0..sub_layers {
        present.push((r.bit()?, r.bit()?));
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers))?;
    }
    for (profile, level) in present {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_of_x265_pictures() {
        // x265 Main (ffmpeg -c:v libx265 -f hevc from testsrc2), 320x240.
        let plain = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b,
            0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10,
        ];
        assert_eq!(sps_dimensions(&plain), Some((320, 240)));
        // 642x362: coded as 648x368 with a conformance window.
        let cropped = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x3f, 0xa0, 0x05, 0x12, 0x01, 0x71, 0xc9, 0x26, 0x59, 0x59, 0xa4,
            0x93, 0x2b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00,
            0x3c, 0x10,
        ];
        assert_eq!(sps_dimensions(&cropped), Some((642, 362)));
        for cut in 0..plain.len() {
            let _ = sps_dimensions(&plain[..cut]);
        }
        assert_eq!(sps_dimensions(&[0x44, 0x01, 0xc1]), None, "a PPS is no SPS");
    }
}
