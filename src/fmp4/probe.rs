//! `probe`: the box tree of a file, one box a line with the fields that matter, like
//! `MP4Box -info` or mp4ff's `mp4ff-info`.

use std::fmt::Write as _;

use bytes::Bytes;

use super::{Atom, Dump, Ftyp, Moof, Moov, Prft, Reader, Result, Styp};

/// Dumps every box of `data`. Top-level lines carry the absolute offset.
pub fn dump(data: &Bytes) -> Result<String> {
    let mut out = String::new();
    let mut r = Reader::new(data, 0);
    while let Some(child) = r.next_box()? {
        let offset = child.offset();
        let kind = child.kind();
        let _ = write!(out, "[{offset:>10}] ");
        if kind == Ftyp::KIND {
            line(&mut out, 0, &child.decode::<Ftyp>()?);
        } else if kind == Styp::KIND {
            line(&mut out, 0, &child.decode::<Styp>()?);
        } else if kind == Moov::KIND {
            line(&mut out, 0, &child.decode::<Moov>()?);
        } else if kind == Moof::KIND {
            line(&mut out, 0, &child.decode::<Moof>()?);
        } else if kind == Prft::KIND {
            line(&mut out, 0, &child.decode::<Prft>()?);
        } else {
            line(&mut out, 0, &child.raw());
        }
    }
    Ok(out)
}

fn line(out: &mut String, depth: usize, node: &dyn Dump) {
    if depth > 0 {
        out.push_str(&" ".repeat(13));
    }
    for _ in 0..depth {
        out.push_str("  ");
    }
    let _ = write!(out, "{} size={}", node.kind(), node.size());
    node.describe(out);
    out.push('\n');
    node.visit_children(&mut |child| line(out, depth + 1, child));
}
