//! Pass 1 of an exact run: the spill of every valid identity, by partition, and the early
//! sends: identities the filter proves new go to the mapper while the input is read, and
//! their answers to the e-P files for the mapping pass.

use super::*;

/// What pass 1's spill stage counted.
pub(super) struct Spilled {
    pub(super) valid: u64,
    pub(super) rows: u64,
    pub(super) local: StatusCounts,
    /// Pass-1 records per partition.
    pub(super) counts: Vec<u64>,
    pub(super) sent_early: u64,
    /// Identities sent early, per partition.
    pub(super) early: Vec<u64>,
    /// The filter's false-positive rate at the end ([`filter::SeenFilter::false_positive_rate`]).
    pub(super) false_positives: f64,
    /// The mapper stopped taking identities before the input ended (its error, or an
    /// interrupt, says why).
    pub(super) cut_short: bool,
}

/// Pass 1's spill: every valid identity by partition, in input order; those the filter
/// proves new also go to the mapper, a chunk at a time.
pub(super) fn spill_stage(
    parts: Arc<Partitions>,
    rx: std::sync::mpsc::Receiver<IdentityChunk>,
    early: tokio::sync::mpsc::Sender<IdentityChunk>,
    estimated_identities: u64,
) -> Stage<Result<Spilled, Error>> {
    Stage::spawn("spill", move || -> Result<Spilled, Error> {
        let mut filter = filter::SeenFilter::for_identities(estimated_identities);
        tracing::debug!(bytes = filter.bytes(), "exact dedupe: pass 1's filter");
        let mut ws = parts.writers("h")?;
        let mut out = Spilled {
            valid: 0,
            rows: 0,
            local: StatusCounts::default(),
            counts: vec![0u64; parts.n],
            sent_early: 0,
            early: vec![0u64; parts.n],
            false_positives: 0.0,
            cut_short: false,
        };
        let mut ordinal = 0u64;
        let mut new: Vec<Key> = Vec::with_capacity(MAP_CHUNK);
        let send = |new: &mut Vec<Key>, sent: &mut u64| -> bool {
            let chunk = keys_chunk(0, *sent, new);
            *sent += new.len() as u64;
            new.clear();
            early.blocking_send(chunk).is_ok()
        };
        for chunk in rx {
            // The mapper stopped (a fatal error, an interrupt): say so now, not after
            // reading the rest of the input.
            if early.is_closed() {
                out.cut_short = true;
                break;
            }
            out.rows += chunk.len as u64;
            for id in &chunk.ids {
                match id.hashed {
                    Hashed::Ok(hash) => {
                        let p = partition_of(&hash, parts.n);
                        let seen = Seen {
                            ordinal,
                            kind: id.kind,
                            hash,
                        };
                        put(&mut ws[p], &seen).map_err(io(&parts.dir))?;
                        out.counts[p] += 1;
                        out.valid += 1;
                        if filter.insert(id.kind, &hash) {
                            new.push((id.kind, hash));
                            out.early[p] += 1;
                        }
                    }
                    _ => out.local.add(RowStatus::decide(&id.hashed, None, true).0),
                }
                ordinal += 1;
            }
            if new.len() >= MAP_CHUNK && !send(&mut new, &mut out.sent_early) {
                out.cut_short = true;
                break;
            }
            abort_at("spill");
        }
        if !out.cut_short && !new.is_empty() && !send(&mut new, &mut out.sent_early) {
            out.cut_short = true;
        }
        finish(ws, &parts.dir)?;
        out.false_positives = filter.false_positive_rate();
        Ok(out)
    })
}

/// Pass 1's early answers, by partition (e-P files) for the mapping pass.
pub(super) fn early_stage(
    parts: Arc<Partitions>,
    mut answers: tokio::sync::mpsc::Receiver<IdentityChunk>,
) -> Stage<Result<(), Error>> {
    Stage::spawn("early answers", move || -> Result<(), Error> {
        let mut ws = parts.writers("e")?;
        while let Some(chunk) = answers.blocking_recv() {
            let outcomes = chunk.outcomes.unwrap_or_default();
            for (id, outcome) in chunk.ids.into_iter().zip(outcomes) {
                if let Hashed::Ok(hash) = id.hashed {
                    let early = Early {
                        kind: id.kind,
                        hash,
                        outcome,
                    };
                    put(&mut ws[partition_of(&hash, parts.n)], &early).map_err(io(&parts.dir))?;
                }
            }
        }
        finish(ws, &parts.dir)
    })
}
