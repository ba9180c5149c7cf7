//! Parking and passivation sweeps of a region's registry, and the snapshot a parked entity
//! leaves behind when it is dropped from memory.

use std::sync::atomic::Ordering;

use crate::actors::entity_actor::{EntityMsg, LiveMap, Parked, Slot};
use crate::actors::Entity;
use crate::persistence::journal::Append;
use crate::persistence::{codec, Batch, SnapshotRecord};
use crate::runtime::Runtime;

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

pub(crate) fn sweep<E: Entity>(rt: &Runtime, live: &LiveMap<E>) {
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
pub(crate) fn write_snapshot<E: Entity>(rt: &Runtime, id: &str, parked: &Parked<E>) {
    if parked.last_seq <= parked.snapshot_seq || !parked.entity.exists() {
        return;
    }
    if let Err(violation) = parked.entity.check_deep_invariants() {
        tracing::error!(kind = E::KIND, %id, %violation, "not snapshotting a broken state");
        return;
    }
    let Some(permit) = rt.journal.try_reserve() else {
        return;
    };
    let mut batch = Batch::default();
    batch.snapshots.push(SnapshotRecord {
        pid: crate::actors::pid::<E>(id),
        seq: parked.last_seq,
        at_ms: rt.now_ms(),
        payload: codec::encode(E::VERSION, &parked.entity),
    });
    permit.send(Append {
        batch,
        writer: None,
        done: Box::new(|_| {}),
    });
}
