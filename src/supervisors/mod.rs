//! Supervision: one [`region::Region`] per entity kind, and the [`deadlines`] scheduler that
//! wakes entities whose durable deadline is near.

pub mod deadlines;
pub mod region;
