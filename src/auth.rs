//! Placeholder replaced by the auth module.
