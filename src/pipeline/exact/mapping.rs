//! The mapping pass of an exact run: each unit's distinct identities (a partition, or a
//! sub-partition of one too big for the budget: `split.rs`) through one mapper run (so
//! requests stay in flight across units), and each unit's answers written by ordinal for
//! pass 2, or, with `--distinct`, as the lookup table's rows.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::split::{self, Unit};
use super::*;

/// Maps the distinct identities of every unit through one mapper run (so requests stay in
/// flight across unit boundaries) and writes each unit's answers, in ordinal order, as soon
/// as all of its identities are answered. `early` is the answers pass 1 got, by partition.
/// Also returns the most distinct identities one unit held.
pub(super) async fn map_partitions(
    conn: &Connection,
    job: &Job<'_>,
    settings: &MapSettings,
    parts: &Arc<Partitions>,
    (units, early): (Vec<Unit>, Vec<u64>),
    mstats: Arc<MapperStats>,
    mut lookup: Option<DatasetWriter>,
) -> Result<(Option<DatasetWriter>, StatusCounts, u64), Error> {
    let (tx, rx) = to_mapper();
    let units: Arc<[Unit]> = units.into();
    let producer_parts = Arc::clone(parts);
    let producer_units = Arc::clone(&units);
    let interrupt = job.run.interrupt.clone();
    let peak = Arc::new(AtomicU64::new(0));
    let producer_peak = Arc::clone(&peak);
    let producer = Stage::spawn("distinct", move || -> Result<(), Error> {
        let mut buf = Vec::new();
        for (u, unit) in producer_units.iter().enumerate() {
            if interrupt.is_triggered() {
                return Ok(());
            }
            if unit.of > 1 && unit.sub == 0 {
                split::split(&producer_parts, unit.part, unit.of)?;
            }
            let (files, idx) = unit.files(&producer_parts);
            let mut seen: DigestMap<Key, ()> = DigestMap::default();
            // Identities pass 1 sent already: answered, not sent again.
            early_keys(&files, idx, |key| {
                seen.insert(key, ());
            })?;
            let mut keys: Vec<Key> = Vec::new();
            let mut r = files.reader("h", idx)?;
            while next_frame(&mut r, &mut buf).map_err(io(&files.dir))? {
                let s: Seen = crate::spill::decode(&buf).map_err(io(&files.dir))?;
                if seen.insert((s.kind, s.hash), ()).is_none() {
                    keys.push((s.kind, s.hash));
                }
            }
            producer_peak.fetch_max(seen.len() as u64, Ordering::Relaxed);
            drop(seen);
            // A unit pass 1 answered whole still goes through, empty: the answers stage
            // writes it while this one reads the next.
            let parts: Vec<&[Key]> = if keys.is_empty() {
                vec![&[]]
            } else {
                keys.chunks(MAP_CHUNK).collect()
            };
            for (k, part) in parts.into_iter().enumerate() {
                if interrupt.is_triggered()
                    || tx
                        .blocking_send(keys_chunk(u, (k * MAP_CHUNK) as u64, part))
                        .is_err()
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    let (to_answers, mut answers_rx) = tokio::sync::mpsc::channel::<IdentityChunk>(1);
    let stopped = job.run.interrupt.clone();
    let answer_parts = Arc::clone(parts);
    let answer_units = Arc::clone(&units);
    let early: Arc<[u64]> = early.into();
    let answer_early = Arc::clone(&early);
    let answers = Stage::spawn("answers", move || -> Result<Answered, Error> {
        // Chunks come in unit order, at least one per unit (empty when pass 1 sent all of
        // its identities): a unit's answers are written when the next one starts.
        let mut sink = Sink::new(
            (&answer_parts, &answer_units, &answer_early),
            lookup.take(),
            StatusCounts::default(),
            0,
        );
        let mut current: Option<(usize, Answers)> = None;
        while let Some(chunk) = answers_rx.blocking_recv() {
            if stopped.is_triggered() {
                // Nothing of this pass is kept when it is interrupted: write no more.
                current = None;
                continue;
            }
            if current.as_ref().map(|(p, _)| *p) != Some(chunk.file) {
                if let Some((p, got)) = current.take() {
                    sink.partition(p, got)?;
                    abort_at("mapping");
                }
                while sink.done < chunk.file {
                    sink.partition(sink.done, Vec::new())?;
                }
            }
            let (_, got) = current.get_or_insert_with(|| (chunk.file, Vec::new()));
            let outcomes = chunk.outcomes.unwrap_or_default();
            for (id, o) in chunk.ids.iter().zip(outcomes) {
                if let Hashed::Ok(h) = &id.hashed {
                    got.push(((id.kind, *h), o));
                }
            }
        }
        if let Some((p, got)) = current.take().filter(|_| !stopped.is_triggered()) {
            sink.partition(p, got)?;
            abort_at("mapping");
        }
        sink.wait_beside(0)?;
        Ok((
            sink.done,
            sink.lookup.take(),
            std::mem::take(&mut sink.counts),
        ))
    });
    let mapper = crate::mapper::Mapper::new(settings.batch_size, 0, mstats);
    let mapped = crate::mapper::run(
        Arc::clone(&conn.client),
        rx,
        to_answers,
        mapper,
        job.run.interrupt.clone(),
    )
    .await;
    let answered = answers.finish().await;
    let produced = producer.finish().await;
    mapped?;
    let (done, lookup, counts) = answered??;
    produced??;
    let mut sink = Sink::new((parts, &units, &early), lookup, counts, done);
    if !job.run.interrupt.is_triggered() {
        // Units after the last one answered had no identity at all.
        while sink.done < units.len() {
            sink.partition(sink.done, Vec::new())?;
        }
    }
    sink.wait_beside(0)?;
    Ok((
        sink.lookup.take(),
        std::mem::take(&mut sink.counts),
        peak.load(Ordering::Relaxed),
    ))
}

/// A unit's distinct identities with their answers, in the order they were sent.
type Answers = Vec<(Key, Option<MapOutcome>)>;

/// What the answers stage hands back: units done, the lookup table's writer, the input's
/// identities by status.
type Answered = (usize, Option<DatasetWriter>, StatusCounts);

/// Where a mapped unit goes: its answers file, by ordinal (for pass 2; a split
/// partition's are merged into the partition's once its last unit is done), or with
/// `--distinct` the lookup table's rows (and the input's counts, each repeat counted).
struct Sink<'a> {
    parts: &'a Partitions,
    units: &'a [Unit],
    /// Answers pass 1 got, by partition (the size of a whole partition's table).
    early: &'a [u64],
    lookup: Option<DatasetWriter>,
    counts: StatusCounts,
    /// Units handed over: written, or being written beside.
    done: usize,
    /// Whole partitions' answers being written on threads of their own, oldest first.
    beside: std::collections::VecDeque<std::thread::JoinHandle<Result<(), Error>>>,
}

/// Units whose answers files are written at once. Writing one (its early answers read
/// into a table, its pass-1 records read again, an answer written for each) takes one core
/// for about as long as the rest of the mapping pass: two at once use both cores and hold
/// two units' answers in memory.
const UNITS_WRITTEN_AT_ONCE: usize = 2;

impl<'a> Sink<'a> {
    /// A sink for the units of `parts` from unit `done` on (`early`: pass 1's answers by
    /// partition), nothing being written beside yet.
    fn new(
        (parts, units, early): (&'a Partitions, &'a [Unit], &'a [u64]),
        lookup: Option<DatasetWriter>,
        counts: StatusCounts,
        done: usize,
    ) -> Self {
        Sink {
            parts,
            units,
            early,
            lookup,
            counts,
            done,
            beside: std::collections::VecDeque::new(),
        }
    }

    fn partition(&mut self, u: usize, got: Answers) -> Result<(), Error> {
        let unit = self.units[u];
        let (files, p) = unit.files(self.parts);
        match self.lookup.as_mut() {
            // A whole partition is written on a thread of its own. A split one's
            // sub-partitions are merged when its last is written: they are written here,
            // one at a time, as the open-file room of a split expects.
            None if unit.of == 1 => {
                self.wait_beside(UNITS_WRITTEN_AT_ONCE - 1)?;
                let early = usize::try_from(self.early[unit.part]).unwrap_or(0);
                self.beside.push_back(
                    std::thread::Builder::new()
                        .name("answers file".into())
                        .spawn(move || unit_answers(&files, p, got, early))
                        .map_err(|e| Error::Internal(format!("cannot start a thread: {e}")))?,
                );
            }
            None => {
                self.wait_beside(0)?;
                unit_answers(&files, p, got, 0)?;
                if unit.last_of_part() {
                    split::merge_answers(self.parts, unit.part, unit.of)?;
                }
            }
            Some(writer) => {
                let mut got = got;
                got.extend(early_answers(&files, p)?);
                let _ = std::fs::remove_file(files.path("e", p));
                // Each input identity counts with the status of its row in the table.
                let statuses: DigestMap<Key, RowStatus> = got
                    .iter()
                    .map(|((kind, h), o)| {
                        let hashed = Hashed::Ok(*h);
                        (*kind, *h, RowStatus::decide(&hashed, o.as_ref(), true).0)
                    })
                    .map(|(kind, h, st)| ((kind, h), st))
                    .collect();
                let mut r = files.reader("h", p)?;
                let mut buf = Vec::new();
                while next_frame(&mut r, &mut buf).map_err(io(&files.dir))? {
                    let s: Seen = crate::spill::decode(&buf).map_err(io(&files.dir))?;
                    if let Some(st) = statuses.get(&(s.kind, s.hash)) {
                        self.counts.add(*st);
                    }
                }
                drop(statuses);
                for (k, part) in got.chunks(MAP_CHUNK).enumerate() {
                    let keys: Vec<Key> = part.iter().map(|(key, _)| *key).collect();
                    let mut chunk = keys_chunk(u, (k * MAP_CHUNK) as u64, &keys);
                    chunk.outcomes = Some(part.iter().map(|(_, o)| o.clone()).collect());
                    writer.write(chunk)?;
                }
                let _ = std::fs::remove_file(files.path("h", p));
                if unit.of > 1 && unit.last_of_part() {
                    split::remove(self.parts, unit.part);
                }
            }
        }
        self.done = u + 1;
        Ok(())
    }

    /// Waits until at most `most` units are being written beside (the first failure is
    /// returned; the others are still waited for when the sink is dropped).
    ///
    /// # Errors
    /// A unit's write failed or its thread panicked.
    fn wait_beside(&mut self, most: usize) -> Result<(), Error> {
        while self.beside.len() > most {
            let Some(h) = self.beside.pop_front() else {
                break;
            };
            h.join()
                .map_err(|_| Error::Internal("an answers-file thread panicked".into()))??;
        }
        Ok(())
    }
}

impl Drop for Sink<'_> {
    /// A failed run still waits for the units being written, so that none writes into the
    /// scratch folder while it is removed.
    fn drop(&mut self) {
        for h in self.beside.drain(..) {
            let _ = h.join();
        }
    }
}

/// Writes unit `p` of `files`: its answers by ordinal, from the answers the mapping pass
/// got for it (`got`) and the `early` ones pass 1 did (0 when not known).
///
/// # Errors
/// Scratch I/O.
fn unit_answers(files: &Partitions, p: usize, got: Answers, early: usize) -> Result<(), Error> {
    // Straight into a table of the right size: no list beside it, no growth while it fills.
    let path = files.path("e", p);
    let mut answers: DigestMap<Key, MapOutcome> =
        DigestMap::with_capacity_and_hasher(early + got.len(), Default::default());
    let mut keep = |key, outcome: Option<MapOutcome>| {
        if let Some(o) = outcome {
            answers.insert(key, o);
        }
    };
    for (key, outcome) in got {
        keep(key, outcome);
    }
    each_early_answer(files, p, &mut keep)?;
    let _ = std::fs::remove_file(path);
    write_answers(files, p, &answers)
}

/// The answers pass 1 got for unit `p` of `files` (none when it sent none).
///
/// # Errors
/// Scratch I/O.
fn early_answers(files: &Partitions, p: usize) -> Result<Answers, Error> {
    let mut got = Vec::new();
    each_early_answer(files, p, |key, outcome| got.push((key, outcome)))?;
    Ok(got)
}

/// Each answer pass 1 got for unit `p` of `files`.
///
/// # Errors
/// Scratch I/O.
fn each_early_answer(
    files: &Partitions,
    p: usize,
    mut each: impl FnMut(Key, Option<MapOutcome>),
) -> Result<(), Error> {
    if !files.path("e", p).exists() {
        return Ok(());
    }
    let mut r = files.reader("e", p)?;
    let mut buf = Vec::new();
    while next_frame(&mut r, &mut buf).map_err(io(&files.dir))? {
        let e: Early = crate::spill::decode(&buf).map_err(io(&files.dir))?;
        each((e.kind, e.hash), e.outcome);
    }
    Ok(())
}

/// The identities pass 1 sent for unit `p` of `files`, without decoding their answers.
///
/// # Errors
/// Scratch I/O.
fn early_keys(files: &Partitions, p: usize, mut each: impl FnMut(Key)) -> Result<(), Error> {
    /// The first fields of an [`Early`] record (postcard ignores the bytes after them).
    #[derive(Deserialize)]
    struct EarlyKey {
        kind: IdentityKind,
        hash: IdentityHash,
    }
    if !files.path("e", p).exists() {
        return Ok(());
    }
    let mut r = files.reader("e", p)?;
    let mut buf = Vec::new();
    while next_frame(&mut r, &mut buf).map_err(io(&files.dir))? {
        let e: EarlyKey = crate::spill::decode(&buf).map_err(io(&files.dir))?;
        each((e.kind, e.hash));
    }
    Ok(())
}

/// A chunk of distinct identities for the mapper: `file` is the unit, `first_row` the
/// offset among its distinct identities.
pub(super) fn keys_chunk(unit: usize, first: u64, keys: &[Key]) -> IdentityChunk {
    let ids = keys
        .iter()
        .map(|(kind, hash)| Identity {
            kind: *kind,
            hashed: Hashed::Ok(*hash),
            phone_form: Default::default(),
        })
        .collect::<Vec<_>>();
    IdentityChunk::new(unit, first, ids.len(), 1, Vec::new(), ids)
}

/// Writes partition `p`'s answers: one record per identity pass 1 saw, by ordinal.
fn write_answers(
    parts: &Partitions,
    p: usize,
    got: &DigestMap<Key, MapOutcome>,
) -> Result<(), Error> {
    let mut r = parts.reader("h", p)?;
    let mut w = parts.writer("a", p)?;
    let mut buf = Vec::new();
    while next_frame(&mut r, &mut buf).map_err(io(&parts.dir))? {
        let s: Seen = crate::spill::decode(&buf).map_err(io(&parts.dir))?;
        let answer = Answer {
            ordinal: s.ordinal,
            kind: s.kind,
            hash: s.hash,
            outcome: got.get(&(s.kind, s.hash)).cloned(),
        };
        put(&mut w, &answer).map_err(io(&parts.dir))?;
    }
    finish(vec![w], &parts.dir)?;
    // The spill of this partition is no longer needed.
    let _ = std::fs::remove_file(parts.path("h", p));
    Ok(())
}
