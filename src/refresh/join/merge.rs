//! The decisions of every partition merged back in export order (a k-way merge by ordinal)
//! while the export is read a second time.

use super::spill::*;
use super::*;

/// A decision with the identity it was made for and its key's digest.
pub(crate) type Decided = (IdentityKind, IdentityHash, u64, Decision);

/// Decisions of every partition, merged in ordinal order.
pub(crate) struct Merged {
    pub(crate) readers: Vec<BufReader<File>>,
    pub(crate) heap: BinaryHeap<Reverse<(u64, usize)>>,
    pub(crate) pending: Vec<Option<Decided>>,
    pub(crate) tmp: PathBuf,
    pub(crate) buf: Vec<u8>,
    /// The first ordinal the second read asks for (after the rows an interrupted run
    /// wrote): decisions below it are skipped, any other decision not asked for is an
    /// identity the second read no longer has.
    pub(crate) floor: u64,
    /// Decisions at or above `floor` that were never asked for.
    pub(crate) orphans: u64,
}

impl Joined {
    /// Opens the decision files for the merge, from ordinal `floor` on.
    ///
    /// # Errors
    /// A decision file cannot be read.
    pub(crate) fn merge(&self, floor: u64) -> Result<Merged, Error> {
        let mut m = Merged {
            readers: (0..self.sides.n)
                .map(|p| self.sides.reader("d", p))
                .collect::<Result<_, _>>()?,
            heap: BinaryHeap::new(),
            pending: vec![None; self.sides.n],
            tmp: self.sides.dir.clone(),
            buf: Vec::new(),
            floor,
            orphans: 0,
        };
        for p in 0..self.sides.n {
            m.refill(p)?;
        }
        Ok(m)
    }
}

impl Merged {
    pub(crate) fn refill(&mut self, p: usize) -> Result<(), Error> {
        if next_frame(&mut self.readers[p], &mut self.buf).map_err(io(&self.tmp))? {
            let rec: DecisionRecord = decode(&self.buf).map_err(io(&self.tmp))?;
            self.pending[p] = Some((rec.kind, rec.hash, rec.key, rec.decision));
            self.heap.push(Reverse((rec.ordinal, p)));
        }
        Ok(())
    }

    /// The decision for `ordinal`, with the identity it was made for; decisions for smaller
    /// ordinals (rows an interrupted run already wrote) are skipped. `None` if there is none.
    ///
    /// # Errors
    /// A decision file cannot be read.
    pub(crate) fn take(&mut self, ordinal: u64) -> Result<Option<Decided>, Error> {
        while let Some(Reverse((o, p))) = self.heap.peek().copied() {
            if o > ordinal {
                return Ok(None);
            }
            self.heap.pop();
            let d = self.pending[p].take();
            self.refill(p)?;
            if o == ordinal {
                return Ok(d);
            }
            if o >= self.floor {
                self.orphans += 1;
            }
        }
        Ok(None)
    }

    /// Reads the decisions never asked for; `true` when any is at or above the floor (an
    /// identity the first read had and the second did not).
    ///
    /// # Errors
    /// A decision file cannot be read.
    pub(crate) fn any_left(&mut self) -> Result<bool, Error> {
        self.take(u64::MAX)?;
        Ok(self.orphans > 0)
    }
}
