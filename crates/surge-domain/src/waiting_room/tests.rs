use proptest::prelude::*;

use super::*;
use crate::codec;
use crate::UserId;

const OPENS_MS: i64 = 1_000_000;

fn terms(rate: u32, seed: u64) -> RoomTerms {
    RoomTerms {
        opens_at_ms: OPENS_MS,
        admit_per_sec: rate,
        seed,
        waiting_max: 1_000_000,
    }
}

/// Runs a command at `now_ms` the way the actor does: decide, apply, check.
fn run(room: &mut WaitingRoom, command: RoomCommand, now_ms: i64) -> Result<RoomReply, Rejection> {
    let decision = room.decide(&command, &Ctx { now_ms })?;
    for event in &decision.events {
        room.apply(event);
        room.check_invariants().expect("invariants after apply");
    }
    Ok(decision.reply)
}

fn join(room: &mut WaitingRoom, user: &str, now_ms: i64, rate: u32, seed: u64) -> TicketView {
    let command = RoomCommand::Join {
        user_id: UserId::from(user),
        terms: terms(rate, seed),
    };
    match run(room, command, now_ms).expect("join") {
        RoomReply::Ticket(view) => view,
        other => panic!("join answered {other:?}"),
    }
}

fn me(room: &mut WaitingRoom, user: &str, now_ms: i64) -> TicketView {
    let command = RoomCommand::Me {
        user_id: UserId::from(user),
    };
    match run(room, command, now_ms).expect("me") {
        RoomReply::Ticket(view) => view,
        other => panic!("me answered {other:?}"),
    }
}

fn room() -> WaitingRoom {
    WaitingRoom::blank("time-sales/x")
}

#[test]
fn joining_again_returns_the_same_ticket() {
    let mut r = room();
    let first = join(&mut r, "u1", OPENS_MS + 1, 10, 1);
    assert!(first.joined_now);
    join(&mut r, "u2", OPENS_MS + 2, 10, 1);
    let again = join(&mut r, "u1", OPENS_MS + 3, 10, 1);
    assert_eq!(again.ticket, first.ticket);
    assert!(!again.joined_now, "a re-join creates nothing");
    assert_eq!(r.len(), 2);
}

#[test]
fn after_opening_positions_are_fifo_and_admission_follows_the_rate() {
    let mut r = room();
    let t0 = OPENS_MS + 5_000;
    for i in 1..=100 {
        let view = join(&mut r, &format!("u{i}"), t0, 10, 7);
        assert_eq!(view.ticket, i, "tickets in arrival order");
    }
    // The first join finds the queue drained, so the clock starts at t0: nothing is admitted
    // at once, then one every 100 ms.
    assert_eq!(me(&mut r, "u1", t0).status, TicketStatus::Waiting);
    assert_eq!(r.head_at(t0 + 99), 0);
    assert_eq!(r.head_at(t0 + 100), 1);
    assert_eq!(r.head_at(t0 + 999), 9);
    assert_eq!(r.head_at(t0 + 1_000), 10);
    assert_eq!(r.head_at(t0 + 3_500), 35);
    let v = me(&mut r, "u25", t0 + 1_000);
    assert_eq!(
        (v.position, v.eta_secs, v.status),
        (15, Some(2), TicketStatus::Waiting)
    );
    let v = me(&mut r, "u10", t0 + 1_000);
    assert_eq!((v.position, v.status), (0, TicketStatus::Admitted));
    assert_eq!(r.head_at(t0 + 60_000), 100, "never beyond the tickets");
}

#[test]
fn a_drained_queue_banks_no_admissions() {
    let mut r = room();
    join(&mut r, "early", OPENS_MS + 10, 10, 1);
    // An hour with nobody waiting, then a burst: still 10 per second.
    let burst_ms = OPENS_MS + 3_600_000;
    for i in 0..50 {
        join(&mut r, &format!("b{i}"), burst_ms, 10, 1);
    }
    assert_eq!(r.head_at(burst_ms), 1, "only the early one");
    assert_eq!(r.head_at(burst_ms + 1_000), 11);
}

