//! Per entity kind, what the runtime adds to the domain's rules: the rows it projects into
//! the read model, its live topic, and what the admin console shows. Nothing here decides:
//! each function reads the state the entity has after a committed step.

mod coupon_policy;
pub mod order;
pub mod pay_saga;
pub mod points_charge;
mod product;
mod seat_map;
mod stock_item;
mod time_sale;
mod waiting_room;
mod wallet;
