//! Slate's events out: webhook subscriptions an admin registers, and their deliveries.

pub mod backend;