#[test]
fn pause_freezes_admission_and_a_rate_change_keeps_what_was_admitted() {
    let mut r = room();
    let t0 = OPENS_MS + 1;
    for i in 0..100 {
        join(&mut r, &format!("u{i}"), t0, 10, 1);
    }
    let pause = RoomCommand::Configure {
        admit_per_sec: None,
        paused: Some(true),
        terms: terms(10, 1),
    };
    run(&mut r, pause, t0 + 2_000).expect("pause");
    assert_eq!(r.head_at(t0 + 2_000), 20);
    assert_eq!(r.head_at(t0 + 60_000), 20, "paused");
    assert_eq!(me(&mut r, "u50", t0 + 60_000).eta_secs, None);
    let resume = RoomCommand::Configure {
        admit_per_sec: Some(40),
        paused: Some(false),
        terms: terms(10, 1),
    };
    match run(&mut r, resume, t0 + 60_000).expect("resume") {
        RoomReply::Stats(stats) => {
            assert_eq!((stats.admitted, stats.waiting), (20, 80));
            assert_eq!((stats.admit_per_sec, stats.paused), (40, false));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.head_at(t0 + 61_000), 60);
}

#[test]
fn configure_checks_the_rate_and_may_come_before_any_join() {
    let bad = RoomCommand::Configure {
        admit_per_sec: Some(0),
        paused: None,
        terms: terms(10, 1),
    };
    let mut r = room();
    let err = run(&mut r, bad, 0).expect_err("rate 0");
    assert_eq!(err.code, ErrorCode::ValidationFailed);
    assert!(!r.exists(), "a refused configure creates nothing");
    let early = RoomCommand::Configure {
        admit_per_sec: Some(2),
        paused: None,
        terms: terms(10, 1),
    };
    run(&mut r, early, OPENS_MS - 60_000).expect("before opening");
    for i in 0..10 {
        join(&mut r, &format!("u{i}"), OPENS_MS - 1_000, 10, 1);
    }
    run(&mut r, RoomCommand::Open, OPENS_MS).expect("open");
    assert_eq!(
        r.head_at(OPENS_MS + 1_000),
        2,
        "the operator's rate, not the default"
    );
}

#[test]
fn joins_before_opening_are_shuffled_at_opening_by_the_seed() {
    let shuffled = |seed: u64| {
        let mut r = room();
        for i in 0..50 {
            let view = join(&mut r, &format!("u{i}"), OPENS_MS - 10_000 + i, 10, seed);
            assert_eq!(view.status, TicketStatus::Waiting);
            assert!(
                view.eta_secs.expect("eta") >= 10,
                "counts the wait for opening"
            );
        }
        assert_eq!(r.next_deadline_ms(), Some(OPENS_MS));
        assert_eq!(
            r.deadline_command(&Ctx {
                now_ms: OPENS_MS - 1
            }),
            None
        );
        let open = r.deadline_command(&Ctx { now_ms: OPENS_MS }).expect("due");
        run(&mut r, open, OPENS_MS).expect("open");
        assert_eq!(r.next_deadline_ms(), None);
        // A join after opening comes after every pre-open one.
        assert_eq!(join(&mut r, "late", OPENS_MS + 5, 10, seed).ticket, 51);
        r.check_deep_invariants().expect("deep");
        r.preopen_users().to_vec()
    };
    let a = shuffled(42);
    let mut sorted = a.clone();
    sorted.sort();
    let mut expected: Vec<UserId> = (0..50).map(|i| format!("u{i}").into()).collect();
    expected.sort();
    assert_eq!(sorted, expected, "a permutation: everyone once");
    assert_ne!(
        a,
        (0..50)
            .map(|i| format!("u{i}").into())
            .collect::<Vec<UserId>>()
    );
    assert_eq!(a, shuffled(42), "the seed fixes the order");
    assert_ne!(a, shuffled(43));
}

#[test]
fn a_status_read_after_the_opening_time_opens_first() {
    let mut r = room();
    for i in 0..10 {
        join(&mut r, &format!("u{i}"), OPENS_MS - 100, 10, 4);
    }
    let decision = r
        .decide(
            &RoomCommand::Me {
                user_id: "u0".into(),
            },
            &Ctx { now_ms: OPENS_MS },
        )
        .expect("me");
    assert_eq!(decision.events, vec![RoomEvent::Opened { at_ms: OPENS_MS }]);
    let RoomReply::Ticket(before_apply) = decision.reply else {
        panic!("a ticket")
    };
    for event in &decision.events {
        r.apply(event);
    }
    assert_eq!(
        r.ticket_of("u0"),
        Some(before_apply.ticket),
        "the answer is the shuffled ticket"
    );
    let again = r
        .decide(
            &RoomCommand::Stats,
            &Ctx {
                now_ms: OPENS_MS + 1,
            },
        )
        .expect("stats");
    assert!(again.events.is_empty(), "opened once");
}

#[test]
fn a_join_after_the_opening_time_opens_first() {
    let mut r = room();
    join(&mut r, "a", OPENS_MS - 1, 10, 1);
    join(&mut r, "b", OPENS_MS - 1, 10, 1);
    // No deadline ran: the join opens the room (shuffling a and b) before queueing c.
    assert_eq!(join(&mut r, "c", OPENS_MS + 100, 10, 1).ticket, 3);
    assert_eq!(
        r.head_at(OPENS_MS + 100),
        1,
        "the clock started at opening, not now"
    );
}

#[test]
fn a_full_room_refuses_joins() {
    let mut r = room();
    let mut small = terms(10, 1);
    small.waiting_max = 2;
    for user in ["a", "b"] {
        let join = RoomCommand::Join {
            user_id: user.into(),
            terms: small.clone(),
        };
        run(&mut r, join, OPENS_MS).expect("fits");
    }
    let join = RoomCommand::Join {
        user_id: "c".into(),
        terms: small,
    };
    let err = run(&mut r, join, OPENS_MS).expect_err("full");
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[test]
fn a_snapshot_restores_tickets() {
    let mut r = room();
    for i in 0..20 {
        join(&mut r, &format!("u{i}"), OPENS_MS - 100 + i, 5, 9);
    }
    run(&mut r, RoomCommand::Open, OPENS_MS).expect("open");
    let bytes = codec::encode(WaitingRoom::VERSION, &r);
    let mut back: WaitingRoom = codec::decode(WaitingRoom::VERSION, &bytes).expect("decodes");
    back.restore();
    back.check_deep_invariants().expect("deep after restore");
    for i in 0..20 {
        let user = format!("u{i}");
        assert_eq!(back.ticket_of(&user), r.ticket_of(&user));
    }
    assert_eq!(back.head_at(OPENS_MS + 2_000), r.head_at(OPENS_MS + 2_000));
}

#[derive(Debug, Clone)]
enum Step {
    Join(u8),
    Wait(u16),
    Rate(u32),
    Pause(bool),
    Open,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => any::<u8>().prop_map(Step::Join),
        3 => (0u16..3_000).prop_map(Step::Wait),
        1 => (1u32..50).prop_map(Step::Rate),
        1 => any::<bool>().prop_map(Step::Pause),
        1 => Just(Step::Open),
    ]
}

proptest! {
    /// Random joins, waits, rate changes and pauses: tickets stay unique and stable, admission
    /// never goes back and never passes the last ticket, and a replay of the journal gives the
    /// same room.
    #[test]
    fn admission_is_monotone_and_tickets_are_stable(steps in prop::collection::vec(step(), 1..120)) {
        let mut r = room();
        let mut journal = Vec::new();
        let mut now = OPENS_MS - 2_000;
        let mut head = 0;
        let mut seen: HashMap<UserId, u64> = HashMap::new();
        for s in steps {
            let command = match s {
                Step::Join(u) => RoomCommand::Join { user_id: format!("u{u}").into(), terms: terms(3, 5) },
                Step::Wait(ms) => { now += i64::from(ms); continue; }
                Step::Rate(rate) => RoomCommand::Configure { admit_per_sec: Some(rate), paused: None, terms: terms(3, 5) },
                Step::Pause(p) => RoomCommand::Configure { admit_per_sec: None, paused: Some(p), terms: terms(3, 5) },
                Step::Open => RoomCommand::Open,
            };
            let Ok(decision) = r.decide(&command, &Ctx { now_ms: now }) else { continue };
            let opened_before = r.opened;
            for event in decision.events {
                r.apply(&event);
                journal.push(event);
            }
            r.check_deep_invariants().map_err(TestCaseError::fail)?;
            if let RoomCommand::Join { user_id, .. } = &command {
                let ticket = r.ticket_of(user_id.as_str()).expect("joined");
                // Tickets change only once, when the pre-open joins are shuffled at opening.
                if let Some(old) = seen.insert(user_id.clone(), ticket) {
                    prop_assert!(old == ticket || (!opened_before && r.opened));
                }
            }
            if !opened_before && r.opened {
                seen = r.queue.iter().enumerate().map(|(i, u)| (u.clone(), i as u64 + 1)).collect();
            }
            let now_head = r.head_at(now);
            prop_assert!(now_head >= head, "admission went back: {head} -> {now_head}");
            prop_assert!(now_head <= r.len());
            head = now_head;
        }
        let mut replayed = room();
        for event in &journal {
            replayed.apply(event);
        }
        prop_assert_eq!(replayed, r);
    }
}

proptest! {
    /// The O(1) join reply (no scratch copy) is the view the room shows right after the join.
    #[test]
    fn a_join_reply_matches_the_room_after_it(
        early in 0u64..20, gaps in prop::collection::vec(0i64..700, 1..40), rate in 1u32..20,
    ) {
        let mut r = room();
        for i in 0..early {
            join(&mut r, &format!("e{i}"), OPENS_MS - 100, rate, 3);
        }
        let mut now = OPENS_MS;
        for (i, gap) in gaps.iter().enumerate() {
            now += gap;
            let user = format!("j{i}");
            let reply = join(&mut r, &user, now, rate, 3);
            let after = me(&mut r, &user, now);
            prop_assert_eq!((reply.ticket, reply.position, reply.eta_secs, reply.status),
                (after.ticket, after.position, after.eta_secs, after.status));
        }
    }
}
