//! Supervision: one [`region::Region`] per entity kind (its parking and passivation sweeps in
//! `sweeper`), and the [`deadlines`] scheduler that
//! wakes entities whose durable deadline is near.

pub mod deadlines;
pub mod region;
mod sweeper;
