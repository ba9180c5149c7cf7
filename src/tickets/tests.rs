//! Ticket codes: they read back, bind event, order and seat, and refuse any change or other key.

use super::*;

const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes!";

fn codes() -> TicketCodes {
    TicketCodes::new(SECRET)
}

fn event() -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)
}

fn order() -> OrderId {
    OrderId::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002)
}

#[test]
fn a_code_reads_back_as_its_event_order_and_seat() {
    let code = codes().code(event(), order(), "A-3-12");
    assert!(code.len() <= CODE_LEN_MAX, "{code}");
    assert!(code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    let claims = codes().read(&code).expect("a genuine code");
    assert_eq!(
        claims,
        TicketClaims {
            event_id: event(),
            order_id: order(),
            seat_id: "A-3-12".into(),
        }
    );
    assert_eq!(
        codes().code(event(), order(), "A-3-12"),
        code,
        "deterministic"
    );
}

#[test]
fn each_seat_order_and_event_has_its_own_code() {
    let codes = codes();
    let one = codes.code(event(), order(), "A-1-1");
    assert_ne!(one, codes.code(event(), order(), "A-1-2"));
    assert_ne!(one, codes.code(event(), OrderId::from_u128(7), "A-1-1"));
    assert_ne!(one, codes.code(Uuid::from_u128(7), order(), "A-1-1"));
}

#[test]
fn a_changed_character_anywhere_is_refused() {
    let codes = codes();
    let code = codes.code(event(), order(), "A-1-1");
    for at in 0..code.len() {
        let mut forged: Vec<u8> = code.clone().into_bytes();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        if forged != code {
            assert_eq!(codes.read(&forged), None, "{forged} was read");
        }
    }
}

#[test]
fn a_payload_signed_with_another_key_is_refused() {
    let other = TicketCodes::new("another-secret-of-at-least-thirty-two-bytes");
    let code = other.code(event(), order(), "A-1-1");
    assert_eq!(codes().read(&code), None);
    // The JWT secret itself is not the ticket key: a tag made with it is refused.
    let naive = TicketCodes {
        mac: HmacSha256::new_from_slice(SECRET.as_bytes()).expect("any length"),
    };
    assert_eq!(codes().read(&naive.code(event(), order(), "A-1-1")), None);
}

#[test]
fn malformed_codes_are_refused() {
    let codes = codes();
    let genuine = codes.code(event(), order(), "A-1-1");
    let (payload, tag) = genuine.split_once('.').expect("two parts");
    let long = "A".repeat(CODE_LEN_MAX + 1);
    let cases = [
        "",
        ".",
        "no-dot",
        payload,
        &format!("{payload}."),
        &format!(".{tag}"),
        &format!("{payload}.{tag}.{tag}"),
        &format!("{payload}.{}", &tag[..tag.len() - 2]),
        &format!("{payload}=.{tag}"),
        &long,
    ];
    for case in cases {
        assert_eq!(codes.read(case), None, "{case:?} was read");
    }
}
