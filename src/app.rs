//! Builds the system.
