//! The packet-mark bits tortie's chains communicate through (policy.md
//! §6): allocated from the configured mark mask, lowest bit first, at
//! Calico's positions — ACCEPT (a policy or profile allowed the packet),
//! PASS (a policy passed to the next tier), DROP (Calico's; tortie drops
//! directly and leaves it alone), scratch0 (a rule whose ports are an OR
//! of alternatives records "some alternative matched" in it). With the
//! default mask: 0x10000, 0x20000, (0x40000), 0x80000.
//!
//! Hard case: a mask with fewer than four bits cannot hold them; the
//! renderer then reports the mask and falls back to the default mask.

/// Calico's default mark mask (`iptablesMarkMask`).
pub const DEFAULT_MASK: u32 = 0xffff_0000;

/// The mark bits in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub accept: u32,
    pub pass: u32,
    pub scratch: u32,
}

impl Marks {
    /// The first, second and fourth lowest bits of `mask` (the third is
    /// Calico's DROP bit), or `None` if it has fewer than four.
    pub fn from_mask(mask: u32) -> Option<Marks> {
        let mut bits = (0..32).map(|b| 1u32 << b).filter(|bit| mask & bit != 0);
        let accept = bits.next()?;
        let pass = bits.next()?;
        let _drop = bits.next()?;
        Some(Marks {
            accept,
            pass,
            scratch: bits.next()?,
        })
    }

    /// Every bit tortie uses.
    pub fn all(self) -> u32 {
        self.accept | self.pass | self.scratch
    }
}

impl Default for Marks {
    fn default() -> Marks {
        Marks {
            accept: 0x1_0000,
            pass: 0x2_0000,
            scratch: 0x8_0000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_come_from_the_mask_lowest_first() {
        assert_eq!(Marks::from_mask(DEFAULT_MASK), Some(Marks::default()));
        let m = Marks::from_mask(0b1_1011_0000).expect("four bits");
        assert_eq!((m.accept, m.pass, m.scratch), (0x10, 0x20, 0x100));
        assert_eq!(Marks::from_mask(0b111), None);
    }
}
