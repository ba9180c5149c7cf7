//! Parking and passivation sweeps of a region's registry, and the snapshot a parked entity
//! leaves behind when it is dropped from memory.

use std::sync::atomic::Ordering;

use crate::actors::entity_actor::{EntityMsg, LiveMap, Parked, Slot};
use crate::actors::{checked_snapshot, Hosted};
use crate::runtime::Runtime;

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

pub(crate) fn sweep<E: Hosted>(rt: &Runtime, live: &LiveMap<E>) {
    let now_ms = rt.now_ms();
    let park_after_ms = secs_to_ms(rt.settings.actors.park_after_secs);
    let passivate_after_ms = secs_to_ms(rt.settings.actors.passivate_after_secs);
    let mut to_passivate = Vec::new();
    for entry in live.iter() {
        match entry.value() {
            Slot::Live(actor) => {
                let last = actor.shared.last_active_ms.load(Ordering::Relaxed);
                if now_ms - last >= park_after_ms {
                    let _ = actor.actor.cast(EntityMsg::Park);
                }
            }
            Slot::Parked(parked) if now_ms - parked.last_active_ms >= passivate_after_ms => {
                to_passivate.push(entry.key().clone());
            }
            Slot::Parked(_) => {}
        }
    }
    // Removed after the iteration: a dashmap shard cannot be written while it is read.
    for id in to_passivate {
        if let Some((id, Slot::Parked(parked))) =
            live.remove_if(&id, |_, slot| matches!(slot, Slot::Parked(_)))
        {
            write_snapshot(rt, &id, &parked);
        }
    }
}

/// Queues a snapshot of a parked entity that is behind its journal (best effort: without it,
/// recovery replays a longer tail).
pub(crate) fn write_snapshot<E: Hosted>(rt: &Runtime, id: &str, parked: &Parked<E>) {
    if parked.last_seq <= parked.snapshot_seq || !parked.entity.exists() {
        return;
    }
    let pid = crate::actors::pid::<E>(id);
    match checked_snapshot(&parked.entity, pid, parked.last_seq, rt.now_ms()) {
        Ok(record) => rt.journal.offer_snapshot(record, None),
        Err(violation) => {
            tracing::error!(kind = E::KIND, %id, %violation, "not snapshotting a broken state");
        }
    }
}
