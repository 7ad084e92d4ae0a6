//! Per-thread scratch vectors for a connection's turn: the deliveries taken
//! from its mailbox and the journal changes on their way out.
//!
//! A turn fills and empties them without waiting, so one pair per worker
//! thread serves every connection; kept per connection, each idle one would
//! hold their room (and 48 bytes of headers) for nothing. Taken and put back
//! whole, never borrowed across a call, so nothing here can be re-entered.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::mailbox::Delivery;
use crate::persist::Op;

/// Room kept between turns; a larger vector (after a burst) is freed.
const KEEP: usize = 4096;

thread_local! {
    static BATCH: RefCell<Vec<Delivery>> = const { RefCell::new(Vec::new()) };
    static OPS: RefCell<Vec<Op>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector for a turn's deliveries.
pub(crate) fn take_batch() -> Vec<Delivery> {
    take(&BATCH)
}

/// Gives back a vector from [`take_batch`], emptied.
pub(crate) fn put_batch(batch: Vec<Delivery>) {
    put(&BATCH, batch);
}

/// An empty vector for journal changes.
pub(crate) fn take_ops() -> Vec<Op> {
    take(&OPS)
}

/// Gives back a vector from [`take_ops`], emptied.
pub(crate) fn put_ops(ops: Vec<Op>) {
    put(&OPS, ops);
}

fn take<T: 'static>(slot: &'static LocalKey<RefCell<Vec<T>>>) -> Vec<T> {
    slot.with(|v| std::mem::take(&mut *v.borrow_mut()))
}

fn put<T: 'static>(slot: &'static LocalKey<RefCell<Vec<T>>>, mut v: Vec<T>) {
    v.clear();
    if v.capacity() <= KEEP {
        slot.with(|s| *s.borrow_mut() = v);
    }
}
