//! Loss, duplicate and ordering checks for one subscriber's view of one
//! publisher's sequence numbers.
//!
//! MQTT keeps a publisher's messages on one topic in order for a
//! subscriber at the same QoS [MQTT-4.6.0-6], so a [`Track`] expects
//! `0, 1, 2, ...`. A number past the next expected one leaves a gap
//! (messages lost, unless they turn up later); a number below it is either
//! a duplicate or a late arrival. A 256-number window of what was received
//! tells the two apart; anything older than the window counts as reordered.

/// Width of the window of recently received sequence numbers.
const WINDOW: u64 = 256;

/// What one received sequence number was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The next one expected.
    InOrder,
    /// Past the next expected: this many before it have not arrived.
    Gap(u64),
    /// Below the next expected and not seen before: it fills a gap.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// The state of one (subscriber, publisher) sequence.
#[derive(Clone, Debug, Default)]
pub struct Track {
    next: u64,
    /// Bit `s % WINDOW` is set when `s` in `next - WINDOW..next` arrived.
    seen: [u64; (WINDOW / 64) as usize],
    /// Every message received, duplicates included.
    pub received: u64,
    /// Messages skipped when a later one arrived first.
    pub gaps: u64,
    /// Messages that arrived after a later one.
    pub reordered: u64,
    /// Messages received more than once.
    pub duplicates: u64,
}

impl Track {
    /// Records sequence number `seq`.
    pub fn on_seq(&mut self, seq: u64) -> Verdict {
        self.received += 1;
        if seq >= self.next {
            let gap = seq - self.next;
            // The bits of the skipped numbers still describe numbers a
            // window earlier: clear them.
            if gap >= WINDOW {
                self.seen = Default::default();
            } else {
                for s in self.next..seq {
                    self.set(s, false);
                }
            }
            self.set(seq, true);
            self.next = seq + 1;
            if gap == 0 {
                return Verdict::InOrder;
            }
            self.gaps += gap;
            return Verdict::Gap(gap);
        }
        if self.next - seq > WINDOW || !self.is_set(seq) {
            if self.next - seq <= WINDOW {
                self.set(seq, true);
            }
            self.reordered += 1;
            return Verdict::Reordered;
        }
        self.duplicates += 1;
        Verdict::Duplicate
    }

    /// Distinct messages received.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }

    fn set(&mut self, seq: u64, on: bool) {
        let bit = seq % WINDOW;
        let word = &mut self.seen[(bit / 64) as usize];
        if on {
            *word |= 1 << (bit % 64);
        } else {
            *word &= !(1 << (bit % 64));
        }
    }

    fn is_set(&self, seq: u64) -> bool {
        let bit = seq % WINDOW;
        self.seen[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordered_sequence_is_all_in_order() {
        let mut t = Track::default();
        for s in 0..1000 {
            assert_eq!(t.on_seq(s), Verdict::InOrder);
        }
        assert_eq!((t.received, t.gaps, t.unique()), (1000, 0, 1000));
    }

    #[test]
    fn a_skipped_number_is_a_gap_until_it_arrives_late() {
        let mut t = Track::default();
        t.on_seq(0);
        assert_eq!(t.on_seq(3), Verdict::Gap(2));
        assert_eq!(t.on_seq(1), Verdict::Reordered);
        assert_eq!(t.on_seq(1), Verdict::Duplicate);
        assert_eq!(t.on_seq(2), Verdict::Reordered);
        assert_eq!(t.on_seq(4), Verdict::InOrder);
        assert_eq!(
            (t.gaps, t.reordered, t.duplicates, t.unique()),
            (2, 2, 1, 5)
        );
    }

    #[test]
    fn a_repeat_of_the_last_number_is_a_duplicate() {
        let mut t = Track::default();
        t.on_seq(0);
        t.on_seq(1);
        assert_eq!(t.on_seq(1), Verdict::Duplicate);
        assert_eq!(t.on_seq(0), Verdict::Duplicate);
    }

    #[test]
    fn the_window_forgets_what_it_saw_a_window_ago() {
        let mut t = Track::default();
        for s in 0..300 {
            t.on_seq(s);
        }
        // 300 + 10 skips 300..310, whose bits held 44..54: they must read
        // as missing now, not as seen.
        assert_eq!(t.on_seq(310), Verdict::Gap(10));
        assert_eq!(t.on_seq(305), Verdict::Reordered);
        assert_eq!(t.on_seq(305), Verdict::Duplicate);
        // Far older than the window: counted as reordered.
        assert_eq!(t.on_seq(3), Verdict::Reordered);
    }

    #[test]
    fn a_gap_wider_than_the_window_resets_it() {
        let mut t = Track::default();
        t.on_seq(0);
        assert_eq!(t.on_seq(10_000), Verdict::Gap(9_999));
        assert_eq!(t.on_seq(9_999), Verdict::Reordered);
        assert_eq!(t.on_seq(10_000), Verdict::Duplicate);
    }
}
