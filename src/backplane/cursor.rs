//! The bounds-checked byte cursor shared by the payload decoders (`wire`, `sr2`): every read of
//! bytes from the network goes through `take`, which never panics and says where it ran out.

/// A read past the end of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub offset: usize,
    pub field: &'static str,
    pub needed: usize,
    pub available: usize,
}

/// Takes `n` bytes of `buf` at `*pos` and advances it, or reports how short the payload is.
pub fn take<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    n: usize,
    field: &'static str,
) -> Result<&'a [u8], Truncated> {
    let available = buf.len().saturating_sub(*pos);
    if n > available {
        return Err(Truncated {
            offset: *pos,
            field,
            needed: n,
            available,
        });
    }
    let bytes = &buf[*pos..*pos + n];
    *pos += n;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_advances_or_reports_the_shortfall() {
        let mut pos = 0;
        assert_eq!(take(b"abc", &mut pos, 2, "x").unwrap(), b"ab");
        assert_eq!(
            take(b"abc", &mut pos, 2, "y"),
            Err(Truncated {
                offset: 2,
                field: "y",
                needed: 2,
                available: 1
            })
        );
        assert_eq!(pos, 2);
    }
}
