//! The `onMetaData` script tag (AMF0, Adobe "Action Message Format AMF 0"): what an encoder
//! says of its stream before the first frame. Only the numbers the ingest uses are kept;
//! nesting is bounded, and anything malformed simply yields fewer fields.

/// What `onMetaData` may say; every field is optional.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MetaData {
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub frame_rate: Option<f64>,
    pub audio_sample_rate: Option<f64>,
}

const MAX_DEPTH: usize = 8;

/// Reads `onMetaData` from a script tag's body; `None` if it is another script tag.
pub fn parse_metadata(data: &[u8]) -> Option<MetaData> {
    let mut cursor = Cursor { data, pos: 0 };
    if cursor.u8()? != 2 || cursor.string()? != b"onMetaData" {
        return None;
    }
    let mut meta = MetaData::default();
    cursor.value(0, &mut |name, value| {
        let slot = match name {
            b"width" => &mut meta.width,
            b"height" => &mut meta.height,
            b"framerate" => &mut meta.frame_rate,
            b"audiosamplerate" => &mut meta.audio_sample_rate,
            _ => return,
        };
        if value.is_finite() {
            *slot = Some(value);
        }
    });
    Some(meta)
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// Reads one value; numbers inside objects and arrays are reported with their names.
    fn value(&mut self, depth: usize, found: &mut dyn FnMut(&[u8], f64)) -> Option<f64> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.u8()? {
            0 => self
                .take(8)
                .map(|b| f64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
            1 => self.u8().map(f64::from),
            2 => self.string().map(|_| f64::NAN),
            3 => self.properties(depth, found),
            5 | 6 => Some(f64::NAN),
            8 => {
                self.u32()?;
                self.properties(depth, found)
            }
            10 => {
                let count = self.u32()?;
                for _ in 0..count {
                    self.value(depth + 1, &mut |_, _| {})?;
                }
                Some(f64::NAN)
            }
            11 => self.take(10).map(|_| f64::NAN),
            12 => {
                let len = self.u32()?;
                self.take(usize::try_from(len).ok()?).map(|_| f64::NAN)
            }
            _ => None,
        }
    }

    /// Name-value pairs up to the object end marker (an empty name, then 9).
    fn properties(&mut self, depth: usize, found: &mut dyn FnMut(&[u8], f64)) -> Option<f64> {
        loop {
            let name = self.string()?;
            if name.is_empty() {
                return (self.u8()? == 9).then_some(f64::NAN);
            }
            let value = self.value(depth + 1, found)?;
            found(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(name: &str, value: f64) -> Vec<u8> {
        let mut out = (name.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(&value.to_be_bytes());
        out
    }

    #[test]
    fn reads_what_ffmpeg_writes() {
        let mut data = vec![2, 0, 10];
        data.extend_from_slice(b"onMetaData");
        data.extend_from_slice(&[8, 0, 0, 0, 4]);
        data.extend(number("width", 1280.0));
        data.extend(number("height", 720.0));
        data.extend(number("framerate", 30.0));
        // A string property in between is passed over.
        data.extend_from_slice(&[0, 7]);
        data.extend_from_slice(b"encoder");
        data.extend_from_slice(&[2, 0, 4]);
        data.extend_from_slice(b"x264");
        data.extend(number("audiosamplerate", 48000.0));
        data.extend_from_slice(&[0, 0, 9]);
        let meta = parse_metadata(&data).expect("onMetaData");
        assert_eq!(meta.width, Some(1280.0));
        assert_eq!(meta.height, Some(720.0));
        assert_eq!(meta.frame_rate, Some(30.0));
        assert_eq!(meta.audio_sample_rate, Some(48000.0));
        // Cut anywhere: no panic, at most fewer fields.
        for cut in 0..data.len() {
            let _ = parse_metadata(&data[..cut]);
        }
    }
}
