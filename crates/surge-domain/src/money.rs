//! Bounds on amounts of money and points. Every amount a client names is checked against one
//! of these before an entity takes it, so that no sum an entity keeps (a balance, an order's
//! total over many lines, a counter of units) can come near `i64` overflow.

/// The largest amount one price, discount, minimum order or wallet transaction may name.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;
/// The largest amount (price × quantity) one reserved line may carry.
pub const LINE_AMOUNT_MAX: i64 = 1_000_000_000_000_000;
/// The largest balance a wallet may hold.
pub const BALANCE_MAX: i64 = 1_000_000_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_maximal_lines_or_balances_still_sum_without_overflow() {
        assert!(LINE_AMOUNT_MAX.checked_mul(1_000).is_some());
        assert!(BALANCE_MAX.checked_add(AMOUNT_MAX).is_some());
    }
}
