//! What the runtime shows of an Order: its read rows, live topic and admin view.

use crate::actors::entity_actor::{step_rows, StepInput, WrittenRows};
use crate::actors::order::*;
use crate::actors::{pid, Ctx, Entity, Inspect, Live, Projection};
use crate::persistence::{Batch, ReadRow};

impl Projection for Order {
    fn read_row(&self) -> Option<ReadRow> {
        self.view().map(|view| read_row_of(self, &view))
    }
}

impl Live for Order {
    fn live_topic(id: &str) -> Option<String> {
        Some(format!("order:{id}"))
    }

    /// What `GET /orders/{id}` answers.
    fn live_view(&self, _now_ms: i64) -> Option<serde_json::Value> {
        self.view()
            .map(|view| serde_json::to_value(view).expect("order view serialises"))
    }
}

impl Inspect for Order {
    fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).expect("order view serialises")
    }
}

/// An order as it is born: the rows that create it (its first event, its expiry deadline and
/// its read row), its view, and that view as JSON: the read row's body, which is also what the
/// request that placed the order answers and what its idempotency record keeps, so the order
/// is serialised once.
pub struct Birth {
    pub batch: Batch,
    pub view: OrderView,
    pub json: String,
}

/// The birth of order `id`, written in the same transaction as the step that reserved its
/// units: its `Place` decision at `created_at`, and the rows its own actor would write for
/// that step ([`step_rows`]).
pub fn birth(id: &str, placed: Placed) -> Birth {
    let ctx = Ctx {
        now_ms: placed.created_at_ms,
    };
    let mut order = Order::blank(id);
    let decision = order
        .decide(&OrderCommand::Place(placed), &ctx)
        .expect("orders are born from validated lines");
    let step = StepInput {
        events: decision.events,
        at_ms: ctx.now_ms,
        side: None,
        live_items: None,
    };
    let mut written = WrittenRows::default();
    let batch = step_rows(&mut order, &pid::<Order>(id), &mut 0, &mut written, step);
    // The read row's body, which `written` keeps: the order is serialised once.
    let json = written
        .read_row_body
        .expect("a placed order has a read row");
    Birth {
        batch,
        view: decision.reply,
        json,
    }
}

/// The read row of a placed order whose view is `view`.
fn read_row_of(order: &Order, view: &OrderView) -> ReadRow {
    ReadRow {
        kind: Order::KIND.to_string(),
        id: order.id.clone(),
        owner: view.user_id.to_string(),
        created_at_ms: order.placed().created_at_ms,
        status: view.status.as_str().to_string(),
        body: serde_json::to_string(view).expect("order view serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::{codec, DeadlineWrite};

    const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    /// 2023-11-14T22:13:20Z.
    const T0: i64 = 1_700_000_000_000;
    const TTL_MS: i64 = 600_000;

    fn placed() -> Placed {
        let item = |reference: &str, quantity, unit_price| OrderItem {
            reference: reference.into(),
            quantity,
            unit_price,
        };
        Placed {
            user_id: "user-7".into(),
            source: Source {
                kind: SourceKind::Stock,
                id: "sku-1".into(),
            },
            items: vec![item("sku-1", 2, 1_500), item("sku-2", 1, 990)],
            expires_at_ms: T0 + TTL_MS,
            created_at_ms: T0,
        }
    }

    /// Rebuilds the order from the events of a birth batch, the way recovery reads them.
    fn replay(batch: &Batch) -> Order {
        let mut order = Order::blank(ID);
        for record in &batch.events {
            let event: OrderEvent =
                codec::decode(Order::VERSION, &record.payload).expect("decodes");
            order.apply(&event);
        }
        order
    }

    /// Decides and applies one command the way the actor does; returns the order after it.
    fn step(order: &mut Order, command: OrderCommand, now_ms: i64) -> OrderView {
        let decision = order.decide(&command, &Ctx { now_ms }).expect("accepted");
        decision.events.iter().for_each(|e| order.apply(e));
        decision.reply
    }

    #[test]
    fn birth_writes_one_event_a_deadline_and_a_read_row() {
        let Birth { batch, view, json } = birth(ID, placed());
        let pid = format!("order:{ID}");

        assert_eq!(batch.events.len(), 1);
        let record = &batch.events[0];
        assert_eq!(
            (record.pid.as_str(), record.seq, record.at_ms),
            (pid.as_str(), 1, T0)
        );
        let event: OrderEvent = codec::decode(Order::VERSION, &record.payload).expect("decodes");
        assert_eq!(event, OrderEvent::Placed(placed()));

        assert_eq!(
            batch.deadlines,
            vec![DeadlineWrite::Set {
                pid: pid.clone(),
                due_at_ms: T0 + TTL_MS,
            }]
        );

        assert_eq!(batch.read_rows.len(), 1);
        let row = &batch.read_rows[0];
        assert_eq!((row.kind.as_str(), row.id.as_str()), ("order", ID));
        assert_eq!(
            (row.owner.as_str(), row.status.as_str()),
            ("user-7", "RESERVED")
        );
        assert_eq!(row.created_at_ms, T0);
        let body: OrderView = serde_json::from_str(&row.body).expect("the body is the view");
        assert_eq!(body, view);
        // The one serialisation serves the read row, the idempotency record and the 201.
        assert_eq!(json, row.body);
        assert!(batch.snapshots.is_empty() && batch.idempotency.is_empty());

        assert_eq!(view.id, ID);
        assert_eq!(view.status, OrderStatus::Reserved);
        assert_eq!(view.amount, 2 * 1_500 + 990);
        assert_eq!((view.discount, view.points_used), (0, 0));
        assert_eq!(view.card_amount, view.amount);
        assert_eq!(view.expires_at, "2023-11-14T22:23:20.000Z");
        assert_eq!(view.created_at, "2023-11-14T22:13:20.000Z");
        assert_eq!(view.updated_at, view.created_at);
        assert_eq!(view.steps.len(), 1);
        assert_eq!(view.steps[0].name, "reserve");
        assert_eq!(view.steps[0].status, "DONE");
    }

    #[test]
    fn the_birth_event_replays_into_the_same_order() {
        let Birth { batch, view, .. } = birth(ID, placed());
        let mut order = replay(&batch);
        assert!(order.exists());
        assert_eq!(order.view(), Some(view.clone()));
        assert_eq!(order.next_deadline_ms(), Some(T0 + TTL_MS));
        assert_eq!(order.read_row(), batch.read_rows.first().cloned());
        assert_eq!(
            step(&mut order, OrderCommand::Cancel, T0).status,
            OrderStatus::Cancelled
        );
    }

    #[test]
    fn the_read_row_follows_the_status() {
        let mut order = replay(&birth(ID, placed()).batch);
        let row = |order: &Order| order.read_row().expect("a placed order has a row");
        assert_eq!(row(&order).status, "RESERVED");
        step(&mut order, OrderCommand::Cancel, T0 + 1);
        let cancelled = row(&order);
        assert_eq!(
            (cancelled.status.as_str(), cancelled.owner.as_str()),
            ("CANCELLED", "user-7")
        );
        let body: OrderView = serde_json::from_str(&cancelled.body).expect("the body is the view");
        assert_eq!(body.status, OrderStatus::Cancelled);

        let mut order = replay(&birth(ID, placed()).batch);
        step(&mut order, OrderCommand::Expire, T0 + TTL_MS);
        assert_eq!(row(&order).status, "EXPIRED");
        assert_eq!(row(&order).created_at_ms, T0);
    }
}
