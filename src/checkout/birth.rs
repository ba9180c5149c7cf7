//! How an order is born inside the step that reserved its units, and what a caller brings along
//! to that step ([`Rider`]).

use std::sync::{Arc, OnceLock};

use crate::actors::hosted::order::{birth, Birth};
use crate::actors::order::Placed;
use crate::actors::OrderId;
use crate::actors::{Hosted, SideWrites};
use crate::error::ApiError;
use crate::persistence::Batch;
use crate::supervisors::region::Hold;

/// Rows a caller commits with an order's birth, made from the born order's JSON and the time
/// of the step (at the HTTP edge: the idempotency record of the 201).
pub type BirthRows = Arc<dyn Fn(&str, i64) -> Batch + Send + Sync>;

/// What a request brings to the step that gives birth to its order. Opaque to checkout, which
/// knows nothing of keys or responses: it commits `birth_rows` with the birth and keeps `hold`
/// past a step that does not answer in time.
#[derive(Default)]
pub struct Rider {
    /// Committed in the same journal append as the order's birth.
    pub birth_rows: Option<BirthRows>,
    /// Kept until the outcome of a step that timed out is known (an idempotency key's
    /// in-flight guard, so that a retry cannot run the step a second time meanwhile).
    pub hold: Option<Hold>,
}

/// Where the actor that gives birth to an order leaves the order's JSON for the placement that
/// asked for it. The order is serialised once, in [`birth`], and those bytes are its read row,
/// the rider's rows and the answer (on the hot purchase path a second and third serialisation
/// were measurable).
#[derive(Clone, Default)]
pub(super) struct Born(Arc<OnceLock<String>>);

impl Born {
    /// The side writes that give birth to order `order_id` with the step whose reply `placed`
    /// reads the order from (`None`: this reply places no order), with `rows`.
    pub(super) fn side<E, F>(
        &self,
        order_id: OrderId,
        rows: Option<BirthRows>,
        placed: F,
    ) -> SideWrites<E>
    where
        E: Hosted,
        F: Fn(&E::Reply) -> Option<Placed> + Send + Sync + 'static,
    {
        let born = self.clone();
        Arc::new(move |reply: &E::Reply, now_ms: i64| match placed(reply) {
            Some(placed) => born.rows(&order_id.to_string(), placed, rows.as_ref(), now_ms),
            None => Batch::default(),
        })
    }

    /// The rows of order `id`'s birth, with `extra`'s.
    fn rows(&self, id: &str, placed: Placed, extra: Option<&BirthRows>, now_ms: i64) -> Batch {
        let Birth {
            mut batch, json, ..
        } = birth(id, placed);
        if let Some(extra) = extra {
            batch.extend(extra(&json, now_ms));
        }
        // Set once: a step runs its side writes once.
        let _ = self.0.set(json);
        batch
    }

    /// The born order's JSON, once the step that gave birth to it has committed.
    pub(super) fn json(&self) -> Result<String, ApiError> {
        self.0.get().cloned().ok_or_else(|| {
            ApiError::internal("the step succeeded without writing the order's birth")
        })
    }
}
