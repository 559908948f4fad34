//! The partition log (being written).
